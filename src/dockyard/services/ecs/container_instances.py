"""Container instances: Register/Deregister/Describe/List/UpdateContainerInstancesState.

An instance is one row of ``container_instances``: the wire document
(registeredResources, versionInfo, attributes, ...) plus the columns that
change as tasks come and go: ``remaining_cpu``/``remaining_memory``,
``used_ports`` (host ports held by tasks; the reserved ports stay in the
registered PORTS/PORTS_UDP), ``running_tasks``/``pending_tasks`` and
``version``. The columns are moved in the transaction that moves the task, so
``remainingResources`` is always registered minus what placed tasks hold.

Helpers other modules call:
    set_agent_connected(tx, arn, connected)   the agent channel's hook
    hold(...) / release(...)                  resource bookkeeping for tasks
    bump_task_counts(...)                     runningTasksCount / pendingTasksCount
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, null, select, update

from dockyard.api.errors import (
    AttributeLimitExceededException,
    ClientException,
    InvalidParameterException,
)
from dockyard.scheduler.query import InstanceFacts, QuerySyntaxError, compile_query
from dockyard.services.context import Ctx
from dockyard.services.ecs import quotas
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
    require_cluster,
    require_items,
    string_token,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns, ids
from dockyard.state.schema import container_instances as cit
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import COMMIT_HOOKS, ROLLBACK_HOOKS, Tx, prepare

# -- rows ----------------------------------------------------------------------

_COLS = (cit.c.arn, cit.c.cluster_arn, cit.c.instance_id, cit.c.ec2_instance_id, cit.c.status,
         cit.c.agent_connected, cit.c.registered_at, cit.c.version, cit.c.remaining_cpu,
         cit.c.remaining_memory, cit.c.used_ports, cit.c.running_tasks, cit.c.pending_tasks, cit.c.doc)


class InstanceRow:
    __slots__ = (
        "_doc",
        "agent_connected",
        "arn",
        "cluster_arn",
        "doc_raw",
        "ec2_instance_id",
        "facts_",
        "instance_id",
        "pending_tasks",
        "registered_at",
        "remaining_cpu",
        "remaining_memory",
        "running_tasks",
        "status",
        "used_ports_raw",
        "version",
    )

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.arn, self.cluster_arn, self.instance_id, self.ec2_instance_id, self.status,
         self.agent_connected, self.registered_at, self.version, self.remaining_cpu,
         self.remaining_memory, self.used_ports_raw, self.running_tasks, self.pending_tasks,
         self.doc_raw) = row
        self.agent_connected = bool(self.agent_connected)
        self._doc: Doc | None = None
        self.facts_: StaticFacts | None = None

    @property
    def doc(self) -> Doc:
        if self._doc is None:
            self._doc = loads(self.doc_raw)
        return self._doc

    @property
    def used_ports(self) -> dict[str, list[int]]:
        return orjson.loads(self.used_ports_raw)  # type: ignore[no-any-return]

    def has_static(self) -> bool:
        hit = _STATIC.get(self.arn)
        return hit is not None and hit[0] == self.version

    def static(self) -> StaticFacts:
        """The parts of the document placement reads, parsed once per row version (read-only).

        Every change to the document bumps ``version``, so facts cached for a version stay true.
        """
        if self.facts_ is not None:
            return self.facts_
        hit = _STATIC.get(self.arn)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        assert self.doc_raw is not None, "row read without its document"
        doc = loads(self.doc_raw)
        _, _, tcp, udp = registered(doc)
        facts = StaticFacts(attribute_map(doc), (doc.get("versionInfo") or {}).get("agentVersion"),
                            frozenset(tcp), frozenset(udp))
        if len(_STATIC) > 100_000:
            _STATIC.clear()
        _STATIC[self.arn] = (self.version, facts)
        return facts


class StaticFacts:
    """Attributes, agent version and reserved ports of an instance: they change only with its document."""

    __slots__ = ("agent_version", "attributes", "reserved_tcp", "reserved_udp")

    def __init__(self, attributes: dict[str, str | None], agent_version: str | None,
                 reserved_tcp: frozenset[int], reserved_udp: frozenset[int]) -> None:
        self.attributes = attributes
        self.agent_version = agent_version
        self.reserved_tcp = reserved_tcp
        self.reserved_udp = reserved_udp


# Parsed document facts by instance ARN and row version: RunTask looks at every candidate,
# and reading and parsing all their documents was most of its cost.
_STATIC: dict[str, tuple[int, StaticFacts]] = {}
# A task's hold moves an instance's resources and version, not its document: once the write is
# committed, the new version has the same facts. Until then they wait here (the write may still
# roll back, and its version be handed out again for another document); the commit hook moves
# them over. Without this every RunTask re-read and re-parsed the document it had just used.
_HELD: dict[str, tuple[int, StaticFacts]] = {}
HELD_TOPIC = "container-instance-held"


def _promote_held(events: list[tuple[str, str]]) -> None:
    for topic, arn in events:
        if topic == HELD_TOPIC:
            held = _HELD.pop(arn, None)
            if held is not None and len(_STATIC) <= 100_000:
                _STATIC[arn] = held


ROLLBACK_HOOKS.append(_STATIC.clear)
ROLLBACK_HOOKS.append(_HELD.clear)
COMMIT_HOOKS.append(_promote_held)


_INSERT = prepare(insert(cit))
_BY_ARN = prepare(select(*_COLS).where(cit.c.arn == bindparam("a")))
_BY_EC2 = prepare(select(*_COLS).where(cit.c.cluster_arn == bindparam("c"),
                                       cit.c.ec2_instance_id == bindparam("e"),
                                       cit.c.status != "INACTIVE"))
# The same rows without their documents (NULL in the doc position).
_BY_STATUS_LEAN = prepare(select(*_COLS[:-1], null().label("doc"))
                          .where(cit.c.cluster_arn == bindparam("c"), cit.c.status == bindparam("s"))
                          .order_by(cit.c.arn))
_DOC_OF = prepare(select(cit.c.doc).where(cit.c.arn == bindparam("a")))
_SET_DOC = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                   .values(doc=bindparam("d"), version=cit.c.version + 1))
_SET_STATUS = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                      .values(status=bindparam("s"), agent_connected=bindparam("ac"), doc=bindparam("d"),
                              version=cit.c.version + 1))
_SET_CONNECTED = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                         .values(agent_connected=bindparam("ac"), doc=bindparam("d"),
                                 version=cit.c.version + 1))
_REREGISTER = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                      .values(ec2_instance_id=bindparam("e"), remaining_cpu=bindparam("rc"),
                              remaining_memory=bindparam("rm"), doc=bindparam("d"),
                              version=cit.c.version + 1))
# Optimistic: the placement was decided against ``version``; refuse if anything moved since,
# and never let remaining resources go below zero.
_HOLD = prepare(update(cit).where(cit.c.arn == bindparam("a"), cit.c.version == bindparam("v"),
                                  cit.c.remaining_cpu >= bindparam("c"),
                                  cit.c.remaining_memory >= bindparam("m"))
                .values(remaining_cpu=cit.c.remaining_cpu - bindparam("c"),
                        remaining_memory=cit.c.remaining_memory - bindparam("m"),
                        used_ports=bindparam("p"), version=cit.c.version + 1,
                        # a new task counts as running (desired) and pending on its instance
                        running_tasks=cit.c.running_tasks + 1, pending_tasks=cit.c.pending_tasks + 1))
_RELEASE = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                   .values(remaining_cpu=cit.c.remaining_cpu + bindparam("c"),
                           remaining_memory=cit.c.remaining_memory + bindparam("m"),
                           used_ports=bindparam("p"), version=cit.c.version + 1))
_PORTS_OF = prepare(select(cit.c.used_ports).where(cit.c.arn == bindparam("a")))
_COUNTS = prepare(update(cit).where(cit.c.arn == bindparam("a"))
                  .values(running_tasks=cit.c.running_tasks + bindparam("r"),
                          pending_tasks=cit.c.pending_tasks + bindparam("p")))
_LIST_ALL = prepare(select(*_COLS).where(cit.c.cluster_arn == bindparam("c"), cit.c.status != "INACTIVE",
                                         cit.c.arn > bindparam("after"))
                    .order_by(cit.c.arn).limit(bindparam("n")))
_LIST_STATUS = prepare(select(*_COLS).where(cit.c.cluster_arn == bindparam("c"),
                                            cit.c.status == bindparam("s"), cit.c.arn > bindparam("after"))
                       .order_by(cit.c.arn).limit(bindparam("n")))
# Tasks still on an instance (anything not yet STOPPED holds its place there).
_LIVE_TASK = prepare(select(tkt.c.arn).where(tkt.c.container_instance_arn == bindparam("a"),
                                             tkt.c.last_status != "STOPPED").limit(1))
_GROUPS_ON = prepare(select(tkt.c.group_name).distinct()
                     .where(tkt.c.container_instance_arn == bindparam("a"),
                            tkt.c.desired_status == "RUNNING"))

EMPTY_PORTS = orjson.dumps({"tcp": [], "udp": []})
RESERVED_PREFIXES = ("ecs.", "com.amazonaws.ecs.")
_ID_RE = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# -- attribute rules (shared with attributes.py) ---------------------------------

ATTR_NAME_RE = re.compile(r"^[A-Za-z0-9_./\\-]{1,128}$")
ATTR_VALUE_RE = re.compile(r"^[A-Za-z0-9_.@/\\: -]{1,128}$")


def check_attribute(a: Doc) -> None:
    name = a.get("name") or ""
    if not ATTR_NAME_RE.match(name):
        raise InvalidParameterException(
            f"Attribute name '{name}' is invalid: use 1-128 letters, numbers, hyphens, underscores, "
            "periods, forward slashes or back slashes.")
    value = a.get("value")
    if value is not None and (not ATTR_VALUE_RE.match(value) or value != value.strip()):
        raise InvalidParameterException(
            f"Attribute value '{value}' of '{name}' is invalid: use 1-128 letters, numbers, hyphens, "
            "underscores, periods, at signs, forward slashes, back slashes, colons or spaces, not "
            "starting or ending with a space.")


def is_custom(name: str) -> bool:
    return not name.startswith(RESERVED_PREFIXES)


def check_custom_limit(attributes: list[Doc]) -> None:
    limit = quotas.limit("custom_attributes_per_resource")
    if sum(1 for a in attributes if is_custom(a["name"])) > limit:
        raise AttributeLimitExceededException(quotas.message("custom_attributes_per_resource"))


def attribute_map(doc: Doc) -> dict[str, str | None]:
    return {a["name"]: a.get("value") for a in doc.get("attributes", [])}


# -- references ------------------------------------------------------------------

def instance_arn_for(ctx: Ctx, cluster: ClusterRow, ref: str) -> str | None:
    """The ARN an instance reference (ID or ARN) names in ``cluster``; None if it cannot be one."""
    return cluster_scoped_arn(ctx, cluster, ref, "container-instance", _ID_RE, arns.container_instance)


def failure_arn(ctx: Ctx, cluster: ClusterRow, ref: str) -> str:
    if arns.is_arn(ref):
        return ref
    return arns.container_instance(ctx.region, ctx.account_id, cluster.name, ref)


def get(tx: Tx, arn: str) -> InstanceRow | None:
    row = tx.one(_BY_ARN, a=arn)
    return InstanceRow(row) if row else None


def find(tx: Tx, ctx: Ctx, cluster: ClusterRow, ref: str) -> InstanceRow | None:
    arn = instance_arn_for(ctx, cluster, ref)
    if arn is None:
        return None
    r = get(tx, arn)
    if r is None or r.cluster_arn != cluster.arn:
        return None
    return r


def active_in(tx: Tx, cluster_arn: str) -> list[InstanceRow]:
    """ACTIVE instances for placement: documents are read only for rows whose version is not cached."""
    rows = [InstanceRow(r) for r in tx.all(_BY_STATUS_LEAN, c=cluster_arn, s="ACTIVE")]
    for r in rows:
        if not r.has_static():
            got = tx.one(_DOC_OF, a=r.arn)
            r.doc_raw = got[0] if got else b"{}"
    return rows


def task_groups_on(tx: Tx, arn: str) -> frozenset[str]:
    return frozenset(g for (g,) in tx.all(_GROUPS_ON, a=arn) if g)


# -- resources -------------------------------------------------------------------

def _resource(name: str, type_: str, value: Any) -> Doc:
    r: Doc = {"name": name, "type": type_, "doubleValue": 0.0, "longValue": 0, "integerValue": 0}
    if type_ == "STRINGSET":
        r["stringSetValue"] = list(value)
    elif type_ == "DOUBLE":
        r["doubleValue"] = float(value)
    elif type_ == "LONG":
        r["longValue"] = int(value)
    else:
        r["integerValue"] = int(value)
    return r


def _port_list(values: list[Any], what: str) -> list[str]:
    out: list[str] = []
    for v in values:
        s = str(v).strip()
        if not s.isdigit() or not 0 < int(s) <= 65535:
            raise InvalidParameterException(f"{what} must list port numbers between 1 and 65535, not '{v}'.")
        if s not in out:
            out.append(s)
    if len(out) > 100:
        raise InvalidParameterException(f"{what}: a container instance can reserve at most 100 ports.")
    return out


def _numeric(r: Doc) -> float:
    for k in ("integerValue", "longValue", "doubleValue"):
        if r.get(k):
            return float(r[k])
    return 0.0


def normalise_resources(total: list[Doc]) -> list[Doc]:
    """totalResources as ECS answers them: every value field present, CPU/MEMORY/PORTS/PORTS_UDP always."""
    out: dict[str, Doc] = {}
    for r in total:
        name = r.get("name")
        if not name:
            raise InvalidParameterException("Resource name is required.")
        type_ = (r.get("type") or "").upper()
        if name in ("CPU", "MEMORY"):
            if type_ not in ("", "INTEGER"):
                raise InvalidParameterException(f"Resource {name} must be of type INTEGER.")
            v = _numeric(r)
            if v < 0:
                raise InvalidParameterException(f"Resource {name} cannot be negative.")
            out[name] = _resource(name, "INTEGER", int(v))
        elif name in ("PORTS", "PORTS_UDP"):
            if type_ not in ("", "STRINGSET"):
                raise InvalidParameterException(f"Resource {name} must be of type STRINGSET.")
            out[name] = _resource(name, "STRINGSET", _port_list(r.get("stringSetValue") or [], name))
        else:
            if type_ not in ("INTEGER", "LONG", "DOUBLE", "STRINGSET"):
                raise InvalidParameterException(
                    f"Resource {name} must have type INTEGER, LONG, DOUBLE or STRINGSET.")
            value = r.get("stringSetValue") or [] if type_ == "STRINGSET" else _numeric(r)
            out[name] = _resource(name, type_, value)
    for name, type_, default in (("CPU", "INTEGER", 0), ("MEMORY", "INTEGER", 0),
                                 ("PORTS", "STRINGSET", []), ("PORTS_UDP", "STRINGSET", [])):
        out.setdefault(name, _resource(name, type_, default))
    order = ["CPU", "MEMORY", "PORTS", "PORTS_UDP"]
    return [out[n] for n in order] + [out[n] for n in out if n not in order]


def registered(doc: Doc) -> tuple[int, int, set[int], set[int]]:
    """(cpu, memory, reserved tcp ports, reserved udp ports) from registeredResources."""
    cpu = mem = 0
    tcp: set[int] = set()
    udp: set[int] = set()
    for r in doc.get("registeredResources", []):
        if r["name"] == "CPU":
            cpu = int(r.get("integerValue", 0))
        elif r["name"] == "MEMORY":
            mem = int(r.get("integerValue", 0))
        elif r["name"] == "PORTS":
            tcp = {int(p) for p in r.get("stringSetValue", [])}
        elif r["name"] == "PORTS_UDP":
            udp = {int(p) for p in r.get("stringSetValue", [])}
    return cpu, mem, tcp, udp


def remaining_resources(row: InstanceRow) -> list[Doc]:
    used = row.used_ports
    out: list[Doc] = []
    for r in row.doc.get("registeredResources", []):
        name = r["name"]
        if name == "CPU":
            out.append(_resource("CPU", "INTEGER", row.remaining_cpu))
        elif name == "MEMORY":
            out.append(_resource("MEMORY", "INTEGER", row.remaining_memory))
        elif name in ("PORTS", "PORTS_UDP"):
            held = used["tcp" if name == "PORTS" else "udp"]
            ports = list(r.get("stringSetValue", [])) + [str(p) for p in held
                                                         if str(p) not in r.get("stringSetValue", [])]
            out.append(_resource(name, "STRINGSET", ports))
        else:
            out.append(dict(r))
    return out


def hold(tx: Tx, row: InstanceRow, cpu: int, memory: int, tcp: list[int], udp: list[int]) -> bool:
    """Take resources for a new task and count it on the instance (running and pending), if the
    instance is still as the placement saw it (``row.version``)."""
    used = row.used_ports
    used["tcp"] = sorted(set(used["tcp"]) | set(tcp))
    used["udp"] = sorted(set(used["udp"]) | set(udp))
    facts = row.static()
    ok = tx.run(_HOLD, a=row.arn, v=row.version, c=cpu, m=memory, p=orjson.dumps(used)) == 1
    if ok:
        row.version += 1
        # Resources moved, the document did not: this row keeps its facts, and the shared cache
        # takes them for the new version once this write is committed (_promote_held).
        row.facts_ = facts
        _HELD[row.arn] = (row.version, facts)
        tx.notify(HELD_TOPIC, row.arn)
        row.remaining_cpu -= cpu
        row.remaining_memory -= memory
        row.used_ports_raw = orjson.dumps(used)
    return ok


def release(tx: Tx, arn: str, cpu: int, memory: int, tcp: list[int], udp: list[int]) -> None:
    raw = tx.one(_PORTS_OF, a=arn)
    if raw is None:
        return
    used = orjson.loads(raw[0])
    used["tcp"] = sorted(set(used["tcp"]) - set(tcp))
    used["udp"] = sorted(set(used["udp"]) - set(udp))
    tx.run(_RELEASE, a=arn, c=cpu, m=memory, p=orjson.dumps(used))


def bump_task_counts(tx: Tx, arn: str, running: int = 0, pending: int = 0) -> None:
    if running or pending:
        tx.run(_COUNTS, a=arn, r=running, p=pending)


# -- rendering -------------------------------------------------------------------

_INCLUDE = {"TAGS", "CONTAINER_INSTANCE_HEALTH"}


def render(tx: Tx, row: InstanceRow, include: set[str] | frozenset[str] = frozenset()) -> Doc:
    doc = dict(row.doc)
    doc["status"] = row.status
    doc["agentConnected"] = row.agent_connected
    doc["version"] = row.version
    doc["runningTasksCount"] = row.running_tasks
    doc["pendingTasksCount"] = row.pending_tasks
    doc["remainingResources"] = remaining_resources(row)
    health = doc.pop("healthStatus", None)
    if "CONTAINER_INSTANCE_HEALTH" in include:
        doc["healthStatus"] = health or {"overallStatus": "INSUFFICIENT_DATA", "details": []}
    if "TAGS" in include:
        doc["tags"] = get_tags(tx, row.arn)
    return doc


def facts(row: InstanceRow, task_groups: frozenset[str] = frozenset()) -> InstanceFacts:
    """What the cluster query language sees of an instance."""
    static = row.static()
    return InstanceFacts(
        agent_connected=row.agent_connected,
        agent_version=static.agent_version,
        attributes=static.attributes,
        ec2_instance_id=row.ec2_instance_id,
        registered_at=row.registered_at,
        running_tasks_count=row.running_tasks,
        task_groups=task_groups,
    )


def _health(connected: bool, now: float) -> Doc:
    state = "OK" if connected else "IMPAIRED"
    return {"overallStatus": state,
            "details": [{"type": "AGENT_CONNECTIVITY", "status": state, "lastUpdated": now,
                         "lastStatusChange": now}]}


# -- the agent channel's hook ------------------------------------------------------

def set_agent_connected(tx: Tx, instance_arn: str, connected: bool, now: float | None = None) -> bool:
    """Record that the instance's agent session came up (True) or went away (False).

    Called by the agent channel; only connected instances take new tasks.
    Returns False when there is no such instance (or it is deregistered).
    """
    row = get(tx, instance_arn)
    if row is None or row.status == "INACTIVE":
        return False
    if row.agent_connected == connected:
        return True
    when = time.time() if now is None else now
    doc = row.doc
    doc["healthStatus"] = _health(connected, when)
    tx.run(_SET_CONNECTED, a=row.arn, ac=connected, d=dumps(doc))
    tx.notify("container-instance", row.arn)
    return True


# -- RegisterContainerInstance -------------------------------------------------------

def _identity(document: str | None) -> Doc:
    if not document:
        return {}
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise InvalidParameterException("instanceIdentityDocument is not a valid JSON document.") from None
    return doc if isinstance(doc, dict) else {}


def _merge_attributes(current: list[Doc], given: list[Doc]) -> list[Doc]:
    out = {a["name"]: a.get("value") for a in current}
    for a in given:
        out[a["name"]] = a.get("value")
    return [{"name": k} if v is None else {"name": k, "value": v} for k, v in out.items()]


@ecs.op("RegisterContainerInstance", write=True)
def register_container_instance(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    resources = normalise_resources(req.get("totalResources") or [])
    given_attrs: list[Doc] = []
    for a in req.get("attributes") or []:
        check_attribute(a)
        given_attrs.append({"name": a["name"]} if a.get("value") is None
                           else {"name": a["name"], "value": a["value"]})
    iid = _identity(req.get("instanceIdentityDocument"))
    built_in = [{"name": n, "value": iid[k]} for n, k in (("ecs.availability-zone", "availabilityZone"),
                                                          ("ecs.instance-type", "instanceType"),
                                                          ("ecs.ami-id", "imageId")) if iid.get(k)]
    sent = {a["name"] for a in given_attrs}
    attrs = _merge_attributes([a for a in built_in if a["name"] not in sent], given_attrs)
    ec2_id = iid.get("instanceId") or None
    tags = req.get("tags") or []

    existing: InstanceRow | None = None
    ref = req.get("containerInstanceArn")
    if ref:
        existing = find(tx, ctx, cluster, ref)
        if existing is None:
            raise ClientException("Container instance not found in the cluster.")
        if existing.status == "INACTIVE":
            raise ClientException("The container instance has been deregistered and cannot be registered "
                                  "again; register without containerInstanceArn to get a new one.")
    elif ec2_id:
        row = tx.one(_BY_EC2, c=cluster.arn, e=ec2_id)
        existing = InstanceRow(row) if row else None

    if existing is not None:
        return _reregister(tx, ctx, existing, resources, attrs, ec2_id, req, tags)

    check_custom_limit(attrs)
    quotas.check(tx, ctx, "container_instances_per_cluster", cluster.registered_instances)
    instance_id = ids.hex32()
    arn = arns.container_instance(ctx.region, ctx.account_id, cluster.name, instance_id)
    doc: Doc = {"containerInstanceArn": arn, "status": "ACTIVE",
                "versionInfo": req.get("versionInfo") or {}, "registeredResources": resources,
                "attributes": attrs, "registeredAt": ctx.now, "attachments": []}
    if ec2_id:
        doc["ec2InstanceId"] = ec2_id
    doc["healthStatus"] = _health(False, ctx.now)
    cpu, mem, _, _ = registered(doc)
    tx.insert(_INSERT, arn=arn, cluster_arn=cluster.arn, instance_id=instance_id, ec2_instance_id=ec2_id,
              status="ACTIVE", agent_connected=False, registered_at=ctx.now, version=1,
              remaining_cpu=cpu, remaining_memory=mem, used_ports=EMPTY_PORTS, running_tasks=0,
              pending_tasks=0, doc=dumps(doc))
    bump_cluster(tx, cluster.arn, registered_instances=1)
    if tags:
        put_tags(tx, arn, tags)
    tx.notify("container-instance", arn)
    created = get(tx, arn)
    assert created is not None
    return {"containerInstance": render(tx, created)}


def _reregister(tx: Tx, ctx: Ctx, row: InstanceRow, resources: list[Doc], attrs: list[Doc],
                ec2_id: str | None, req: Doc, tags: list[Doc]) -> Doc:
    """The agent restarted: new totals and version, custom attributes kept (it resends them only once)."""
    doc = row.doc
    old_type = attribute_map(doc).get("ecs.instance-type")
    new_type = {a["name"]: a.get("value") for a in attrs}.get("ecs.instance-type")
    if old_type and new_type and old_type != new_type:
        raise ClientException("Container instance type changes are not supported.")
    old_cpu, old_mem, _, _ = registered(doc)
    held_cpu, held_mem = old_cpu - row.remaining_cpu, old_mem - row.remaining_memory
    doc["registeredResources"] = resources
    if req.get("versionInfo"):
        doc["versionInfo"] = req["versionInfo"]
    doc["attributes"] = _merge_attributes(doc.get("attributes", []), attrs)
    check_custom_limit(doc["attributes"])
    ec2 = ec2_id or row.ec2_instance_id
    if ec2:
        doc["ec2InstanceId"] = ec2
    cpu, mem, _, _ = registered(doc)
    tx.run(_REREGISTER, a=row.arn, e=ec2, rc=cpu - held_cpu, rm=mem - held_mem, d=dumps(doc))
    if tags:
        put_tags(tx, row.arn, tags)
    tx.notify("container-instance", row.arn)
    fresh = get(tx, row.arn)
    assert fresh is not None
    return {"containerInstance": render(tx, fresh)}


# -- DeregisterContainerInstance --------------------------------------------------------

def require(tx: Tx, ctx: Ctx, cluster: ClusterRow, ref: str) -> InstanceRow:
    row = find(tx, ctx, cluster, ref)
    if row is None:
        raise InvalidParameterException("The referenced container instance was not found.")
    return row


@ecs.op("DeregisterContainerInstance", write=True)
def deregister_container_instance(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    row = require(tx, ctx, cluster, req["containerInstance"])
    if row.status == "INACTIVE":
        return {"containerInstance": render(tx, row)}
    if tx.one(_LIVE_TASK, a=row.arn) is not None:
        if not req.get("force"):
            raise InvalidParameterException("Found running tasks on the instance.")
        from dockyard.services.ecs import tasks  # tasks imports this module
        tasks.orphan_tasks_on(tx, ctx, row.arn)
    doc = row.doc
    doc["status"] = "INACTIVE"
    doc["healthStatus"] = _health(False, ctx.now)
    tx.run(_SET_STATUS, a=row.arn, s="INACTIVE", ac=False, d=dumps(doc))
    bump_cluster(tx, cluster.arn, registered_instances=-1)
    tx.notify("container-instance", row.arn)
    fresh = get(tx, row.arn)
    assert fresh is not None
    return {"containerInstance": render(tx, fresh)}


# -- DescribeContainerInstances ------------------------------------------------------------

@ecs.op("DescribeContainerInstances", write=False)
def describe_container_instances(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"), active=False)
    refs = req["containerInstances"]
    require_items(refs, "containerInstances", 100)
    include = set(req.get("include") or [])
    if include - _INCLUDE:
        raise InvalidParameterException("Invalid include value.")
    out: list[Doc] = []
    failures: list[Doc] = []
    seen: set[str] = set()
    for ref in refs:
        row = find(tx, ctx, cluster, ref)
        if row is None:
            failures.append({"arn": failure_arn(ctx, cluster, ref), "reason": "MISSING"})
        elif row.arn not in seen:
            seen.add(row.arn)
            out.append(render(tx, row, include))
    return {"containerInstances": out, "failures": failures}


# -- ListContainerInstances -----------------------------------------------------------------

@ecs.op("ListContainerInstances", write=False)
def list_container_instances(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    n = max_results(req, 100)
    after = string_token(req)
    status = req.get("status")
    query = None
    if req.get("filter"):
        try:
            query = compile_query(req["filter"])
        except QuerySyntaxError as e:
            raise InvalidParameterException(str(e)) from None

    def batch(start: str, size: int) -> list[InstanceRow]:
        if status:
            rows = tx.all(_LIST_STATUS, c=cluster.arn, s=status, after=start, n=size)
        else:
            rows = tx.all(_LIST_ALL, c=cluster.arn, after=start, n=size)
        return [InstanceRow(r) for r in rows]

    page: list[str] = []
    more = False
    cursor = after
    size = max(n + 1, 200) if query is not None else n + 1
    while True:
        rows = batch(cursor, size)
        for r in rows:
            if query is not None:
                groups = task_groups_on(tx, r.arn) if query.uses_task_group else frozenset()
                if not query(facts(r, groups)):
                    continue
            if len(page) == n:
                more = True
                break
            page.append(r.arn)
        if more or len(rows) < size:
            break
        cursor = rows[-1].arn
    resp: Doc = {"containerInstanceArns": page}
    if more:
        resp["nextToken"] = encode_token(page[-1])
    return resp


# -- UpdateContainerInstancesState ----------------------------------------------------------

@ecs.op("UpdateContainerInstancesState", write=True)
def update_container_instances_state(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    status = req["status"]
    if status not in ("ACTIVE", "DRAINING"):
        raise InvalidParameterException("Container instance status must be ACTIVE or DRAINING.")
    refs = req["containerInstances"]
    require_items(refs, "containerInstances", 10)
    out: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        row = find(tx, ctx, cluster, ref)
        if row is None:
            failures.append({"arn": failure_arn(ctx, cluster, ref), "reason": "MISSING"})
            continue
        if row.status == status:
            out.append(render(tx, row))
            continue
        if row.status not in ("ACTIVE", "DRAINING"):
            failures.append({"arn": row.arn, "reason": row.status,
                             "detail": f"A container instance in status {row.status} cannot be set to "
                                       f"{status}; only ACTIVE and DRAINING instances change state."})
            continue
        doc = row.doc
        doc["status"] = status
        tx.run(_SET_STATUS, a=row.arn, s=status, ac=row.agent_connected, d=dumps(doc))
        tx.notify("container-instance", row.arn)
        fresh = get(tx, row.arn)
        assert fresh is not None
        out.append(render(tx, fresh))
    return {"containerInstances": out, "failures": failures}


# -- used by attributes.py ----------------------------------------------------------------

def write_attributes(tx: Tx, row: InstanceRow, attributes: list[Doc]) -> None:
    doc = row.doc
    doc["attributes"] = attributes
    tx.run(_SET_DOC, a=row.arn, d=dumps(doc))
    row.version += 1
    tx.notify("container-instance", row.arn)


def cluster_of(row: InstanceRow) -> str:
    return cluster_name_from_arn(row.cluster_arn)
