"""ECS task → Docker: the ContainerCreate bodies, volumes and host directories of one task.

Pure functions, no I/O. ``plan_task`` is the whole translation; the task engine
creates what the plan lists (host directories, then volumes, then containers in
dependency order) through a Driver.

Field by field (ContainerDefinition → ContainerCreate):

- ``image`` → Image (registry host kept), ``command`` → Cmd, ``entryPoint`` →
  Entrypoint, ``environment`` → Env, ``workingDirectory`` → WorkingDir, ``user``
  → User, ``hostname`` → Hostname, ``interactive`` → OpenStdin, ``pseudoTerminal``
  → Tty, ``disableNetworking`` → NetworkDisabled, ``dockerLabels`` → Labels (the
  agent's labels from ``protocol.py`` win over the user's).
- ``cpu`` → HostConfig.CpuShares (null, 0 and 1 become 2; capped at 262144:
  the ECS agent's rule). ``memory`` → Memory (hard, MiB → bytes),
  ``memoryReservation`` → MemoryReservation, ``linuxParameters.maxSwap`` →
  MemorySwap (memory + maxSwap), ``swappiness`` → MemorySwappiness.
- Task-level ``cpu``/``memory``. ECS puts the task in a cgroup with those limits;
  Dockyard makes no task cgroup. Instead each container gets Memory = the task
  memory (or its own ``memory`` when smaller) and NanoCpus = the task cpu as a
  hard cap, and the task's cpu units are divided among the containers'
  CpuShares in the ratio of their own shares, so CPU contention *between
  tasks* weighs as on ECS. For a single-container task this is exactly ECS's
  limit; with several containers each one is capped at the task's limit but
  their sum is not.
- ``ulimits`` → Ulimits, ``readonlyRootFilesystem`` → ReadonlyRootfs,
  ``privileged`` → Privileged, ``linuxParameters``: ``capabilities`` →
  CapAdd/CapDrop, ``initProcessEnabled`` → Init, ``sharedMemorySize`` → ShmSize
  (MiB), ``tmpfs`` → Tmpfs (``size=<n>m`` + mountOptions), ``devices`` →
  Devices. ``systemControls`` → Sysctls, ``dockerSecurityOptions`` →
  SecurityOpt, ``extraHosts`` → ExtraHosts, ``dnsServers`` → Dns,
  ``dnsSearchDomains`` → DnsSearch.
- ``networkMode`` bridge (default) / host / none → NetworkMode. ``links`` (bridge)
  → Links ``<engine name of the target>:<alias>``. ``portMappings`` → ExposedPorts
  and (bridge only) PortBindings on ``bind_ip``; hostPort 0 or absent → HostPort ""
  (the engine picks an ephemeral port); ``containerPortRange`` → one dynamic
  binding per port.
- Volumes: ``host.sourcePath`` → a bind of that path; a volume with neither
  ``host.sourcePath`` nor ``dockerVolumeConfiguration`` → a bind of
  ``<host_dir>/<task id>/<volume name>`` (listed in ``TaskPlan.host_dirs``; the
  engine creates it and deletes it at task cleanup); ``dockerVolumeConfiguration``
  → a named volume (``scope`` task: named per task like the containers, created
  at start and removed with the task; ``shared``: the name as given, created when
  ``autoprovision`` is true, otherwise it must already exist). ``mountPoints`` →
  Binds (``:ro`` when readOnly), ``volumesFrom`` → VolumesFrom (engine name,
  ``:ro``).
- ``healthCheck`` → Healthcheck (CMD / CMD-SHELL, seconds → ns). With no
  healthCheck the image's HEALTHCHECK is disabled (``["NONE"]``): ECS reports only
  checks defined in the task definition.
- ``logConfiguration`` → LogConfig for the drivers Docker has built in (see
  ``runtime_support.SUPPORTED_LOG_DRIVERS``); without it the engine's default.
- ``pidMode``/``ipcMode``: ``host`` → the host's namespace; ``ipcMode`` ``none``
  → IpcMode none. ``task`` (the whole task shares one namespace; ECS uses its
  pause container) is done without a pause container: the first container that
  depends on no other one owns the namespace (IpcMode ``shareable``), every other
  container joins it (``container:<owner's engine name>``) and must start after
  the owner is running (``TaskPlan.requires_running``). With one container,
  ``task`` is just its own namespace.
- RunTask ``overrides``: ``containerOverrides`` command, environment (merged, the
  override wins), cpu, memory, memoryReservation; task ``cpu``/``memory``.

Everything else that would change what a container does is refused through
``runtime_support.unsupported`` (``PlanError``), never silently dropped.
``stopTimeout`` is used by the engine: ``stop_timeout()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dockyard.agent.drivers.base import ContainerSpec
from dockyard.agent.protocol import (
    LABEL_CLUSTER,
    LABEL_CONTAINER_NAME,
    LABEL_FAMILY,
    LABEL_INSTANCE,
    LABEL_REVISION,
    LABEL_TASK_ARN,
    TaskPayload,
)
from dockyard.services.ecs.runtime_support import unsupported

Doc = dict[str, Any]

MIB = 1024 * 1024
NS = 1_000_000_000
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262144
# Health check defaults (ECS): interval 30 s, timeout 5 s, retries 3.
HEALTH_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3}

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


class PlanError(ValueError):
    """The task cannot be translated; ``problems`` says why (one sentence each)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(slots=True)
class VolumePlan:
    name: str  # the engine-side volume name
    source: str  # the task definition's volume name (mountPoints[].sourceVolume)
    driver: str
    driver_opts: dict[str, str]
    labels: dict[str, str]
    scope: Literal["task", "shared"]
    autoprovision: bool  # shared only: create it when missing (else it must exist)


@dataclass(slots=True)
class TaskPlan:
    task_id: str
    # ECS container name -> what to create, in task definition order.
    containers: dict[str, ContainerSpec]
    # Docker volumes: task-scoped ones to create (and remove with the task), shared ones to
    # create when autoprovision is set or to check for otherwise.
    volumes: list[VolumePlan] = field(default_factory=list)
    # Host directories of task-scoped bind volumes: create before the containers, delete at cleanup.
    host_dirs: list[Path] = field(default_factory=list)
    # Ordering the Docker engine itself imposes (besides dependsOn, which the engine reads from
    # the task definition): container -> containers that must be *running* before it is started
    # (links, pidMode/ipcMode task), and that must be *created* before it is created (volumesFrom).
    requires_running: dict[str, list[str]] = field(default_factory=dict)
    requires_created: dict[str, list[str]] = field(default_factory=dict)


# -- names -------------------------------------------------------------------------

def task_id(task_arn: str) -> str:
    """The task id: the last part of the task ARN (``arn:...:task/<cluster>/<id>``)."""
    return task_arn.rsplit("/", 1)[-1]


def _sanitise(name: str) -> str:
    return _NAME_BAD.sub("-", name)


def engine_name(payload: TaskPayload, container_name: str) -> str:
    """``ecs-<family>-<revision>-<containerName>-<first 20 chars of the task id>``.

    Deterministic per task, so a retried create meets a name conflict instead of
    making a second container.
    """
    tid = task_id(payload["taskArn"])[:20]
    return _sanitise(f"ecs-{payload['family']}-{payload['revision']}-{container_name}-{tid}")


def volume_name(payload: TaskPayload, volume: str) -> str:
    """The engine name of a task-scoped Docker volume (same pattern as the containers)."""
    return engine_name(payload, volume)


# -- helpers -----------------------------------------------------------------------

def stop_timeout(container_def: Doc, default: float) -> float:
    """Seconds between the stop signal and SIGKILL: the container's ``stopTimeout``, else ``default``."""
    v = container_def.get("stopTimeout")
    return float(v) if v is not None else float(default)


def cpu_shares(cpu: int | float | None) -> int:
    """ECS's rule: null, 0 and 1 → 2; above 262144 → 262144."""
    if not cpu or cpu < CPU_SHARES_MIN:
        return CPU_SHARES_MIN
    return min(int(cpu), CPU_SHARES_MAX)


_NUM = r"(\d+(?:\.\d+)?)"
_VCPU = re.compile(r"^\s*" + _NUM + r"\s*vcpus?\s*$", re.IGNORECASE)
_GB = re.compile(r"^\s*" + _NUM + r"\s*gi?b\s*$", re.IGNORECASE)
_MB = re.compile(r"^\s*" + _NUM + r"\s*(?:mi?b)?\s*$", re.IGNORECASE)


def parse_task_cpu(value: Any) -> int | None:
    """Task cpu ("1024", "1 vCPU", 1024) → units; None when unset or unparsable."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    m = _VCPU.match(str(value))
    if m:
        return int(float(m.group(1)) * 1024)
    try:
        return int(float(str(value)))
    except ValueError:
        return None


def parse_task_memory(value: Any) -> int | None:
    """Task memory ("2048", "2GB", "512 MiB", 2048) → MiB; None when unset or unparsable."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    m = _GB.match(text)
    if m:
        return int(float(m.group(1)) * 1024)
    m = _MB.match(text)
    if m:
        return int(float(m.group(1)))
    return None


def _merge_env(base: list[Doc], override: list[Doc]) -> list[str]:
    env: dict[str, str] = {}
    for e in base:
        env[e["name"]] = e.get("value", "") or ""
    for e in override:
        env[e["name"]] = e.get("value", "") or ""
    return [f"{k}={v}" for k, v in env.items()]


def _apply_override(c: Doc, ov: Doc | None) -> Doc:
    if not ov:
        return c
    c = dict(c)
    if ov.get("command"):
        c["command"] = list(ov["command"])
    if ov.get("environment"):
        c["_env_override"] = ov["environment"]
    for k in ("cpu", "memory", "memoryReservation"):
        if ov.get(k) is not None:
            c[k] = ov[k]
    return c


def _healthcheck(hc: Doc | None) -> Doc:
    if not hc:
        return {"Test": ["NONE"]}
    out: Doc = {"Test": list(hc["command"])}
    def get(key: str) -> float:
        v = hc.get(key)
        return float(v) if v is not None else float(HEALTH_DEFAULTS[key])

    out["Interval"] = int(get("interval") * NS)
    out["Timeout"] = int(get("timeout") * NS)
    out["Retries"] = int(get("retries"))
    if hc.get("startPeriod"):
        out["StartPeriod"] = int(hc["startPeriod"] * NS)
    return out


def _device_permissions(perms: list[str] | None) -> str:
    if not perms:
        return "rwm"
    letters = {"read": "r", "write": "w", "mknod": "m"}
    return "".join(letters[p] for p in ("read", "write", "mknod") if p in perms) or "rwm"


def _ports(c: Doc, mode: str, bind_ip: str) -> tuple[Doc, Doc]:
    exposed: Doc = {}
    bindings: dict[str, list[Doc]] = {}
    for pm in c.get("portMappings") or []:
        proto = pm.get("protocol") or "tcp"
        rng = pm.get("containerPortRange")
        if rng:
            lo, hi = (int(x) for x in str(rng).split("-", 1))
            pairs = [(p, 0) for p in range(lo, hi + 1)]
        else:
            pairs = [(int(pm["containerPort"]), int(pm.get("hostPort") or 0))]
        for cp, hp in pairs:
            key = f"{cp}/{proto}"
            exposed[key] = {}
            if mode == "bridge":
                bindings.setdefault(key, []).append({"HostIp": bind_ip, "HostPort": str(hp) if hp else ""})
    return exposed, bindings


def _dependencies(c: Doc) -> set[str]:
    deps = {d["containerName"] for d in c.get("dependsOn") or []}
    deps |= {link.split(":", 1)[0] for link in c.get("links") or []}
    deps |= {v["sourceContainer"] for v in c.get("volumesFrom") or []}
    return deps


# -- the plan ----------------------------------------------------------------------

def plan_task(payload: TaskPayload, instance_arn: str, host_dir: Path, bind_ip: str = "0.0.0.0") -> TaskPlan:
    """Everything needed to run ``payload``'s task on the local engine.

    Raises PlanError when the task uses something the runtime cannot honour
    (``runtime_support.unsupported``) or refers to an unknown volume or container.
    """
    td: Doc = payload["taskDefinition"]
    overrides: Doc = payload.get("overrides") or {}
    problems = unsupported(td, overrides)
    if problems:
        raise PlanError(problems)

    tid = task_id(payload["taskArn"])
    mode = td.get("networkMode") or "bridge"
    by_override = {o["name"]: o for o in overrides.get("containerOverrides") or [] if o.get("name")}
    defs = [_apply_override(c, by_override.get(c["name"])) for c in td.get("containerDefinitions") or []]
    names = {c["name"]: engine_name(payload, c["name"]) for c in defs}
    task_cpu = parse_task_cpu(overrides.get("cpu") or td.get("cpu"))
    task_mem = parse_task_memory(overrides.get("memory") or td.get("memory"))

    base_labels = {
        LABEL_CLUSTER: payload["clusterArn"],
        LABEL_TASK_ARN: payload["taskArn"],
        LABEL_FAMILY: payload["family"],
        LABEL_REVISION: str(payload["revision"]),
        LABEL_INSTANCE: instance_arn,
    }

    plan = TaskPlan(task_id=tid, containers={})
    problems = []

    # Volumes: task definition volume name -> the Binds source.
    sources: dict[str, str] = {}
    for v in td.get("volumes") or []:
        vname = v["name"]
        dvc = v.get("dockerVolumeConfiguration")
        host = v.get("host") or {}
        if dvc:
            scope = dvc.get("scope") or "task"
            if scope == "task":
                engine_vol = volume_name(payload, vname)
                labels = {**(dvc.get("labels") or {}), **base_labels}
            else:
                engine_vol = vname
                labels = dict(dvc.get("labels") or {})
            plan.volumes.append(VolumePlan(
                name=engine_vol, source=vname, driver=dvc.get("driver") or "local",
                driver_opts=dict(dvc.get("driverOpts") or {}), labels=labels,
                scope="task" if scope == "task" else "shared",
                autoprovision=bool(dvc.get("autoprovision")) and scope == "shared"))
            sources[vname] = engine_vol
        elif host.get("sourcePath"):
            sources[vname] = host["sourcePath"]
        else:
            d = host_dir / tid / vname
            plan.host_dirs.append(d)
            sources[vname] = str(d)

    # CPU: the task's units shared among the containers in the ratio of their own shares.
    own_shares = {c["name"]: cpu_shares(c.get("cpu")) for c in defs}
    total_shares = sum(own_shares.values()) or 1

    # pidMode/ipcMode "task": the namespace owner is the first container that depends on nothing.
    ns_owner: str | None = None
    if len(defs) > 1 and "task" in (td.get("pidMode"), td.get("ipcMode")):
        ns_owner = next((c["name"] for c in defs if not (_dependencies(c) & names.keys())), defs[0]["name"])

    for c in defs:
        cname = c["name"]
        config: Doc = {"Image": c["image"]}
        hc: Doc = {"NetworkMode": mode}
        if c.get("command"):
            config["Cmd"] = list(c["command"])
        if c.get("entryPoint"):
            config["Entrypoint"] = list(c["entryPoint"])
        config["Env"] = _merge_env(c.get("environment") or [], c.get("_env_override") or [])
        if c.get("workingDirectory"):
            config["WorkingDir"] = c["workingDirectory"]
        if c.get("user"):
            config["User"] = c["user"]
        if c.get("hostname"):
            config["Hostname"] = c["hostname"]
        if c.get("interactive"):
            config["OpenStdin"] = True
        if c.get("pseudoTerminal"):
            config["Tty"] = True
        if c.get("disableNetworking"):
            config["NetworkDisabled"] = True
        config["Labels"] = {**(c.get("dockerLabels") or {}), **base_labels, LABEL_CONTAINER_NAME: cname}
        config["Healthcheck"] = _healthcheck(c.get("healthCheck"))

        # Resources.
        if task_cpu:
            hc["CpuShares"] = cpu_shares(round(task_cpu * own_shares[cname] / total_shares))
            hc["NanoCpus"] = int(task_cpu * NS // 1024)
        else:
            hc["CpuShares"] = own_shares[cname]
        memory = c.get("memory")
        if task_mem:
            memory = min(memory, task_mem) if memory else task_mem
        if memory:
            hc["Memory"] = int(memory) * MIB
        if c.get("memoryReservation"):
            hc["MemoryReservation"] = int(c["memoryReservation"]) * MIB
        lp: Doc = c.get("linuxParameters") or {}
        if lp.get("maxSwap") is not None and memory:
            hc["MemorySwap"] = (int(memory) + int(lp["maxSwap"])) * MIB
        if lp.get("swappiness") is not None:
            hc["MemorySwappiness"] = int(lp["swappiness"])
        if c.get("ulimits"):
            hc["Ulimits"] = [{"Name": u["name"], "Soft": u["softLimit"], "Hard": u["hardLimit"]}
                             for u in c["ulimits"]]

        # Security and kernel.
        if c.get("readonlyRootFilesystem"):
            hc["ReadonlyRootfs"] = True
        if c.get("privileged"):
            hc["Privileged"] = True
        caps = lp.get("capabilities") or {}
        if caps.get("add"):
            hc["CapAdd"] = list(caps["add"])
        if caps.get("drop"):
            hc["CapDrop"] = list(caps["drop"])
        if lp.get("initProcessEnabled"):
            hc["Init"] = True
        if lp.get("sharedMemorySize"):
            hc["ShmSize"] = int(lp["sharedMemorySize"]) * MIB
        if lp.get("tmpfs"):
            hc["Tmpfs"] = {t["containerPath"]: ",".join([f"size={int(t['size'])}m", *(t.get("mountOptions") or [])])
                           for t in lp["tmpfs"]}
        if lp.get("devices"):
            hc["Devices"] = [{"PathOnHost": d["hostPath"], "PathInContainer": d.get("containerPath") or d["hostPath"],
                              "CgroupPermissions": _device_permissions(d.get("permissions"))}
                             for d in lp["devices"]]
        if c.get("systemControls"):
            hc["Sysctls"] = {s["namespace"]: s["value"] for s in c["systemControls"]}
        if c.get("dockerSecurityOptions"):
            hc["SecurityOpt"] = list(c["dockerSecurityOptions"])

        # Network.
        exposed, bindings = _ports(c, mode, bind_ip)
        if exposed:
            config["ExposedPorts"] = exposed
        if bindings:
            hc["PortBindings"] = bindings
        if c.get("extraHosts"):
            hc["ExtraHosts"] = [f"{h['hostname']}:{h['ipAddress']}" for h in c["extraHosts"]]
        if c.get("dnsServers"):
            hc["Dns"] = list(c["dnsServers"])
        if c.get("dnsSearchDomains"):
            hc["DnsSearch"] = list(c["dnsSearchDomains"])
        running: list[str] = []
        links: list[str] = []
        for link in c.get("links") or []:
            target, _, alias = link.partition(":")
            if target not in names:
                problems.append(f"container '{cname}': links refers to unknown container '{target}'")
                continue
            links.append(f"{names[target]}:{alias or target}")
            running.append(target)
        if links:
            hc["Links"] = links

        # Storage.
        binds: list[str] = []
        for mp in c.get("mountPoints") or []:
            src = sources.get(mp.get("sourceVolume", ""))
            if src is None:
                problems.append(f"container '{cname}': mountPoints refers to unknown volume "
                                f"'{mp.get('sourceVolume')}'")
                continue
            binds.append(f"{src}:{mp['containerPath']}" + (":ro" if mp.get("readOnly") else ""))
        if binds:
            hc["Binds"] = binds
        created: list[str] = []
        volumes_from: list[str] = []
        for vf in c.get("volumesFrom") or []:
            source = vf.get("sourceContainer", "")
            if source not in names:
                problems.append(f"container '{cname}': volumesFrom refers to unknown container '{source}'")
                continue
            volumes_from.append(names[source] + (":ro" if vf.get("readOnly") else ""))
            created.append(source)
        if volumes_from:
            hc["VolumesFrom"] = volumes_from

        # Namespaces.
        for key, value in (("PidMode", td.get("pidMode")), ("IpcMode", td.get("ipcMode"))):
            if value in ("host", "none"):
                hc[key] = value
            elif value == "task" and ns_owner is not None:
                if cname == ns_owner:
                    if key == "IpcMode":
                        hc[key] = "shareable"
                else:
                    hc[key] = f"container:{names[ns_owner]}"
                    if ns_owner not in running:
                        running.append(ns_owner)

        log = c.get("logConfiguration")
        if log:
            hc["LogConfig"] = {"Type": log["logDriver"], "Config": dict(log.get("options") or {})}

        config["HostConfig"] = hc
        plan.containers[cname] = ContainerSpec(name=names[cname], config=config)
        if running:
            plan.requires_running[cname] = running
        if created:
            plan.requires_created[cname] = created

    if problems:
        raise PlanError(problems)
    return plan
