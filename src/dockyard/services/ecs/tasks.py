"""Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the task state machine.

A task is one row of ``tasks``: the wire document plus the columns queries
filter on. Every change of ``desiredStatus``/``lastStatus`` goes through
``transition()``, which keeps the cluster counters (running/pending), the
instance counters (runningTasksCount/pendingTasksCount) and the instance's
remaining resources true in the same transaction. The agent channel will call
``transition()`` (or ``record_state()``) as agents report; until then StopTask
only records the intent (desiredStatus STOPPED) and the task keeps its
lastStatus and its resources, as it would on ECS while the agent is away.

Counting rules:
  cluster runningTasksCount = tasks whose lastStatus is RUNNING
  cluster pendingTasksCount = tasks in PROVISIONING/PENDING/ACTIVATING
  instance runningTasksCount = tasks with desiredStatus RUNNING, not yet STOPPED
  instance pendingTasksCount = tasks in PROVISIONING/PENDING/ACTIVATING
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, update

from dockyard.api.errors import (
    ClientException,
    ConflictException,
    InvalidParameterException,
    ServerException,
    ServiceNotFoundException,
    UnsupportedFeatureException,
)
from dockyard.scheduler.query import QuerySyntaxError, compile_query
from dockyard.services.context import Ctx
from dockyard.services.ecs import capacity_providers, idempotency, placement, runtime_support, task_definitions
from dockyard.services.ecs import container_instances as ci
from dockyard.services.ecs.common import (
    ClusterRow,
    Doc,
    bump_cluster,
    cluster_name_from_arn,
    cluster_scoped_arn,
    dumps,
    encode_token,
    get_tags,
    loads,
    max_results,
    put_tags,
    remove_tags,
    require_cluster,
    require_items,
    string_token,
    validate_tags,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns, ids
from dockyard.state.schema import services as svt
from dockyard.state.schema import tags as tagt
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Prepared, Tx, prepare

PENDING_STATES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
MAX_RUN_COUNT = 10
MAX_START_INSTANCES = 10
MAX_DESCRIBE = 100
MAX_CONSTRAINTS = 10
MAX_STRATEGIES = 5
STARTED_BY_RE = re.compile(r"^[A-Za-z0-9_/-]{1,128}$")
TASK_ID_RE = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# -- rows ----------------------------------------------------------------------------

_COLS = (tkt.c.arn, tkt.c.cluster_arn, tkt.c.container_instance_arn, tkt.c.desired_status,
         tkt.c.last_status, tkt.c.held, tkt.c.doc)


COLUMNS = _COLS  # the columns TaskRow is built from, in its order


class TaskRow:
    __slots__ = ("_doc", "arn", "cluster_arn", "desired", "doc_raw", "held_raw", "instance_arn", "last")

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.arn, self.cluster_arn, self.instance_arn, self.desired, self.last, self.held_raw,
         self.doc_raw) = row
        self._doc: Doc | None = None

    @property
    def doc(self) -> Doc:
        if self._doc is None:
            self._doc = loads(self.doc_raw)
        return self._doc


_INSERT = prepare(insert(tkt))
_BY_ARN = prepare(select(*_COLS).where(tkt.c.arn == bindparam("a")))
_SET = prepare(update(tkt).where(tkt.c.arn == bindparam("a"))
               .values(desired_status=bindparam("ds"), last_status=bindparam("ls"),
                       stopped_at=bindparam("sa"), held=bindparam("h"), doc=bindparam("d")))
# The same without desiredStatus: SQLite rewrites the entries of every index on a column the
# UPDATE sets, changed or not, and desired_status is in seven of the tasks indexes.
_SET_LAST = prepare(update(tkt).where(tkt.c.arn == bindparam("a"))
                    .values(last_status=bindparam("ls"), stopped_at=bindparam("sa"), held=bindparam("h"),
                            doc=bindparam("d")))
_LIVE_ON = prepare(select(*_COLS).where(tkt.c.container_instance_arn == bindparam("a"),
                                        tkt.c.last_status != "STOPPED"))
_SERVICE = prepare(select(svt.c.arn).where(svt.c.cluster_arn == bindparam("c"), svt.c.name == bindparam("n")))
_TAG_INS = prepare(insert(tagt))


def get(tx: Tx, arn: str) -> TaskRow | None:
    row = tx.one(_BY_ARN, a=arn)
    return TaskRow(row) if row else None


def task_arn_for(ctx: Ctx, cluster: ClusterRow, ref: str) -> str | None:
    return cluster_scoped_arn(ctx, cluster, ref, "task", TASK_ID_RE, arns.task)


def find(tx: Tx, ctx: Ctx, cluster: ClusterRow, ref: str) -> TaskRow | None:
    arn = task_arn_for(ctx, cluster, ref)
    if arn is None:
        return None
    r = get(tx, arn)
    if r is None or r.cluster_arn != cluster.arn:
        return None
    return r


def render(tx: Tx, row: TaskRow, include_tags: bool = False) -> Doc:
    doc = dict(row.doc)
    if include_tags:
        doc["tags"] = get_tags(tx, row.arn)
    return doc


# -- the state machine -------------------------------------------------------------------

def _contribution(desired: str, last: str) -> tuple[int, int, int, int]:
    """(cluster running, cluster pending, instance running, instance pending) one task adds."""
    pending = 1 if last in PENDING_STATES else 0
    return (1 if last == "RUNNING" else 0, pending,
            1 if desired == "RUNNING" and last != "STOPPED" else 0, pending)


def _apply_counts(tx: Tx, cluster_arn: str, instance_arn: str | None,
                  before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> None:
    d = [a - b for a, b in zip(after, before, strict=True)]
    bump_cluster(tx, cluster_arn, running_tasks=d[0], pending_tasks=d[1])
    if instance_arn:
        ci.bump_task_counts(tx, instance_arn, running=d[2], pending=d[3])


def transition(tx: Tx, row: TaskRow, now: float, *, desired: str | None = None, last: str | None = None,
               stop_code: str | None = None, reason: str | None = None,
               fields: Doc | None = None) -> Doc:
    """Move a task's desired and/or last status; the one place counters and resources follow from.

    STOPPED is terminal for lastStatus, and a STOPPED task is also desired STOPPED.
    The first stopCode/stoppedReason recorded stays. Reaching lastStatus STOPPED
    gives the task's resources back to its instance and deletes its tags.
    Returns the task document as it now is.
    """
    old_d, old_l = row.desired, row.last
    new_l = "STOPPED" if old_l == "STOPPED" else (last or old_l)
    new_d = "STOPPED" if new_l == "STOPPED" else (desired or old_d)
    if old_d == "STOPPED":
        new_d = "STOPPED"
    doc = row.doc
    changed = bool(fields)
    if fields:
        doc.update(fields)
    if new_d != old_d:
        changed = True
        doc["desiredStatus"] = new_d
        if new_d == "STOPPED":
            doc.setdefault("stoppingAt", now)
    if new_d == "STOPPED" and (stop_code or reason):
        if stop_code and "stopCode" not in doc:
            doc["stopCode"] = stop_code
            changed = True
        if reason and "stoppedReason" not in doc:
            doc["stoppedReason"] = reason
            changed = True
    held = row.held_raw
    stopped_at = None
    if new_l != old_l:
        changed = True
        doc["lastStatus"] = new_l
        if new_l == "RUNNING":
            doc.setdefault("startedAt", now)
        if new_l == "STOPPED":
            doc.setdefault("stoppingAt", now)
            doc.setdefault("executionStoppedAt", now)
            doc["stoppedAt"] = now
            for c in doc.get("containers", []):
                c["lastStatus"] = "STOPPED"
    if new_l == "STOPPED":
        stopped_at = doc.get("stoppedAt", now)
        if held is not None and row.instance_arn:
            h = orjson.loads(held)
            ci.release(tx, row.instance_arn, h["cpu"], h["memory"], h["tcp"], h["udp"])
        held = None
    if not changed:
        return doc
    doc["version"] = int(doc.get("version", 0)) + 1
    if new_d != old_d:
        tx.run(_SET, a=row.arn, ds=new_d, ls=new_l, sa=stopped_at, h=held, d=dumps(doc))
    else:
        tx.run(_SET_LAST, a=row.arn, ls=new_l, sa=stopped_at, h=held, d=dumps(doc))
    _apply_counts(tx, row.cluster_arn, row.instance_arn, _contribution(old_d, old_l),
                  _contribution(new_d, new_l))
    if new_l == "STOPPED" and old_l != "STOPPED":
        remove_tags(tx, row.arn)
    row.desired, row.last, row.held_raw = new_d, new_l, held
    row.doc_raw = dumps(doc)
    tx.notify("task", row.arn)
    _notify_service(tx, row.cluster_arn, doc)
    # Narrower topics for consumers that only care about these (the agent channel's push).
    if new_d != old_d:
        tx.notify("task-desired", row.arn)
    if new_l == "STOPPED" and old_l != "STOPPED":
        tx.notify("task-stopped", row.arn)
    return doc


def _notify_service(tx: Tx, cluster_arn: str, doc: Doc) -> None:
    """A service's task changed: the service scheduler hears it under the service's ARN."""
    group = doc.get("group") or ""
    if group.startswith("service:") and doc.get("startedBy", "").startswith("ecs-svc/"):
        a = arns.parse(cluster_arn)
        if a is not None:
            tx.notify("service-task", arns.service(a.region, a.account_id, cluster_name_from_arn(cluster_arn),
                                                   group[8:]))


def record_state(tx: Tx, task_arn: str, last_status: str, now: float, *, reason: str | None = None,
                 stop_code: str | None = None, fields: Doc | None = None) -> Doc | None:
    """What the agent channel calls when an agent reports a task's state (PENDING/RUNNING/STOPPED)."""
    row = get(tx, task_arn)
    if row is None:
        return None
    return transition(tx, row, now, last=last_status, reason=reason, stop_code=stop_code, fields=fields)


def request_stop(tx: Tx, row: TaskRow, now: float, stop_code: str, reason: str) -> Doc:
    """Ask for a task to stop: desiredStatus STOPPED. The agent does the stopping and reports STOPPED."""
    return transition(tx, row, now, desired="STOPPED", stop_code=stop_code, reason=reason)


def orphan_tasks_on(tx: Tx, ctx: Ctx, instance_arn: str) -> int:
    """Forced deregistration: ECS stops tracking the instance's tasks (they may still run on the host)."""
    n = 0
    instance_id = instance_arn.rsplit("/", 1)[-1]
    for r in tx.all(_LIVE_ON, a=instance_arn):
        transition(tx, TaskRow(r), ctx.now, last="STOPPED",
                   reason=f"Container instance {instance_id} was deregistered; the task is no longer "
                          "tracked and may still be running on the host.")
        n += 1
    return n


# -- task definitions, overrides and resource needs ------------------------------------------

def _cpu_units(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    s = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*vcpus?", s)
    try:
        n = float(m.group(1)) * 1024 if m else float(s)
    except ValueError:
        raise InvalidParameterException(f"Invalid 'cpu' setting for {what}.") from None
    if n < 0:
        raise InvalidParameterException(f"Invalid 'cpu' setting for {what}.")
    return int(n)


def _memory_mib(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    s = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(gb|gib|mb|mib)", s)
    try:
        if m:
            n = float(m.group(1)) * (1024 if m.group(2) in ("gb", "gib") else 1)
        else:
            n = float(s)
    except ValueError:
        raise InvalidParameterException(f"Invalid 'memory' setting for {what}.") from None
    if n < 0:
        raise InvalidParameterException(f"Invalid 'memory' setting for {what}.")
    return int(n)


@dataclass
class Needs:
    """What one copy of a task definition (with overrides) needs on an instance."""

    cpu: int
    memory: int
    tcp: list[int]
    udp: list[int]
    cpu_text: str
    memory_text: str
    containers: list[Doc]  # per container: name, image, cpu, memory, memoryReservation, healthCheck
    overrides: Doc
    network_mode: str


def needs(td: Doc, overrides: Doc | None) -> Needs:
    overrides = overrides or {}
    defs = td.get("containerDefinitions") or []
    by_name = {c.get("name"): c for c in defs}
    given: dict[str, Doc] = {}
    for o in overrides.get("containerOverrides") or []:
        name = o.get("name")
        if name not in by_name:
            raise InvalidParameterException(
                f"Override for container named {name} is not a container in the TaskDefinition.")
        given[name] = o
    containers: list[Doc] = []
    total_cpu = total_mem = 0
    for cd in defs:
        o = given.get(cd["name"], {})
        cpu = o["cpu"] if o.get("cpu") is not None else (cd.get("cpu") or 0)
        mem = o["memory"] if o.get("memory") is not None else cd.get("memory")
        res = o["memoryReservation"] if o.get("memoryReservation") is not None else cd.get("memoryReservation")
        if mem is not None and res is not None and res > mem:
            raise InvalidParameterException(
                f"Container {cd['name']}: memoryReservation cannot be greater than memory.")
        total_cpu += int(cpu)
        total_mem += int(res if res is not None else (mem or 0))
        containers.append({"name": cd["name"], "image": cd.get("image", ""), "cpu": int(cpu),
                           "memory": mem, "memoryReservation": res, "healthCheck": cd.get("healthCheck")})
    task_cpu = _cpu_units(overrides.get("cpu"), "task") if overrides.get("cpu") else \
        _cpu_units(td.get("cpu"), "task")
    task_mem = _memory_mib(overrides.get("memory"), "task") if overrides.get("memory") else \
        _memory_mib(td.get("memory"), "task")
    cpu = task_cpu if task_cpu is not None else total_cpu
    mem = task_mem if task_mem is not None else total_mem
    mode = td.get("networkMode") or "bridge"
    tcp: list[int] = []
    udp: list[int] = []
    if mode in ("bridge", "host"):
        for cd in defs:
            for pm in cd.get("portMappings") or []:
                host = pm.get("hostPort")
                if mode == "host" and not host:
                    host = pm.get("containerPort")
                if host:
                    (udp if (pm.get("protocol") or "tcp") == "udp" else tcp).append(int(host))
    out_overrides: Doc = {
        "containerOverrides": [{"name": cd["name"], **{k: v for k, v in given.get(cd["name"], {}).items()
                                                         if k != "name"}} for cd in defs],
        "inferenceAcceleratorOverrides": overrides.get("inferenceAcceleratorOverrides") or [],
    }
    for k in ("cpu", "memory", "executionRoleArn", "taskRoleArn", "ephemeralStorage"):
        if overrides.get(k) is not None:
            out_overrides[k] = overrides[k]
    cpu_text = str(overrides.get("cpu") or td.get("cpu") or cpu)
    mem_text = str(overrides.get("memory") or td.get("memory") or mem)
    return Needs(cpu, mem, tcp, udp, cpu_text, mem_text, containers, out_overrides, mode)


# -- placement options ---------------------------------------------------------------------------

@dataclass
class PlacementRules:
    member_of: list[Any] = field(default_factory=list)
    distinct_instance: bool = False
    strategies: list[tuple[str, str | None]] = field(default_factory=list)
    uses_task_group: bool = False


def compile_rules(constraints: list[Doc], strategies: list[Doc], td: Doc | None = None) -> PlacementRules:
    """Validate RunTask/CreateService placementConstraints/placementStrategy (+ the task definition's)."""
    all_constraints = list(constraints) + list((td or {}).get("placementConstraints") or [])
    if len(all_constraints) > MAX_CONSTRAINTS:
        raise InvalidParameterException(
            f"A task can have at most {MAX_CONSTRAINTS} placement constraints, counting those of its task "
            "definition.")
    if len(strategies) > MAX_STRATEGIES:
        raise InvalidParameterException(f"A task can have at most {MAX_STRATEGIES} placement strategies.")
    rules = PlacementRules()
    for c in all_constraints:
        kind = c.get("type")
        expr = c.get("expression")
        if kind == "distinctInstance":
            if expr:
                raise InvalidParameterException(
                    "A distinctInstance placement constraint cannot have an expression.")
            rules.distinct_instance = True
        elif kind == "memberOf":
            if not expr:
                raise InvalidParameterException("A memberOf placement constraint needs an expression.")
            try:
                q = compile_query(expr)
            except QuerySyntaxError as e:
                raise InvalidParameterException(str(e)) from None
            rules.member_of.append(q)
            rules.uses_task_group = rules.uses_task_group or q.uses_task_group
        else:
            raise InvalidParameterException("Placement constraint type must be memberOf or distinctInstance.")
    for s in strategies:
        kind = s.get("type")
        fld = s.get("field")
        if kind == "binpack":
            if (fld or "").lower() not in ("cpu", "memory"):
                raise InvalidParameterException("The binpack placement strategy field must be cpu or memory.")
            rules.strategies.append(("binpack", fld.lower()))  # type: ignore[union-attr]
        elif kind == "spread":
            if not fld:
                raise InvalidParameterException("The spread placement strategy needs a field.")
            if fld.lower() in ("instanceid", "host"):
                fld = "instanceId"
            elif not re.fullmatch(r"attribute:[A-Za-z0-9_./\\-]{1,128}", fld):
                raise InvalidParameterException(
                    "The spread placement strategy field must be instanceId, host or attribute:<name>.")
            rules.strategies.append(("spread", fld))
        elif kind == "random":
            rules.strategies.append(("random", None))
        else:
            raise InvalidParameterException("Placement strategy type must be random, spread or binpack.")
    return rules


# -- launching -------------------------------------------------------------------------------------

def is_external(row: ci.InstanceRow) -> bool:
    return "ecs.capability.external" in row.static().attributes


@dataclass
class LaunchSpec:
    """One RunTask/StartTask (or, later, a service scheduler) launch of a task definition."""

    td: Doc
    needs: Needs
    launch_type: str
    group: str
    started_by: str | None = None
    service_name: str | None = None
    capacity_provider: str | None = None
    enable_execute_command: bool = False
    tags: list[Doc] = field(default_factory=list)
    managed_tags: list[Doc] = field(default_factory=list)
    subnets: list[str] = field(default_factory=list)

    def request(self, rules: PlacementRules | None) -> placement.Request:
        req = self.td.get("requiresAttributes") or []
        return placement.Request(
            cpu=self.needs.cpu, memory=self.needs.memory, ports_tcp=tuple(self.needs.tcp),
            ports_udp=tuple(self.needs.udp), group=self.group,
            required_attributes=tuple((a["name"], a.get("value")) for a in req),
            member_of=tuple(rules.member_of) if rules else (),
            distinct_instance=bool(rules and rules.distinct_instance),
            strategies=tuple(rules.strategies) if rules else ())


def create_task(tx: Tx, ctx: Ctx, cluster: ClusterRow, spec: LaunchSpec, inst: ci.InstanceRow) -> TaskRow:
    """Insert a task placed on ``inst`` (resources already held and counted there by ``ci.hold``)
    and count it in the cluster."""
    task_id = ids.hex32()
    arn = arns.task(ctx.region, ctx.account_id, cluster.name, task_id)
    n = spec.needs
    containers: list[Doc] = []
    for c in n.containers:
        cd: Doc = {"containerArn": arns.container(ctx.region, ctx.account_id, cluster.name, task_id, ids.uuid()),
                   "taskArn": arn, "name": c["name"], "image": c["image"], "lastStatus": "PENDING",
                   "networkInterfaces": [], "cpu": str(c["cpu"])}
        if c["memory"] is not None:
            cd["memory"] = str(c["memory"])
        if c["memoryReservation"] is not None:
            cd["memoryReservation"] = str(c["memoryReservation"])
        if c["healthCheck"]:
            cd["healthStatus"] = "UNKNOWN"
        containers.append(cd)
    attrs = inst.static().attributes
    last = "PROVISIONING" if n.network_mode == "awsvpc" else "PENDING"
    doc: Doc = {
        "attachments": [], "attributes": [], "clusterArn": cluster.arn, "containerInstanceArn": inst.arn,
        "containers": containers, "cpu": n.cpu_text, "createdAt": ctx.now, "desiredStatus": "RUNNING",
        "enableExecuteCommand": spec.enable_execute_command, "group": spec.group, "healthStatus": "UNKNOWN",
        "lastStatus": last, "launchType": spec.launch_type, "memory": n.memory_text,
        "overrides": n.overrides, "taskArn": arn, "taskDefinitionArn": spec.td["taskDefinitionArn"],
        "version": 1,
    }
    if attrs.get("ecs.availability-zone"):
        doc["availabilityZone"] = attrs["ecs.availability-zone"]
    if attrs.get("ecs.cpu-architecture"):
        doc["attributes"] = [{"name": "ecs.cpu-architecture", "value": attrs["ecs.cpu-architecture"]}]
    if spec.started_by:
        doc["startedBy"] = spec.started_by
    if spec.capacity_provider:
        doc["capacityProviderName"] = spec.capacity_provider
    if n.network_mode == "awsvpc":
        details = [{"name": "subnetId", "value": spec.subnets[0]}] if spec.subnets else []
        doc["attachments"] = [{"id": ids.uuid(), "type": "ElasticNetworkInterface", "status": "PRECREATED",
                               "details": details}]
    held = orjson.dumps({"cpu": n.cpu, "memory": n.memory, "tcp": n.tcp, "udp": n.udp})
    raw = dumps(doc)
    tx.insert(_INSERT, arn=arn, cluster_arn=cluster.arn, container_instance_arn=inst.arn,
              family=spec.td["family"], service_name=spec.service_name, started_by=spec.started_by,
              group_name=spec.group, desired_status="RUNNING", last_status=last, launch_type=spec.launch_type,
              created_at=ctx.now, stopped_at=None, held=held, doc=raw)
    # The instance's counts moved with its hold (ci.hold), in the same statement as its resources.
    running, pending, _, _ = _contribution("RUNNING", last)
    bump_cluster(tx, cluster.arn, running_tasks=running, pending_tasks=pending)
    if spec.tags:
        put_tags(tx, arn, spec.tags, new=True)  # a new task ARN; _tags_for validated them
    for t in spec.managed_tags:
        tx.insert(_TAG_INS, resource_arn=arn, key=t["key"], value=t["value"])
    tx.notify("task", arn)
    tx.notify("task-desired", arn)
    _notify_service(tx, cluster.arn, doc)
    # The row as just inserted (no read back); its tags are the ones given.
    row = TaskRow((arn, cluster.arn, inst.arn, "RUNNING", last, held, raw))
    row._doc = doc
    return row


def _place_and_create(tx: Tx, ctx: Ctx, cluster: ClusterRow, spec: LaunchSpec, rows: list[ci.InstanceRow],
                      requests: list[placement.Request], need_task_groups: bool) -> tuple[list[Doc], list[Doc]]:
    groups = {r.group for r in requests
              if r.distinct_instance or any(k == "spread" for k, _ in r.strategies)}
    cands = placement.snapshot(tx, cluster.arn, rows, groups, need_task_groups)
    decisions = placement.decide(cands, requests)
    by_arn = {r.arn: r for r in rows}
    tasks: list[Doc] = []
    failures: list[Doc] = []
    # What get_tags would read back for a new task, in its order (by key).
    given_tags = sorted(({"key": t["key"], "value": t.get("value", "")} for t in (*spec.tags, *spec.managed_tags)),
                        key=lambda t: t["key"])
    for d in decisions:
        if isinstance(d, placement.Unplaced):
            f: Doc = {"reason": d.reason}
            if d.arn:
                f["arn"] = d.arn
            failures.append(f)
            continue
        inst = by_arn[d.instance_arn]
        if not ci.hold(tx, inst, spec.needs.cpu, spec.needs.memory, spec.needs.tcp, spec.needs.udp):
            # The instance changed after the snapshot: nothing of this call is kept.
            raise ServerException("The cluster changed while the task was being placed; retry the request.")
        row = create_task(tx, ctx, cluster, spec, inst)
        tasks.append({**row.doc, "tags": given_tags})
    return tasks, failures


def launch(tx: Tx, ctx: Ctx, cluster: ClusterRow, spec: LaunchSpec, rules: PlacementRules,
           count: int) -> tuple[list[Doc], list[Doc]]:
    """Place ``count`` copies of ``spec`` on the cluster's ACTIVE instances of its launch type.

    Returns (tasks as RunTask answers them, failures). Raises InvalidParameterException when
    the cluster has no instance that could take the launch type at all.
    """
    rows = [r for r in ci.active_in(tx, cluster.arn) if is_external(r) == (spec.launch_type == "EXTERNAL")]
    if not rows:
        raise InvalidParameterException("No Container Instances were found in your cluster.")
    return _place_and_create(tx, ctx, cluster, spec, rows, [spec.request(rules)] * count,
                             rules.uses_task_group)


def place_on(tx: Tx, ctx: Ctx, cluster: ClusterRow, spec: LaunchSpec, rules: PlacementRules,
             inst: ci.InstanceRow) -> tuple[list[Doc], list[Doc]]:
    """Place one copy of ``spec`` on ``inst`` or nowhere (the DAEMON scheduler's launch)."""
    return _place_and_create(tx, ctx, cluster, spec, [inst], [spec.request(rules)], rules.uses_task_group)


def _check_td(tx: Tx, ctx: Ctx, ref: str) -> Doc:
    td = task_definitions.lookup(tx, ctx, ref)
    if td is None:
        raise ClientException("TaskDefinition not found.")
    if td.get("status", "ACTIVE") != "ACTIVE":
        raise InvalidParameterException("TaskDefinition is inactive")
    return td


def _check_network(td: Doc, req: Doc) -> list[str]:
    if (td.get("networkMode") or "bridge") == "awsvpc":
        cfg = (req.get("networkConfiguration") or {}).get("awsvpcConfiguration")
        if not cfg:
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        subnets = cfg.get("subnets") or []
        if not subnets:
            raise InvalidParameterException("subnets can not be empty.")
        return list(subnets)
    if req.get("networkConfiguration"):
        raise InvalidParameterException(
            "Network Configuration is not valid for the given networkMode of this task definition.")
    return []


def _check_common(req: Doc) -> None:
    sb = req.get("startedBy")
    if sb is not None and not STARTED_BY_RE.match(sb):
        raise InvalidParameterException(
            "startedBy may contain up to 128 letters, numbers, hyphens, forward slashes and underscores.")
    group = req.get("group")
    if group is not None and not 1 <= len(group) <= 255:
        raise InvalidParameterException("group must be between 1 and 255 characters.")


def _tags_for(tx: Tx, req: Doc, td: Doc, cluster: ClusterRow) -> tuple[list[Doc], list[Doc]]:
    tags = list(req.get("tags") or [])
    if req.get("propagateTags") == "TASK_DEFINITION":
        have = {t["key"] for t in tags}
        tags += [t for t in get_tags(tx, td["taskDefinitionArn"]) if t["key"] not in have]
    validate_tags(tags)  # once for every task of the call, before anything is placed
    managed = [{"key": "aws:ecs:clusterName", "value": cluster.name}] if req.get("enableECSManagedTags") else []
    return tags, managed


def _launch_type(tx: Tx, ctx: Ctx, cluster: ClusterRow, req: Doc, td: Doc) -> tuple[str, str | None]:
    lt = req.get("launchType")
    strategy = req.get("capacityProviderStrategy") or []
    if lt and strategy:
        raise InvalidParameterException(
            "Specifying both a launchType and capacityProviderStrategy is not supported. Remove one and try "
            "again.")
    provider = None
    if not lt:
        cdoc = loads(cluster.doc_raw)
        if not strategy:
            strategy = cdoc.get("defaultCapacityProviderStrategy") or []
        if strategy:
            capacity_providers.check_strategy(strategy, cdoc.get("capacityProviders") or [])
            # The provider a single task goes to: the base, else the heaviest weight.
            chosen = max(strategy, key=lambda s: (s.get("base", 0), s.get("weight", 0)))
            provider = chosen["capacityProvider"]
            lt = "FARGATE" if provider in capacity_providers.BUILT_IN else "EC2"
        else:
            lt = "EC2"
    if lt in ("EC2", "EXTERNAL") and req.get("platformVersion"):
        raise InvalidParameterException(f"The platform version must be null when specifying an {lt} launch type.")
    if lt in ("FARGATE", "MANAGED_INSTANCES"):
        raise UnsupportedFeatureException(f"Dockyard does not run {lt} tasks yet; use the EC2 launch type.")
    compat = td.get("compatibilities")
    if compat and lt not in compat and not (lt == "EXTERNAL" and "EC2" in compat):
        raise InvalidParameterException(f"Task definition does not support launch_type {lt}.")
    return lt, provider


def _check_runnable(td: Doc, overrides: Doc | None) -> None:
    """Refuse, before anything is placed, what the agent could not run as asked."""
    problems = runtime_support.unsupported(td, overrides)
    if problems:
        raise ClientException("Dockyard cannot run this task definition on the EC2 launch type yet: "
                              + "; ".join(problems) + ".")




@ecs.op("RunTask", write=True)
def run_task(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    count = req.get("count", 1)
    if not 1 <= count <= MAX_RUN_COUNT:
        raise InvalidParameterException(f"count must be between 1 and {MAX_RUN_COUNT}.")
    token = req.get("clientToken")
    h = key = None
    if token is not None:
        idempotency.check_token(token, 64)
        h = idempotency.request_hash(req)
        key = idempotency.cluster_key(cluster.arn, token)
        prev = idempotency.seen(tx, ctx, "RunTask", key)
        if prev is not None:
            saved = orjson.loads(prev[1])
            if prev[0] != h:
                raise ConflictException(
                    "The clientToken was already used with different parameters.",
                    extra={"resourceIds": saved["taskArns"]})
            earlier = [get(tx, a) for a in saved["taskArns"]]
            return {"tasks": [render(tx, r, include_tags=True) for r in earlier if r is not None],
                    "failures": saved["failures"]}
    _check_common(req)
    td = _check_td(tx, ctx, req["taskDefinition"])
    subnets = _check_network(td, req)
    lt, provider = _launch_type(tx, ctx, cluster, req, td)
    _check_runnable(td, req.get("overrides"))
    rules = compile_rules(req.get("placementConstraints") or [], req.get("placementStrategy") or [], td)
    n = needs(td, req.get("overrides"))
    tags, managed = _tags_for(tx, req, td, cluster)
    spec = LaunchSpec(td=td, needs=n, launch_type=lt, group=req.get("group") or f"family:{td['family']}",
                      started_by=req.get("startedBy"), capacity_provider=provider,
                      enable_execute_command=bool(req.get("enableExecuteCommand")), tags=tags,
                      managed_tags=managed, subnets=subnets)
    tasks, failures = launch(tx, ctx, cluster, spec, rules, count)
    if key is not None and h is not None:
        idempotency.remember(tx, ctx, "RunTask", key, h,
                             orjson.dumps({"taskArns": [t["taskArn"] for t in tasks], "failures": failures}))
    return {"tasks": tasks, "failures": failures}


@ecs.op("StartTask", write=True)
def start_task(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    refs = req["containerInstances"]
    if not refs:
        raise InvalidParameterException("Container instances cannot be empty.")
    if len(refs) > MAX_START_INSTANCES:
        raise InvalidParameterException(
            f"containerInstances cannot have more than {MAX_START_INSTANCES} elements.")
    _check_common(req)
    td = _check_td(tx, ctx, req["taskDefinition"])
    subnets = _check_network(td, req)
    _check_runnable(td, req.get("overrides"))
    n = needs(td, req.get("overrides"))
    tags, managed = _tags_for(tx, req, td, cluster)
    tasks: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        inst = ci.find(tx, ctx, cluster, ref)
        if inst is None:
            failures.append({"arn": ci.failure_arn(ctx, cluster, ref), "reason": "MISSING"})
            continue
        if inst.status == "INACTIVE":
            failures.append({"arn": inst.arn, "reason": "INACTIVE"})
            continue
        lt = "EXTERNAL" if is_external(inst) else "EC2"
        compat = td.get("compatibilities")
        if compat and lt not in compat and not (lt == "EXTERNAL" and "EC2" in compat):
            raise InvalidParameterException(f"Task definition does not support launch_type {lt}.")
        spec = LaunchSpec(td=td, needs=n, launch_type=lt, group=req.get("group") or f"family:{td['family']}",
                          started_by=req.get("startedBy"),
                          enable_execute_command=bool(req.get("enableExecuteCommand")), tags=tags,
                          managed_tags=managed, subnets=subnets)
        got, failed = _place_and_create(tx, ctx, cluster, spec, [inst], [spec.request(None)], False)
        tasks += got
        failures += failed
    return {"tasks": tasks, "failures": failures}


# -- StopTask -----------------------------------------------------------------------------------------

@ecs.op("StopTask", write=True)
def stop_task(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    reason = req.get("reason")
    if reason is not None and len(reason) > 255:
        raise InvalidParameterException("reason can be at most 255 characters.")
    row = find(tx, ctx, cluster, req["task"])
    if row is None:
        raise InvalidParameterException("The referenced task was not found.")
    request_stop(tx, row, ctx.now, "UserInitiated", reason or "Task stopped by user")
    return {"task": render(tx, row)}


# -- DescribeTasks ---------------------------------------------------------------------------------

@ecs.op("DescribeTasks", write=False)
def describe_tasks(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"), active=False)
    refs = req["tasks"]
    require_items(refs, "Tasks", MAX_DESCRIBE)
    include = set(req.get("include") or [])
    if include - {"TAGS"}:
        raise InvalidParameterException("Invalid include value.")
    out: list[Doc] = []
    failures: list[Doc] = []
    seen: set[str] = set()
    for ref in refs:
        row = find(tx, ctx, cluster, ref)
        if row is None:
            arn = ref if arns.is_arn(ref) else arns.task(ctx.region, ctx.account_id, cluster.name, ref)
            failures.append({"arn": arn, "reason": "MISSING"})
        elif row.arn not in seen:
            seen.add(row.arn)
            out.append(render(tx, row, include_tags="TAGS" in include))
    return {"tasks": out, "failures": failures}


# -- ListTasks ----------------------------------------------------------------------------------------

_LIST_STMTS: dict[tuple[str, ...], Prepared] = {}
_FILTER_COLS = {"family": tkt.c.family, "instance": tkt.c.container_instance_arn,
                "service": tkt.c.service_name, "started_by": tkt.c.started_by, "launch": tkt.c.launch_type}


def _list_stmt(keys: tuple[str, ...]) -> Prepared:
    stmt = _LIST_STMTS.get(keys)
    if stmt is None:
        conds = [tkt.c.cluster_arn == bindparam("c"), tkt.c.desired_status == bindparam("ds"),
                 tkt.c.arn > bindparam("after")]
        conds += [_FILTER_COLS[k] == bindparam(f"f_{k}") for k in keys]
        stmt = _LIST_STMTS[keys] = prepare(select(tkt.c.arn).where(*conds).order_by(tkt.c.arn)
                                           .limit(bindparam("n")))
    return stmt


@ecs.op("ListTasks", write=False)
def list_tasks(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    n = max_results(req, 100)
    after = string_token(req)
    filters: dict[str, str] = {}
    if req.get("startedBy") is not None:
        others = [k for k in ("family", "containerInstance", "serviceName", "launchType", "daemonName")
                  if req.get(k) is not None]
        if others:
            raise InvalidParameterException(
                "startedBy must be the only filter when it is used; remove " + ", ".join(others) + ".")
        filters["started_by"] = req["startedBy"]
    if req.get("family") is not None:
        filters["family"] = req["family"]
    if req.get("containerInstance") is not None:
        arn = ci.instance_arn_for(ctx, cluster, req["containerInstance"])
        if arn is None:
            return {"taskArns": []}
        filters["instance"] = arn
    if req.get("serviceName") is not None:
        name = req["serviceName"]
        if arns.is_arn(name):
            name = name.rsplit("/", 1)[-1]
        if tx.one(_SERVICE, c=cluster.arn, n=name) is None:
            raise ServiceNotFoundException("Service not found.")
        filters["service"] = name
    if req.get("launchType") is not None:
        filters["launch"] = req["launchType"]
    desired = req.get("desiredStatus") or "RUNNING"
    if desired == "PENDING" or req.get("daemonName") is not None:
        return {"taskArns": []}  # ECS never sets desiredStatus PENDING; daemons do not exist yet
    keys = tuple(sorted(filters))
    params = {f"f_{k}": v for k, v in filters.items()}
    rows = tx.all(_list_stmt(keys), c=cluster.arn, ds=desired, after=after, n=n + 1, **params)
    page = [r[0] for r in rows[:n]]
    resp: Doc = {"taskArns": page}
    if len(rows) > n:
        resp["nextToken"] = encode_token(page[-1])
    return resp
