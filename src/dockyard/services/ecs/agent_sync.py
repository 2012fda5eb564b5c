"""What the agent channel does to the store: agents' reports in, desired task payloads out.

Plain functions over a Tx, like the rest of ``services/ecs``; the websocket side is
``api/agent_channel.py`` and the wire is described in ``agent/protocol.py``.

    apply_reports(tx, instance_arn, states, now)    TaskState entries -> tasks.transition()
    desired_for_instance(tx, instance_arn)           every task on the instance not yet STOPPED
    payload(tx, task)                                one TaskPayload
    mark_all_disconnected(tx, now)                   server start-up: nobody is connected yet

Reports are level-triggered (each is the task's whole state) and may arrive twice
or late, so applying one never moves a task backwards and a report equal to what
the store holds changes nothing (no write, no version bump).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, select

from dockyard.agent.protocol import TaskPayload
from dockyard.services.ecs import container_instances as ci
from dockyard.services.ecs import tasks
from dockyard.services.ecs.common import Doc, loads
from dockyard.state.schema import container_instances as cit
from dockyard.state.schema import task_definitions as tdt
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Tx, prepare

log = logging.getLogger(__name__)

# The order of a task's lastStatus values (ECS's lifecycle); a report never moves a task back.
RANK = {"PROVISIONING": 0, "PENDING": 1, "ACTIVATING": 2, "RUNNING": 3, "DEACTIVATING": 4, "STOPPING": 5,
        "DEPROVISIONING": 6, "STOPPED": 7}
REPORTABLE = frozenset({"PENDING", "RUNNING", "STOPPING", "STOPPED"})
CONTAINER_STATUSES = frozenset({"PENDING", "RUNNING", "STOPPED"})
HEALTH = frozenset({"HEALTHY", "UNHEALTHY", "UNKNOWN"})
MAX_REASON = 1024  # Container.reason and stoppedReason as ECS keeps them
TASK_TIMES = ("pullStartedAt", "pullStoppedAt", "startedAt", "executionStoppedAt")

# Same columns, same order as tasks.TaskRow expects.
_TASK_COLS = (tkt.c.arn, tkt.c.cluster_arn, tkt.c.container_instance_arn, tkt.c.desired_status,
              tkt.c.last_status, tkt.c.held, tkt.c.doc)
_LIVE_ON = prepare(select(*_TASK_COLS).where(tkt.c.container_instance_arn == bindparam("a"),
                                             tkt.c.last_status != "STOPPED").order_by(tkt.c.arn))
_TD_DOC = prepare(select(tdt.c.doc).where(tdt.c.arn == bindparam("a")))
_CONNECTED = prepare(select(cit.c.arn).where(cit.c.agent_connected == True))  # noqa: E712  (SQL, not Python)

# Task definition revisions never change their content (only their status), so a payload's
# taskDefinition is read once per ARN.
_TD_CACHE: dict[str, Doc] = {}
_TD_CACHE_MAX = 4096


# -- reports in ------------------------------------------------------------------------------

def _text(value: Any, limit: int = MAX_REASON) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:limit]


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _bindings(value: Any) -> list[Doc] | None:
    if not isinstance(value, list):
        return None
    out: list[Doc] = []
    for b in value:
        if not isinstance(b, dict):
            continue
        try:
            nb: Doc = {"bindIP": str(b.get("bindIP") or "0.0.0.0"), "containerPort": int(b["containerPort"]),
                       "hostPort": int(b["hostPort"]), "protocol": "udp" if b.get("protocol") == "udp" else "tcp"}
        except (KeyError, TypeError, ValueError):
            continue
        out.append(nb)
    return out


def _merge_container(current: Doc, report: Doc) -> bool:
    """Merge one ContainerState into the task document's container; True if anything changed."""
    changed = False

    def put(key: str, value: Any) -> None:
        nonlocal changed
        if value is not None and current.get(key) != value:
            current[key] = value
            changed = True

    status = report.get("lastStatus")
    # A container never goes back either (STOPPED stays STOPPED).
    if status in CONTAINER_STATUSES and current.get("lastStatus") != "STOPPED":
        put("lastStatus", status)
    exit_code = report.get("exitCode")
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        put("exitCode", exit_code)
    put("reason", _text(report.get("reason")))
    put("runtimeId", _text(report.get("runtimeId"), 255))
    put("imageDigest", _text(report.get("imageDigest"), 255))
    health = report.get("healthStatus")
    if health in HEALTH:
        put("healthStatus", health)
    put("networkBindings", _bindings(report.get("networkBindings")))
    return changed


def _first_reason(containers: list[Doc]) -> str | None:
    for c in containers:
        if c.get("reason"):
            return f"{c['name']}: {c['reason']}"[:MAX_REASON]
    return None


def _apply_one(tx: Tx, instance_arn: str, st: Doc, now: float) -> None:
    arn = st.get("taskArn")
    if not isinstance(arn, str):
        return
    row = tasks.get(tx, arn)
    if row is None or row.instance_arn != instance_arn:
        log.warning("report for task %s ignored: not a task of %s", arn, instance_arn)
        return
    if row.last == "STOPPED":
        return  # final; a late or repeated report changes nothing
    last = st.get("lastStatus")
    if last not in REPORTABLE:
        log.warning("report for task %s ignored: lastStatus %r", arn, last)
        return
    rank, current = RANK[last], RANK.get(row.last, 0)
    if rank < current:
        return  # stale (e.g. RUNNING arriving after STOPPING)

    doc = row.doc
    fields: Doc = {}
    containers = doc.get("containers") or []
    by_name = {c.get("name"): c for c in containers}
    merged = False
    for cs in st.get("containers") or []:
        if isinstance(cs, dict) and cs.get("name") in by_name:
            merged = _merge_container(by_name[cs["name"]], cs) or merged
    if merged:
        fields["containers"] = containers
    health = st.get("healthStatus")
    if health in HEALTH and doc.get("healthStatus") != health:
        fields["healthStatus"] = health
    for key in TASK_TIMES:
        value = _epoch(st.get(key))
        if value is not None and doc.get(key) != value:
            fields[key] = value
    new_last = last if rank > current else None
    if new_last == "RUNNING" and "connectivity" not in doc:
        fields["connectivity"] = "CONNECTED"
        fields["connectivityAt"] = _epoch(st.get("startedAt")) or now

    stopping = st.get("desiredStatus") == "STOPPED" or last == "STOPPED"
    stop_code = _text(st.get("stopCode"), 64) if stopping else None
    reason = _text(st.get("reason")) if stopping else None
    if last == "STOPPED" and stop_code is None and "stopCode" not in doc and row.last != "RUNNING" \
            and "startedAt" not in doc and "startedAt" not in fields:
        # Never ran and nobody said why it stopped: it failed to start.
        stop_code = "TaskFailedToStart"
        reason = reason or _first_reason(containers) or "Task failed to start"
    news = stopping and (row.desired != "STOPPED" or (stop_code is not None and "stopCode" not in doc)
                         or (reason is not None and "stoppedReason" not in doc))
    if new_last is None and not fields and not news:
        return  # nothing new
    tasks.transition(tx, row, now, desired="STOPPED" if stopping else None, last=new_last,
                     stop_code=stop_code, reason=reason, fields=fields or None)


def apply_reports(tx: Tx, instance_arn: str, states: list[Any], now: float) -> int:
    """Apply an agent's TaskState entries for tasks on ``instance_arn``; returns how many were read.

    Entries for unknown tasks or tasks of other instances are logged and skipped; malformed
    entries are skipped. Never raises for the content of a report.
    """
    n = 0
    for st in states:
        if isinstance(st, dict):
            _apply_one(tx, instance_arn, st, now)
            n += 1
    return n


def connect(tx: Tx, instance_arn: str, connected: bool, now: float) -> bool:
    """agentConnected for the instance (False when it no longer exists or is INACTIVE)."""
    return ci.set_agent_connected(tx, instance_arn, connected, now)


def mark_all_disconnected(tx: Tx, now: float) -> int:
    """At server start-up nobody is connected to this process yet; returns how many were marked."""
    arns = [r[0] for r in tx.all(_CONNECTED)]
    for arn in arns:
        ci.set_agent_connected(tx, arn, False, now)
    return len(arns)


# -- desired state out -----------------------------------------------------------------------

def task_definition(tx: Tx, arn: str) -> Doc:
    doc = _TD_CACHE.get(arn)
    if doc is None:
        row = tx.one(_TD_DOC, a=arn)
        if row is None:
            return {}
        if len(_TD_CACHE) >= _TD_CACHE_MAX:
            _TD_CACHE.clear()
        doc = _TD_CACHE[arn] = loads(row[0])
    return doc


def payload(tx: Tx, task: tasks.TaskRow) -> TaskPayload:
    doc = task.doc
    td_arn = doc.get("taskDefinitionArn", "")
    td = task_definition(tx, td_arn)
    family, _, revision = td_arn.rpartition("/")[2].partition(":")
    p: TaskPayload = {
        "taskArn": task.arn, "clusterArn": task.cluster_arn, "desiredStatus": task.desired,
        "family": td.get("family") or family, "revision": int(td.get("revision") or revision or 0),
        "taskDefinition": td, "overrides": doc.get("overrides") or {},
        "containers": [{"name": c["name"], "containerArn": c["containerArn"]}
                       for c in doc.get("containers") or []],
    }
    if task.desired == "STOPPED":
        if doc.get("stopCode"):
            p["stopCode"] = doc["stopCode"]
        if doc.get("stoppedReason"):
            p["stoppedReason"] = doc["stoppedReason"]
    return p


def desired_for_instance(tx: Tx, instance_arn: str) -> list[TaskPayload]:
    """Every task on the instance whose lastStatus is not STOPPED (a full sync)."""
    return [payload(tx, tasks.TaskRow(r)) for r in tx.all(_LIVE_ON, a=instance_arn)]
