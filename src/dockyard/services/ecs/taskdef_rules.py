"""Task definition rules: validation, AWS defaults and computed fields. Pure: no store, no clock.

``build(req)`` takes a RegisterTaskDefinition request (already checked against
botocore's input shape) and returns the task definition body as AWS returns it,
without the fields the registration itself assigns (ARN, revision, status,
registeredAt/By). It raises the AwsError AWS answers for the first problem:
``ClientException`` for the content of the task definition,
``InvalidParameterException`` for a value outside its enum.

What AWS adds to what the user sent, and nothing more (Terraform's
aws_ecs_task_definition diffs the rest):

- each container: ``cpu`` 0, ``essential`` true, ``portMappings``,
  ``environment``, ``mountPoints``, ``volumesFrom`` and ``systemControls`` as
  ``[]`` when absent; each port mapping ``protocol`` "tcp", and in ``awsvpc`` or
  ``host`` mode ``hostPort`` = ``containerPort``; a health check's ``interval``
  30, ``timeout`` 5 and ``retries`` 3.
- task: ``networkMode`` "bridge" (Linux), ``volumes`` and
  ``placementConstraints`` as ``[]``, ``cpu``/``memory`` normalised to unit
  strings ("1 vCPU" -> "1024", "2GB" -> "2048"), Docker volumes' ``scope``
  "task", EFS volumes' ``rootDirectory`` "/".
- computed: ``compatibilities`` (EC2 always; FARGATE when the definition is
  valid for Fargate; EXTERNAL when valid for ECS Anywhere) and
  ``requiresAttributes`` (see ``required_attributes``).

Choices where AWS documents no single answer: task-level ``cpu`` must be
128-196608 units (the current API model; the archived docs said 10240), task
``memory`` and a container's hard ``memory`` at least 6 MiB (Docker 20.10's
minimum), at most 10 containers per task definition.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from dockyard.api.errors import ClientException, InvalidParameterException

Doc = dict[str, Any]

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
IMAGE_RE = re.compile(r"^[A-Za-z0-9_\-:./#@]+$")
ECR_IMAGE_RE = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")

NETWORK_MODES = ("bridge", "host", "awsvpc", "none")
COMPATIBILITIES = ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES")
PROTOCOLS = ("tcp", "udp")
APP_PROTOCOLS = ("http", "http2", "grpc")
CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
LOG_DRIVERS = ("json-file", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "awsfirelens")
FARGATE_LOG_DRIVERS = ("awslogs", "splunk", "awsfirelens")
PID_MODES = ("host", "task")
IPC_MODES = ("host", "task", "none")
SCOPES = ("task", "shared")
OS_FAMILIES = ("LINUX", "WINDOWS_SERVER_2019_FULL", "WINDOWS_SERVER_2019_CORE", "WINDOWS_SERVER_2016_FULL",
               "WINDOWS_SERVER_2004_CORE", "WINDOWS_SERVER_2022_CORE", "WINDOWS_SERVER_2022_FULL",
               "WINDOWS_SERVER_2025_CORE", "WINDOWS_SERVER_2025_FULL", "WINDOWS_SERVER_20H2_CORE")
CPU_ARCHITECTURES = ("X86_64", "ARM64")
RESOURCE_TYPES = ("GPU", "InferenceAccelerator", "NeuronDevice")
ENABLED_DISABLED = ("ENABLED", "DISABLED")

MAX_CONTAINERS = 10
MAX_PLACEMENT_CONSTRAINTS = 10
MAX_TASKDEF_BYTES = 64 * 1024
TASK_CPU_MIN, TASK_CPU_MAX = 128, 196608
MEMORY_MIN = 6
FARGATE_MAX_TIMEOUT = 120

# Fargate task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, frozenset[int]] = {
    256: frozenset((512, 1024, 2048)),
    512: frozenset(range(1024, 4097, 1024)),
    1024: frozenset(range(2048, 8193, 1024)),
    2048: frozenset(range(4096, 16385, 1024)),
    4096: frozenset(range(8192, 30721, 1024)),
    8192: frozenset(range(16384, 61441, 4096)),
    16384: frozenset(range(32768, 122881, 8192)),
}

# Health check: field -> (low, high, default or None).
HEALTH_RANGES: dict[str, tuple[int, int, int | None]] = {
    "interval": (5, 300, 30),
    "timeout": (2, 60, 5),
    "retries": (1, 10, 3),
    "startPeriod": (0, 300, None),
}

# Capability attributes (names as the ECS agent advertises them).
_LEGACY = "com.amazonaws.ecs.capability."
_CAP = "ecs.capability."
DOCKER_API = _LEGACY + "docker-remote-api."


def _client(msg: str) -> ClientException:
    return ClientException(msg)


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InvalidParameterException(f"Invalid {what} '{value}'. Valid values are: {', '.join(allowed)}.")


# -- task cpu and memory -----------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?|\.\d+)"
_PLAIN = re.compile(r"^\s*(\d+)\s*$")
_VCPU = re.compile(r"^\s*" + _NUM + r"\s*vcpus?\s*$", re.IGNORECASE)
_MEM_UNIT = re.compile(r"^\s*" + _NUM + r"\s*(gb|gib|mb|mib)\s*$", re.IGNORECASE)


def _units(text: str, scale: float) -> int | None:
    v = float(text) * scale
    return int(v) if v == int(v) else None


def parse_cpu(value: str) -> int:
    """Task cpu: "1024" (units) or "1 vCPU"/"0.25 vcpu"; returns units (ClientException if invalid)."""
    n: int | None = None
    m = _PLAIN.match(value)
    if m:
        n = int(m.group(1))
    else:
        m = _VCPU.match(value)
        if m:
            n = _units(m.group(1), 1024)
    if n is None or not TASK_CPU_MIN <= n <= TASK_CPU_MAX:
        raise _client("Invalid 'cpu' setting for task.")
    return n


def parse_memory(value: str) -> int:
    """Task memory: "1024" (MiB) or "1GB"/"1 GB"/"512 MiB"; returns MiB (ClientException if invalid)."""
    n: int | None = None
    m = _PLAIN.match(value)
    if m:
        n = int(m.group(1))
    else:
        m = _MEM_UNIT.match(value)
        if m:
            n = _units(m.group(1), 1024 if m.group(2).lower().startswith("g") else 1)
    if n is None or n < MEMORY_MIN:
        raise _client("Invalid 'memory' setting for task.")
    return n


def fargate_size_ok(cpu: int, memory: int) -> bool:
    allowed = FARGATE_SIZES.get(cpu)
    return allowed is not None and memory in allowed


# -- the build -----------------------------------------------------------------

def build(req: Doc) -> Doc:
    """Validate a RegisterTaskDefinition request and return the task definition body."""
    family = req.get("family", "")
    if not NAME_RE.match(family):
        raise _client("Family contains invalid characters. Up to 255 letters (uppercase and lowercase), "
                      "numbers, hyphens and underscores are allowed.")
    if len(orjson.dumps(req)) > MAX_TASKDEF_BYTES:
        raise _client("Task definition is too large: the maximum size of a task definition is 64 KiB.")

    required: list[str] = list(req.get("requiresCompatibilities") or [])
    for c in required:
        _enum(c, COMPATIBILITIES, "requiresCompatibilities value")
    windows = False
    platform = req.get("runtimePlatform")
    if platform:
        if "operatingSystemFamily" in platform:
            _enum(platform["operatingSystemFamily"], OS_FAMILIES, "operatingSystemFamily")
            windows = platform["operatingSystemFamily"].startswith("WINDOWS")
        if "cpuArchitecture" in platform:
            _enum(platform["cpuArchitecture"], CPU_ARCHITECTURES, "cpuArchitecture")
    mode = req.get("networkMode")
    if mode is not None:
        _enum(mode, NETWORK_MODES, "networkMode")
    eff_mode = mode or ("bridge" if not windows else "default")
    if "pidMode" in req:
        _enum(req["pidMode"], PID_MODES, "pidMode")
    if "ipcMode" in req:
        _enum(req["ipcMode"], IPC_MODES, "ipcMode")

    task_cpu = parse_cpu(req["cpu"]) if req.get("cpu") is not None else None
    task_mem = parse_memory(req["memory"]) if req.get("memory") is not None else None

    volumes = _volumes(req.get("volumes") or [])
    volume_names = {v["name"] for v in volumes}
    containers = _containers(req["containerDefinitions"], eff_mode, volume_names)
    _task_resources(containers, task_cpu, task_mem)
    constraints = _placement_constraints(req.get("placementConstraints") or [])
    if "proxyConfiguration" in req:
        pc = req["proxyConfiguration"]
        if pc.get("containerName") not in {c["name"] for c in containers}:
            raise _client(f"Invalid proxyConfiguration: container '{pc.get('containerName')}' does not exist "
                          f"in the task definition.")
    eph = req.get("ephemeralStorage")
    if eph is not None and not 21 <= eph.get("sizeInGiB", 0) <= 200:
        raise _client("Invalid 'ephemeralStorage' setting: sizeInGiB must be between 21 and 200.")

    view = _View(req, eff_mode, windows, task_cpu, task_mem, containers, volumes, constraints)
    if not required or "EC2" in required or "EXTERNAL" in required:
        problem = ec2_problem(view)
        if problem:
            raise _client(problem)
    if "FARGATE" in required:
        problem = fargate_problem(view)
        if problem:
            raise _client(problem)
    if "EXTERNAL" in required:
        problem = external_problem(view)
        if problem:
            raise _client(problem)

    out: Doc = {"containerDefinitions": containers, "family": family}
    for key in ("taskRoleArn", "executionRoleArn"):
        if req.get(key):
            out[key] = req[key]
    if mode is not None or not windows:
        out["networkMode"] = eff_mode
    out["volumes"] = volumes
    out["requiresAttributes"] = [{"name": n} for n in required_attributes(view)]
    out["placementConstraints"] = constraints
    out["compatibilities"] = compatibilities(view, required)
    if platform is not None:
        out["runtimePlatform"] = platform
    if "requiresCompatibilities" in req:
        out["requiresCompatibilities"] = required
    if task_cpu is not None:
        out["cpu"] = str(task_cpu)
    if task_mem is not None:
        out["memory"] = str(task_mem)
    for key in ("inferenceAccelerators", "pidMode", "ipcMode", "proxyConfiguration", "ephemeralStorage",
                "enableFaultInjection", "trustedExecutionConfiguration"):
        if key in req:
            out[key] = req[key]
    return out


class _View:
    """The normalised pieces the per-launch-type checks and the computed fields read."""

    __slots__ = ("constraints", "containers", "cpu", "memory", "mode", "req", "volumes", "windows")

    def __init__(self, req: Doc, mode: str, windows: bool, cpu: int | None, memory: int | None,
                 containers: list[Doc], volumes: list[Doc], constraints: list[Doc]) -> None:
        self.req = req
        self.mode = mode
        self.windows = windows
        self.cpu = cpu
        self.memory = memory
        self.containers = containers
        self.volumes = volumes
        self.constraints = constraints


# -- containers ------------------------------------------------------------------

def _containers(defs: list[Doc], mode: str, volume_names: set[str]) -> list[Doc]:
    if not defs:
        raise _client("Container list cannot be empty.")
    if len(defs) > MAX_CONTAINERS:
        raise _client(f"Too many containers: a task definition can have at most {MAX_CONTAINERS} containers.")
    out: list[Doc] = []
    names: set[str] = set()
    for raw in defs:
        name = raw.get("name")
        if not name:
            raise _client("Container.name should not be null or empty.")
        if not NAME_RE.match(name):
            raise _client(f"Container name '{name}' is invalid. Up to 255 letters (uppercase and lowercase), "
                          f"numbers, hyphens and underscores are allowed.")
        if name in names:
            raise _client(f"Duplicate container name '{name}': container names must be unique within a task "
                          f"definition.")
        names.add(name)
        image = raw.get("image")
        if not image:
            raise _client("Container.image should not be null or empty.")
        if not IMAGE_RE.match(image):
            raise _client("Container.image contains invalid characters.")
        c = dict(raw)
        c.setdefault("cpu", 0)
        if c["cpu"] < 0:
            raise _client(f"Invalid setting for container '{name}'. 'cpu' must not be negative.")
        mem, res = c.get("memory"), c.get("memoryReservation")
        if mem is not None and mem < MEMORY_MIN:
            raise _client(f"Invalid setting for container '{name}'. The minimum 'memory' is "
                          f"{MEMORY_MIN} MiB.")
        if res is not None and res < 1:
            raise _client(f"Invalid setting for container '{name}'. 'memoryReservation' must be positive.")
        if mem is not None and res is not None and mem <= res:
            raise _client(f"Invalid setting for container '{name}'. 'memory' must be greater than "
                          f"'memoryReservation'.")
        c.setdefault("portMappings", [])
        c["portMappings"] = _port_mappings(name, c["portMappings"], mode)
        c.setdefault("essential", True)
        c.setdefault("environment", [])
        c.setdefault("mountPoints", [])
        c.setdefault("volumesFrom", [])
        c.setdefault("systemControls", [])
        if c.get("links") and mode != "bridge":
            raise _client(f"Links are not supported when networkMode={mode}.")
        if "healthCheck" in c:
            c["healthCheck"] = _health_check(name, c["healthCheck"])
        log = c.get("logConfiguration")
        if log is not None:
            _enum(log.get("logDriver"), LOG_DRIVERS, "logDriver")
        for mp in c["mountPoints"]:
            if mp.get("sourceVolume") not in volume_names:
                raise _client(f"Invalid 'mountPoints' setting for container '{name}'. "
                              f"Unknown volume '{mp.get('sourceVolume')}'.")
            if not mp.get("containerPath"):
                raise _client(f"Invalid 'mountPoints' setting for container '{name}'. "
                              f"containerPath should not be null or empty.")
        for rr in c.get("resourceRequirements") or []:
            _enum(rr.get("type"), RESOURCE_TYPES, "resourceRequirements type")
        for t in ("startTimeout", "stopTimeout"):
            if t in c and c[t] < 0:
                raise _client(f"Invalid setting for container '{name}'. '{t}' must not be negative.")
        out.append(c)
    if not any(c["essential"] for c in out):
        raise _client("Task definition does not have any essential containers.")
    by_name = {c["name"]: c for c in out}
    for c in out:
        _references(c, by_name)
    _dependency_cycles(out)
    _task_ports(out, mode)
    return out


def _port_mappings(name: str, mappings: list[Doc], mode: str) -> list[Doc]:
    out: list[Doc] = []
    seen: set[tuple[int, str]] = set()
    if mappings and mode == "none":
        raise _client(f"Invalid 'portMappings' setting for container '{name}'. Port mappings are not "
                      f"supported when networkMode=none.")
    for raw in mappings:
        pm = dict(raw)
        protocol = pm.setdefault("protocol", "tcp")
        _enum(protocol, PROTOCOLS, "port mapping protocol")
        if "appProtocol" in pm:
            _enum(pm["appProtocol"], APP_PROTOCOLS, "appProtocol")
        if "containerPortRange" in pm:
            if mode not in ("bridge", "awsvpc"):
                raise _client(f"Invalid 'portMappings' setting for container '{name}'. containerPortRange is "
                              f"only supported when networkMode is bridge or awsvpc.")
            if "containerPort" in pm or pm.get("hostPort"):
                raise _client(f"Invalid 'portMappings' setting for container '{name}'. containerPort and "
                              f"hostPort cannot be set together with containerPortRange.")
            _port_range(name, pm["containerPortRange"])
            out.append(pm)
            continue
        cp = pm.get("containerPort")
        if cp is None or not 1 <= cp <= 65535:
            raise _client(f"Invalid 'portMappings' setting for container '{name}'. containerPort must be "
                          f"between 1 and 65535.")
        hp = pm.get("hostPort")
        if hp is not None and not 0 <= hp <= 65535:
            raise _client(f"Invalid 'portMappings' setting for container '{name}'. hostPort must be between "
                          f"0 and 65535.")
        if mode in ("awsvpc", "host"):
            if hp and hp != cp:
                raise _client(f"When networkMode={mode}, the host ports and container ports in port mappings "
                              f"must match.")
            pm["hostPort"] = cp
        if (cp, protocol) in seen:
            raise _client(f"Invalid 'portMappings' setting for container '{name}'. Duplicate containerPort "
                          f"{cp}/{protocol}.")
        seen.add((cp, protocol))
        out.append(pm)
    return out


def _port_range(name: str, text: str) -> tuple[int, int]:
    m = re.match(r"^(\d+)-(\d+)$", text or "")
    if not m or not 1 <= int(m.group(1)) < int(m.group(2)) <= 65535:
        raise _client(f"Invalid 'portMappings' setting for container '{name}'. containerPortRange must be "
                      f"'start-end' with 1 <= start < end <= 65535.")
    return int(m.group(1)), int(m.group(2))


def _task_ports(containers: list[Doc], mode: str) -> None:
    """Ports that would collide when the task starts: shared namespace (awsvpc/host) or static host ports."""
    seen: dict[tuple[int, str], str] = {}
    names: set[str] = set()
    for c in containers:
        for pm in c["portMappings"]:
            n = pm.get("name")
            if n is not None:
                if n in names:
                    raise _client(f"Port mapping names must be unique within a task definition: '{n}'.")
                names.add(n)
            if mode in ("awsvpc", "host"):
                port = pm.get("containerPort")
            elif mode == "bridge":
                port = pm.get("hostPort") or None
            else:
                port = None
            if port is None:
                continue
            key = (port, pm["protocol"])
            other = seen.get(key)
            if other is not None and other != c["name"]:
                kind = "host" if mode == "bridge" else "container"
                raise _client(f"Containers '{other}' and '{c['name']}' both map {kind} port "
                              f"{port}/{pm['protocol']}.")
            seen[key] = c["name"]


def _health_check(name: str, hc: Doc) -> Doc:
    out = dict(hc)
    cmd = out.get("command") or []
    if len(cmd) < 2 or cmd[0] not in ("CMD", "CMD-SHELL"):
        raise _client(f"Invalid 'healthCheck' setting for container '{name}'. The command must start with "
                      f"CMD or CMD-SHELL followed by the command to run.")
    for field, (lo, hi, default) in HEALTH_RANGES.items():
        v = out.get(field)
        if v is None:
            if default is not None:
                out[field] = default
            continue
        if not lo <= v <= hi:
            raise _client(f"Invalid 'healthCheck' setting for container '{name}'. '{field}' must be between "
                          f"{lo} and {hi}.")
    return out


def _references(c: Doc, by_name: dict[str, Doc]) -> None:
    name = c["name"]
    for dep in c.get("dependsOn") or []:
        target = dep.get("containerName")
        cond = dep.get("condition")
        _enum(cond, CONDITIONS, "dependsOn condition")
        other = by_name.get(target or "")
        if other is None or target == name:
            raise _client(f"Invalid 'dependsOn' setting for container '{name}'. Container '{target}' "
                          f"does not exist in the task definition.")
        if cond in ("COMPLETE", "SUCCESS") and other["essential"]:
            raise _client(f"Invalid 'dependsOn' setting for container '{name}'. The {cond} condition cannot "
                          f"be used on essential container '{target}'.")
        if cond == "HEALTHY" and "healthCheck" not in other:
            raise _client(f"Invalid 'dependsOn' setting for container '{name}'. The HEALTHY condition "
                          f"needs a healthCheck on container '{target}'.")
    for vf in c["volumesFrom"]:
        src = vf.get("sourceContainer")
        if src not in by_name or src == name:
            raise _client(f"Invalid 'volumesFrom' setting for container '{name}'. Container '{src}' does not "
                          f"exist in the task definition.")
    for link in c.get("links") or []:
        target = link.split(":", 1)[0]
        if target not in by_name or target == name:
            raise _client(f"Invalid 'links' setting for container '{name}'. Container '{target}' does "
                          f"not exist in the task definition.")


def _dependency_cycles(containers: list[Doc]) -> None:
    graph = {c["name"]: [d["containerName"] for d in c.get("dependsOn") or []] for c in containers}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(n: str) -> None:
        state[n] = 1
        for m in graph[n]:
            s = state.get(m)
            if s == 1:
                raise _client(f"Invalid 'dependsOn' setting: containers '{n}' and '{m}' depend on each other "
                              f"(a dependency cycle).")
            if s is None:
                visit(m)
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)


def _task_resources(containers: list[Doc], task_cpu: int | None, task_mem: int | None) -> None:
    if task_mem is not None:
        total = 0
        for c in containers:
            mem = c.get("memory")
            if mem is not None and mem > task_mem:
                raise _client(f"Invalid setting for container '{c['name']}'. 'memory' ({mem} MiB) cannot be "
                              f"greater than the task memory ({task_mem} MiB).")
            total += c.get("memoryReservation") or mem or 0
        if total > task_mem:
            raise _client(f"The containers' memory reservations ({total} MiB) are greater than the task "
                          f"memory ({task_mem} MiB).")
    if task_cpu is not None:
        total = sum(c["cpu"] for c in containers)
        if total > task_cpu:
            raise _client(f"The containers' cpu ({total} units) is greater than the task cpu ({task_cpu} "
                          f"units).")


# -- volumes and placement ---------------------------------------------------------

_VOLUME_KINDS = ("host", "dockerVolumeConfiguration", "efsVolumeConfiguration",
                 "fsxWindowsFileServerVolumeConfiguration")


def _volumes(volumes: list[Doc]) -> list[Doc]:
    out: list[Doc] = []
    names: set[str] = set()
    at_launch = 0
    for raw in volumes:
        name = raw.get("name")
        if not name or not NAME_RE.match(name):
            raise _client("Invalid volume name. Up to 255 letters (uppercase and lowercase), numbers, "
                          "hyphens and underscores are allowed.")
        if name in names:
            raise _client(f"Duplicate volume name '{name}': volume names must be unique within a task "
                          f"definition.")
        names.add(name)
        v = dict(raw)
        if sum(1 for k in _VOLUME_KINDS if v.get(k) is not None) > 1:
            raise _client(f"Invalid setting for volume '{name}'. Only one volume configuration type may be "
                          f"specified.")
        if v.get("configuredAtLaunch"):
            at_launch += 1
        dvc = v.get("dockerVolumeConfiguration")
        if dvc is not None:
            dvc = v["dockerVolumeConfiguration"] = dict(dvc)
            scope = dvc.setdefault("scope", "task")
            _enum(scope, SCOPES, "dockerVolumeConfiguration scope")
            if dvc.get("autoprovision") and scope != "shared":
                raise _client(f"Invalid setting for volume '{name}'. autoprovision can only be true when "
                              f"scope is shared.")
        efs = v.get("efsVolumeConfiguration")
        if efs is not None:
            efs = v["efsVolumeConfiguration"] = dict(efs)
            auth = efs.get("authorizationConfig") or {}
            if "transitEncryption" in efs:
                _enum(efs["transitEncryption"], ENABLED_DISABLED, "transitEncryption")
            if "iam" in auth:
                _enum(auth["iam"], ENABLED_DISABLED, "authorizationConfig iam")
            if auth.get("accessPointId") and efs.get("rootDirectory") not in (None, "/"):
                raise _client(f"Invalid setting for volume '{name}'. The rootDirectory must be omitted or "
                              f"'/' when an access point is used.")
            if auth.get("iam") == "ENABLED" and efs.get("transitEncryption") != "ENABLED":
                raise _client(f"Invalid setting for volume '{name}'. IAM authorization requires transit "
                              f"encryption to be ENABLED.")
            efs.setdefault("rootDirectory", "/")
        out.append(v)
    if at_launch > 1:
        raise _client("Only one volume may be configured at launch in a task definition.")
    return out


def _placement_constraints(constraints: list[Doc]) -> list[Doc]:
    if len(constraints) > MAX_PLACEMENT_CONSTRAINTS:
        raise _client(f"Too many placement constraints: a task definition can have at most "
                      f"{MAX_PLACEMENT_CONSTRAINTS}.")
    for pc in constraints:
        if pc.get("type") != "memberOf":
            raise _client(f"Invalid placement constraint type '{pc.get('type')}'. Task definitions support "
                          f"only memberOf.")
        if not (pc.get("expression") or "").strip():
            raise _client("A memberOf placement constraint needs an expression.")
    return [dict(pc) for pc in constraints]


# -- per launch type -------------------------------------------------------------------

def ec2_problem(v: _View) -> str | None:
    """Why the definition cannot run on EC2 (or EXTERNAL) instances, or None.

    Windows containers on EC2 ignore task-level memory, so they always need their own.
    """
    if v.memory is None or v.windows:
        for c in v.containers:
            if c.get("memory") is None and c.get("memoryReservation") is None:
                return (f"Invalid setting for container '{c['name']}'. At least one of 'memory' or "
                        f"'memoryReservation' must be specified.")
    return None


def fargate_problem(v: _View) -> str | None:
    """Why the definition cannot run on Fargate, or None. The first problem, worded as AWS does."""
    if v.mode != "awsvpc":
        return "Fargate only supports network mode 'awsvpc'."
    if v.cpu is None:
        return "Fargate requires that 'cpu' be defined at the task level."
    if v.memory is None:
        return "Fargate requires that 'memory' be defined at the task level."
    if v.cpu not in FARGATE_SIZES:
        return "Invalid 'cpu' setting for task."
    if not fargate_size_ok(v.cpu, v.memory):
        return (f"No Fargate configuration exists for given values: {v.cpu} CPU, {v.memory} memory. "
                f"See the Amazon ECS documentation for the valid values.")
    if v.windows and v.cpu < 1024:
        return "Fargate Windows tasks require at least 1 vCPU."
    req = v.req
    if req.get("pidMode") not in (None, "task"):
        return (f"Tasks using the Fargate launch type do not support pidMode '{req['pidMode']}'. "
                f"The supported value for pidMode is 'task'.")
    if "ipcMode" in req:
        return "Tasks using the Fargate launch type do not support ipcMode."
    if v.constraints:
        return "Tasks using the Fargate launch type do not support placement constraints."
    if req.get("inferenceAccelerators"):
        return "Tasks using the Fargate launch type do not support inference accelerators."
    for vol in v.volumes:
        if (vol.get("host") or {}).get("sourcePath"):
            return f"Fargate does not support host volumes with a sourcePath (volume '{vol['name']}')."
        if vol.get("dockerVolumeConfiguration") is not None:
            return f"Fargate does not support Docker volumes (volume '{vol['name']}')."
        if vol.get("fsxWindowsFileServerVolumeConfiguration") is not None and not v.windows:
            return ("Fargate does not support FSx for Windows File Server volumes on Linux "
                    f"(volume '{vol['name']}').")
    role = req.get("executionRoleArn")
    for c in v.containers:
        name = c["name"]
        for t in ("stopTimeout", "startTimeout"):
            if c.get(t, 0) > FARGATE_MAX_TIMEOUT:
                return (f"Invalid '{t}' setting for container '{name}'. Tasks using the Fargate launch type "
                        f"support at most {FARGATE_MAX_TIMEOUT} seconds.")
        if c.get("privileged"):
            return f"Tasks using the Fargate launch type do not support privileged containers ('{name}')."
        if any(rr.get("type") == "GPU" for rr in c.get("resourceRequirements") or []):
            return f"Tasks using the Fargate launch type do not support GPU resources ('{name}')."
        log = c.get("logConfiguration")
        if log is not None:
            driver = log.get("logDriver")
            if driver not in FARGATE_LOG_DRIVERS:
                return (f"Log driver {driver} is not supported on Fargate. Supported log drivers are "
                        f"{', '.join(FARGATE_LOG_DRIVERS)}.")
            if driver == "awslogs" and not role:
                return ("Fargate requires task definition to have execution role ARN to support log driver "
                        "awslogs.")
        if ECR_IMAGE_RE.match(c["image"]) and not role:
            return "Fargate requires task definition to have execution role ARN to support ECR images."
    return None


def external_problem(v: _View) -> str | None:
    """Why the definition cannot run on EXTERNAL (ECS Anywhere) instances, or None."""
    if v.mode == "awsvpc":
        return "Tasks using the EXTERNAL launch type do not support network mode 'awsvpc'."
    if v.req.get("inferenceAccelerators"):
        return "Tasks using the EXTERNAL launch type do not support inference accelerators."
    for vol in v.volumes:
        if vol.get("efsVolumeConfiguration") is not None or \
                vol.get("fsxWindowsFileServerVolumeConfiguration") is not None:
            return ("Tasks using the EXTERNAL launch type do not support EFS or FSx volumes "
                    f"(volume '{vol['name']}').")
    return ec2_problem(v)


def compatibilities(v: _View, required: list[str]) -> list[str]:
    """EC2 always; FARGATE or EXTERNAL when valid for them (AWS lists EXTERNAL first)."""
    out: list[str] = []
    if external_problem(v) is None:
        out.append("EXTERNAL")
    out.append("EC2")
    if fargate_problem(v) is None:
        out.append("FARGATE")
    if "MANAGED_INSTANCES" in required:
        out.append("MANAGED_INSTANCES")
    return out


def required_attributes(v: _View) -> list[str]:
    """The instance attributes a task of this definition needs (RegisterTaskDefinition's requiresAttributes).

    Container features: logConfiguration -> logging-driver.<driver> and Docker API 1.19 for
    awslogs (1.18 for others); memoryReservation -> 1.21; healthCheck -> container-health-check
    and 1.24; dependsOn/startTimeout/stopTimeout -> container-ordering; dockerLabels, ulimits
    -> 1.18; privileged -> privileged-container; secrets -> secrets.ssm|asm.environment-variables;
    environmentFiles -> env-files.s3; firelensConfiguration -> firelens.<type>;
    repositoryCredentials -> private-registry-authentication.secretsmanager; ECR image ->
    ecr-auth (and execution-role-ecr-pull with an execution role); containerPortRange ->
    network.container-port-range; restartPolicy -> container-restart-policy.
    Task features: awsvpc -> task-eni and 1.18; taskRoleArn -> task-iam-role (and
    task-iam-role-network-host in host mode); execution role with awslogs ->
    execution-role-awslogs; EFS -> efs (efsAuth with an access point or IAM); Docker volumes ->
    1.25 and docker-plugin.<driver> for a non-local driver; proxyConfiguration -> aws-appmesh.
    """
    names: dict[str, None] = {}

    def add(n: str) -> None:
        names[n] = None

    req = v.req
    role = bool(req.get("executionRoleArn"))
    for c in v.containers:
        log = c.get("logConfiguration")
        if log is not None:
            driver = log.get("logDriver")
            add(_LEGACY + f"logging-driver.{driver}")
            if driver == "awslogs":
                add(DOCKER_API + "1.19")
                if role:
                    add(_CAP + "execution-role-awslogs")
            else:
                add(DOCKER_API + "1.18")
        if c.get("memoryReservation") is not None:
            add(DOCKER_API + "1.21")
        if "healthCheck" in c:
            add(_CAP + "container-health-check")
            add(DOCKER_API + "1.24")
        if c.get("dependsOn") or "startTimeout" in c or "stopTimeout" in c:
            add(_CAP + "container-ordering")
        if c.get("dockerLabels") or c.get("ulimits"):
            add(DOCKER_API + "1.18")
        if c.get("privileged"):
            add(_LEGACY + "privileged-container")
        for s in c.get("secrets") or []:
            kind = "asm" if ":secretsmanager:" in (s.get("valueFrom") or "") else "ssm"
            add(_CAP + f"secrets.{kind}.environment-variables")
        if c.get("environmentFiles"):
            add(_CAP + "env-files.s3")
        fl = c.get("firelensConfiguration")
        if fl is not None:
            add(_CAP + f"firelens.{fl.get('type', 'fluentbit')}")
        if c.get("repositoryCredentials"):
            add(_CAP + "private-registry-authentication.secretsmanager")
        if ECR_IMAGE_RE.match(c["image"]):
            add(_LEGACY + "ecr-auth")
            if role:
                add(_CAP + "execution-role-ecr-pull")
        if any("containerPortRange" in pm for pm in c["portMappings"]):
            add(_CAP + "network.container-port-range")
        if (c.get("restartPolicy") or {}).get("enabled"):
            add(_CAP + "container-restart-policy")
    if req.get("taskRoleArn"):
        add(_LEGACY + "task-iam-role")
        if v.mode == "host":
            add(_LEGACY + "task-iam-role-network-host")
    if v.mode == "awsvpc":
        add(DOCKER_API + "1.18")
        add(_CAP + "task-eni")
    for vol in v.volumes:
        efs = vol.get("efsVolumeConfiguration")
        if efs is not None:
            add(_CAP + "efs")
            auth = efs.get("authorizationConfig") or {}
            if auth.get("accessPointId") or auth.get("iam") == "ENABLED":
                add(_CAP + "efsAuth")
        dvc = vol.get("dockerVolumeConfiguration")
        if dvc is not None:
            add(DOCKER_API + "1.25")
            driver = dvc.get("driver")
            if driver and driver != "local":
                add(_CAP + f"docker-plugin.{driver}")
    if req.get("proxyConfiguration"):
        add(_CAP + "aws-appmesh")
    return list(names)
