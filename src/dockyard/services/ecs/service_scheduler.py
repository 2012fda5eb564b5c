"""One step of the service scheduler for one service, in one write transaction.

``reconcile(tx, service_arn, now, settings)`` reads the service and its tasks,
plans with ``scheduler/rollout.py`` and applies the plan: starts tasks (placed
by the same scheduler as RunTask), asks tasks to stop, moves deployments
through IN_PROGRESS / COMPLETED / FAILED, trips the circuit breaker and rolls
back, throttles services whose tasks keep failing to start, and writes
service events in ECS's words. It is level-triggered: everything it decides
follows from the store as it is, so running it twice, or after a crash
anywhere, does no harm. It returns when it next needs a look with nothing
else happening (a task turning healthy after ``stable_seconds``, a grace
period ending, a throttle or placement retry).

What it keeps between steps lives in the service document under ``_ctl``
(never answered by the API): the watermark of stopped tasks already
accounted for (breaker and throttle counts), the throttle, the last COMPLETED
deployment (the rollback target) and which repeated events were written.
On PostgreSQL the service row is read ``FOR UPDATE`` so two servers never
step the same service at once; SQLite serialises writers anyway.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, tuple_

from dockyard.scheduler import rollout
from dockyard.scheduler.rollout import TaskView
from dockyard.services.context import Ctx
from dockyard.services.ecs import container_instances as ci
from dockyard.services.ecs import runtime_support, service_deployments, services, task_definitions, tasks
from dockyard.services.ecs.common import ClusterRow, Doc, dumps, get_tags, loads
from dockyard.state import arns, ids
from dockyard.state.schema import clusters as ct
from dockyard.state.schema import services as st
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Tx, prepare

log = logging.getLogger(__name__)

STOP_CODE = "ServiceSchedulerInitiated"
HEALTH_REASON = "Task failed container health checks"
TROUBLESHOOTING = " For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
REPEAT_SECONDS = 6 * 3600.0  # ECS repeats an unresolved message after six hours
# Consecutive tasks failing to start before the throttle starts delaying launches.
THROTTLE_AFTER = 3
_STOPPED_BATCH = 500

_SVC = prepare(select(st.c.arn, st.c.cluster_arn, st.c.name, st.c.status, st.c.doc)
               .where(st.c.arn == bindparam("a")).with_for_update())
_CLUSTER = prepare(select(ct.c.arn, ct.c.name, ct.c.status, ct.c.doc, ct.c.registered_instances,
                          ct.c.running_tasks, ct.c.pending_tasks, ct.c.active_services)
                   .where(ct.c.arn == bindparam("a")))
_LIVE = prepare(select(*tasks.COLUMNS).where(tkt.c.cluster_arn == bindparam("c"),
                                             tkt.c.service_name == bindparam("n"), tkt.c.stopped_at.is_(None)))
_STOPPED_SINCE = prepare(
    select(tkt.c.arn, tkt.c.stopped_at, tkt.c.started_by, tkt.c.doc)
    .where(tkt.c.cluster_arn == bindparam("c"), tkt.c.service_name == bindparam("n"),
           tuple_(tkt.c.stopped_at, tkt.c.arn) > tuple_(bindparam("t"), bindparam("k")))
    .order_by(tkt.c.stopped_at, tkt.c.arn).limit(bindparam("lim")))
_NOT_INACTIVE = or_(st.c.status == "ACTIVE", st.c.status == "DRAINING")
_SERVICES_IN = prepare(select(st.c.arn).where(st.c.cluster_arn == bindparam("c"), _NOT_INACTIVE))
_ALL_LIVE_SERVICES = prepare(select(st.c.arn).where(_NOT_INACTIVE))


@dataclass(frozen=True)
class Settings:
    """Timings of the scheduler. ``stable_seconds``: a RUNNING task with no health check
    counts as healthy this long after it started (ECS: 40 s)."""

    stable_seconds: float = 40.0
    agent_lost_grace: float = 60.0
    throttle_base: float = 10.0
    throttle_max: float = 900.0
    retry_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        def num(name: str, default: float) -> float:
            return float(os.environ.get(name, default))
        return cls(stable_seconds=num("DOCKYARD_SERVICE_STABLE_SECONDS", cls.stable_seconds),
                   agent_lost_grace=num("DOCKYARD_AGENT_LOST_GRACE_SECONDS", cls.agent_lost_grace),
                   throttle_base=num("DOCKYARD_SERVICE_THROTTLE_SECONDS", cls.throttle_base),
                   retry_seconds=num("DOCKYARD_SERVICE_RETRY_SECONDS", cls.retry_seconds))


_ENV_NAMES = ("DOCKYARD_SERVICE_STABLE_SECONDS", "DOCKYARD_AGENT_LOST_GRACE_SECONDS",
              "DOCKYARD_SERVICE_THROTTLE_SECONDS", "DOCKYARD_SERVICE_RETRY_SECONDS")


@dataclass
class NewService:
    """What CreateService holds of the service it is creating, for its first step: the step
    reads none of it back. The service row and its service deployment are not stored yet:
    the step changes ``doc`` and ``sd`` in place and CreateService inserts them afterwards.
    ``recreated``: a deleted service's name in use again (its old tasks are looked at)."""

    row: services.ServiceRow
    doc: Doc
    cluster: ClusterRow
    td: Doc | None
    sd: Doc
    recreated: bool = False


def first_step(tx: Tx, service_arn: str, now: float, new: NewService | None = None) -> tuple[bool, float | None]:
    """The first step of a service just created, inside the creating transaction.

    Returns (True, when the service next needs a look) on success. If the step fails, only
    its own writes are undone and (False, None) is returned (``new.doc`` and ``new.sd`` may be
    half changed then): the service is still created and the controller steps it on the
    ``service`` event as usual. On success the caller ends its transaction with ``stepped``.
    """
    ok, nxt = tx.attempt(reconcile, service_arn, now, current_settings(), new)
    if not ok:
        log.warning("first step of %s failed (the controller retries): %s", service_arn, nxt)
        return False, None
    return True, nxt  # type: ignore[return-value]


def stepped(tx: Tx, service_arn: str, nxt: float | None) -> None:
    """Tell the service controller (``service-stepped``: "<next look> <arn>") that the events
    written so far for this service are seen. Last in the transaction: an event after it
    (the service deployment's insert, say) would send the service to a second step."""
    tx.notify("service-stepped", f"{'' if nxt is None else nxt} {service_arn}")


_settings: tuple[tuple[str | None, ...], Settings] | None = None
_settings_checked = -1.0
# Reading the variables costs ~6 µs (os.environ encodes each name); every CreateService asks.
_SETTINGS_RECHECK_SECONDS = 1.0


def current_settings() -> Settings:
    """``Settings.from_env()``, built again when one of its variables changed (seen within a second)."""
    global _settings, _settings_checked
    now = time.monotonic()
    if _settings is not None and now - _settings_checked < _SETTINGS_RECHECK_SECONDS:
        return _settings[1]
    _settings_checked = now
    key = tuple(os.environ.get(n) for n in _ENV_NAMES)
    if _settings is None or _settings[0] != key:
        _settings = (key, Settings.from_env())
    return _settings[1]


def services_in(tx: Tx, cluster_arn: str) -> list[str]:
    return [r[0] for r in tx.all(_SERVICES_IN, c=cluster_arn)]


def live_services(tx: Tx) -> list[str]:
    return [r[0] for r in tx.all(_ALL_LIVE_SERVICES)]


# -- one step ----------------------------------------------------------------------------

class _Step:
    """The state of one reconcile: the service, its tasks, and what to write back."""

    def __init__(self, tx: Tx, s: services.ServiceRow, now: float, settings: Settings,
                 new: NewService | None = None) -> None:
        self.tx, self.s, self.now, self.settings, self.new = tx, s, now, settings, new
        self.doc: Doc = loads(s.doc_raw) if new is None else new.doc
        self.ctl: Doc = self.doc.get("_ctl") or {}
        self.name: str = s.name
        self.wake: list[float] = []
        a = arns.parse(s.arn)
        assert a is not None
        self.ctx = Ctx(a.account_id, a.region, self.doc.get("createdBy") or "", "", now)
        self._instances: dict[str, ci.InstanceRow | None] = {}
        self.sd_cache: tuple[str, str | None, Doc | None] | None = None
        if new is not None:
            self.sd_cache = (new.sd["serviceDeploymentArn"], new.sd["status"], new.sd)

    # -- events ----------------------------------------------------------------
    def event(self, message: str) -> None:
        ev = {"id": ids.uuid(), "createdAt": self.now, "message": f"(service {self.name}) {message}"}
        self.doc["events"] = [ev] + self.doc.get("events", [])
        del self.doc["events"][services.MAX_EVENTS:]

    def condition(self, kind: str, message: str | None) -> None:
        """A repeated condition (placement failure, throttle, stuck): written when it starts or
        changes, again after six hours, and forgotten once resolved."""
        seen = self.ctl.setdefault("seen", {})
        if message is None:
            seen.pop(kind, None)
            return
        last = seen.get(kind)
        if last is None or last[0] != message or self.now - last[1] >= REPEAT_SECONDS:
            self.event(message)
            seen[kind] = [message, self.now]

    # -- instances ---------------------------------------------------------------
    def instance(self, arn: str | None) -> ci.InstanceRow | None:
        if arn is None:
            return None
        if arn not in self._instances:
            self._instances[arn] = ci.get(self.tx, arn)
        return self._instances[arn]

    def lost_since(self, inst: ci.InstanceRow) -> float | None:
        """When a disconnected agent went away (the start of its grace period)."""
        if inst.agent_connected:
            return None
        details = (inst.doc.get("healthStatus") or {}).get("details") or [{}]
        return float(details[0].get("lastStatusChange") or inst.registered_at or self.now)

    def is_lost(self, inst: ci.InstanceRow | None) -> bool:
        if inst is None:
            return True
        since = self.lost_since(inst)
        if since is None:
            return False
        until = since + self.settings.agent_lost_grace
        if until > self.now:
            self.wake.append(until)
            return False
        return True


def _stop_reason(why: str, deployment_id: str) -> str:
    if why == rollout.UNHEALTHY:
        return HEALTH_REASON
    return f"Scaling activity initiated by (deployment {deployment_id})"


def _task_ids(arns_: list[str]) -> str:
    return " ".join(f"(task {a.rsplit('/', 1)[-1]})" for a in arns_)


def _view(step: _Step, t: tasks.TaskRow) -> TaskView:
    d = t.doc
    s = step.settings
    running = t.last == "RUNNING"
    started = d.get("startedAt")
    has_check = any("healthStatus" in c for c in d.get("containers", []))
    grace = float(step.doc.get("healthCheckGracePeriodSeconds") or 0)
    healthy = False
    unhealthy = False
    if running and started is not None:
        if has_check:
            healthy = d.get("healthStatus") == "HEALTHY"
            if d.get("healthStatus") == "UNHEALTHY":
                if started + grace <= step.now:
                    unhealthy = True
                else:
                    step.wake.append(started + grace)
        elif started + s.stable_seconds <= step.now:
            healthy = True
        else:
            step.wake.append(started + s.stable_seconds)
    inst = step.instance(t.instance_arn)
    lost = inst is None or step.is_lost(inst)
    # A draining instance's tasks are replaced within the deployment bounds and count as healthy
    # until then; a lost agent's tasks count for nothing.
    retiring = lost or inst is None or inst.status != "ACTIVE"
    if lost:
        healthy = False
    return TaskView(t.arn, d.get("startedBy"), t.instance_arn, d.get("availabilityZone"), running, healthy,
                    unhealthy, retiring)


def _account_stopped(step: _Step, primary: Doc) -> None:
    """Count tasks that stopped since the last step: failures to start feed the throttle and,
    for the PRIMARY, the circuit breaker (stage 1); tasks stopped for failed health checks
    feed the breaker once a task of the deployment has run (stage 2)."""
    wm = step.ctl.get("wm") or [float(step.doc.get("createdAt") or 0), ""]
    rows = step.tx.all(_STOPPED_SINCE, c=step.s.cluster_arn, n=step.name, t=wm[0], k=wm[1], lim=_STOPPED_BATCH)
    for arn, stopped_at, started_by, raw in rows:
        d = loads(raw)
        wm = [stopped_at, arn]
        code = d.get("stopCode")
        ran = "startedAt" in d
        mine = started_by == primary["id"]
        if mine and ran:
            _breaker_stage_two(step, primary)
        if code == "UserInitiated" or (code == STOP_CODE and d.get("stoppedReason") != HEALTH_REASON):
            continue
        if not ran:
            step.ctl["failures"] = int(step.ctl.get("failures", 0)) + 1
            step.ctl["failed_at"] = stopped_at
            if mine and step.ctl.get("stage", {}).get(primary["id"], 1) == 1:
                primary["failedTasks"] = int(primary.get("failedTasks", 0)) + 1
        elif d.get("stoppedReason") == HEALTH_REASON and mine:
            primary["failedTasks"] = int(primary.get("failedTasks", 0)) + 1
    step.ctl["wm"] = wm
    if len(rows) == _STOPPED_BATCH:
        step.wake.append(step.now)  # more to account for: look again at once


def _breaker_stage_two(step: _Step, primary: Doc) -> None:
    stage = step.ctl.setdefault("stage", {})
    if stage.get(primary["id"], 1) == 1:
        stage.clear()
        stage[primary["id"]] = 2
        primary["failedTasks"] = 0


def _sd_status(step: _Step) -> tuple[str | None, Doc | None]:
    """The current service deployment's status and document (read once per step, until it changes)."""
    arn = step.doc.get("currentServiceDeployment")
    if not arn:
        return None, None
    hit = step.sd_cache
    if hit is None or hit[0] != arn:
        got = service_deployments.status_of(step.tx, arn)
        hit = step.sd_cache = (arn, got[0], got[1]) if got else (arn, None, None)
    return hit[1], hit[2]


def _sd_rewrite(step: _Step, sd_arn: str, fn: Any) -> None:
    new = step.new
    if new is not None and sd_arn == new.sd["serviceDeploymentArn"]:
        fn(new.sd)  # not stored yet: CreateService inserts it as the step leaves it
        step.sd_cache = (sd_arn, new.sd["status"], new.sd)
        return
    step.sd_cache = None
    service_deployments.rewrite(step.tx, sd_arn, fn)


def _sd_set(step: _Step, sd_arn: str, status: str, reason: str | None = None) -> None:
    _sd_rewrite(step, sd_arn, service_deployments.status_change(step.now, status, reason))


def _source_revision(step: _Step) -> Doc | None:
    """Nothing completed yet: the deployment the current service deployment replaced, rebuilt
    from its service revision."""
    _, sd = _sd_status(step)
    sources = (sd or {}).get("sourceServiceRevisions") or []
    if not sources:
        return None
    rev = service_deployments.revision(step.tx, sources[0]["arn"])
    if rev is None:
        return None
    dep: Doc = {"id": "ecs-svc/" + rev["serviceRevisionArn"].rsplit("/", 1)[-1],
                "taskDefinition": rev.get("taskDefinition")}
    for k in ("capacityProviderStrategy", "launchType", "platformVersion", "platformFamily",
              "networkConfiguration"):
        if k in rev:
            dep[k] = rev[k]
    return dep


def _start_rollback(step: _Step, primary: Doc, reason: str) -> bool:
    """Make the last COMPLETED deployment PRIMARY again (the same one while its tasks are still
    there, else a new one with its settings); False when there is none."""
    target = step.ctl.get("completed") or _source_revision(step)
    if not target or target["id"] == primary["id"]:
        return False
    still = [d for d in step.doc["deployments"][1:] if d["id"] == target["id"]]
    if still:
        # Its tasks are still there: it becomes PRIMARY again and keeps them.
        dep = still[0]
        step.doc["deployments"].remove(dep)
        dep.update(status="PRIMARY", desiredCount=step.doc.get("desiredCount", 0), updatedAt=step.now,
                   rolloutState="IN_PROGRESS")
    else:
        dep = dict(target)
        dep.update(id=ids.deployment_id(), status="PRIMARY", desiredCount=step.doc.get("desiredCount", 0),
                   pendingCount=0, runningCount=0, failedTasks=0, createdAt=step.now, updatedAt=step.now,
                   rolloutState="IN_PROGRESS")
    dep["rolloutStateReason"] = f"ECS deployment {dep['id']} in progress."
    primary["status"] = "ACTIVE"
    primary["updatedAt"] = step.now
    step.doc["deployments"] = [dep] + step.doc["deployments"]
    step.doc["taskDefinition"] = dep["taskDefinition"]
    step.ctl["rollback"] = dep["id"]
    step.ctl.pop("throttle", None)
    step.ctl["failures"] = 0
    sd_arn = step.doc.get("currentServiceDeployment")
    if sd_arn:
        rev = service_deployments.revision_arn_for(step.s.arn, target["id"])

        def mark(d: Doc) -> None:
            d["status"] = "ROLLBACK_IN_PROGRESS"
            d["updatedAt"] = step.now
            d["rollback"] = {"reason": reason, "startedAt": step.now, "serviceRevisionArn": rev}
        _sd_rewrite(step, sd_arn, mark)
    step.event(f"rolling back to deployment {target['id']}.")
    return True


def _fail(step: _Step, primary: Doc, reason: str, event: str, rollback: bool) -> None:
    primary["rolloutState"] = "FAILED"
    primary["rolloutStateReason"] = reason
    primary["updatedAt"] = step.now
    step.event(f"(deployment {primary['id']}) {event}")
    sd_arn = step.doc.get("currentServiceDeployment")
    if sd_arn:
        def trip(d: Doc) -> None:
            cb = d.get("deploymentCircuitBreaker")
            if cb and cb.get("status") == "MONITORING":
                cb["status"] = "TRIGGERED"
                cb["failureCount"] = primary.get("failedTasks", 0)
        _sd_rewrite(step, sd_arn, trip)
    if not (rollback and _start_rollback(step, primary, reason)) and sd_arn:
        _sd_set(step, sd_arn, "STOPPED", reason)


def _deployment_rules(step: _Step, primary: Doc) -> None:
    """Circuit breaker and StopServiceDeployment requests for the PRIMARY deployment."""
    if primary.get("rolloutState") != "IN_PROGRESS":
        return
    status, _ = _sd_status(step)
    if status == "ROLLBACK_REQUESTED":
        reason = "Rollback requested with StopServiceDeployment."
        primary["rolloutState"] = "FAILED"
        primary["rolloutStateReason"] = "ECS deployment stopped: rollback requested."
        if not _start_rollback(step, primary, reason):
            _sd_set(step, step.doc["currentServiceDeployment"],
                                           "ROLLBACK_FAILED", "There is no completed deployment to roll back to.")
        return
    if status == "STOP_REQUESTED":
        _fail(step, primary, "ECS deployment stopped: stop requested.", "deployment stopped.", False)
        return
    breaker = (step.doc.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    if not breaker.get("enable"):
        return
    threshold = service_deployments.circuit_breaker_threshold(int(primary.get("desiredCount") or 0))
    if int(primary.get("failedTasks") or 0) >= threshold:
        _fail(step, primary, "ECS deployment circuit breaker: tasks failed to start.",
              "deployment failed: tasks failed to start.", bool(breaker.get("rollback")))


def _can_launch(step: _Step, primary: Doc) -> bool:
    if primary.get("rolloutState") == "FAILED":
        return False
    throttle = step.ctl.get("throttle")
    if throttle is not None and throttle.get("deployment") != primary["id"]:
        step.ctl.pop("throttle", None)  # a new deployment clears the throttle at once
        step.ctl["failures"] = 0
        throttle = None
    failures = int(step.ctl.get("failures", 0))
    if failures >= THROTTLE_AFTER:
        if throttle is None or throttle.get("failures") != failures:
            delay = min(step.settings.throttle_max,
                        step.settings.throttle_base * 2 ** (failures - THROTTLE_AFTER))
            throttle = step.ctl["throttle"] = {"deployment": primary["id"], "failures": failures,
                                               "until": step.now + delay}
            step.condition("throttle", "is unable to consistently start tasks successfully.")
        if throttle["until"] > step.now:
            step.wake.append(throttle["until"])
            return False
    return True


_DETAILS = {"RESOURCE:MEMORY": "has insufficient memory available.",
            "RESOURCE:CPU": "has insufficient CPU units available.",
            "RESOURCE:PORTS": "is already using a port required by your task.",
            "ATTRIBUTE": "is missing an attribute required by your task."}


def _placement_message(failures: list[Doc], no_instances: bool) -> str:
    head = "was unable to place a task because no container instance met all of its requirements."
    if no_instances or not failures:
        return head + " Reason: No Container Instances were found in your cluster." + TROUBLESHOOTING
    f = failures[0]
    reason = f.get("reason", "")
    inst = f.get("arn", "").rsplit("/", 1)[-1]
    detail = _DETAILS.get(reason, f'encountered error "{reason}".')
    if not inst:
        return head + f" Reason: {reason}." + TROUBLESHOOTING
    return head + f" The closest matching (container-instance {inst}) {detail}" + TROUBLESHOOTING


def _launch_spec(step: _Step, cluster: ClusterRow, dep: Doc) -> tuple[tasks.LaunchSpec, tasks.PlacementRules] | str:
    """What a launch of ``dep`` places, or why it cannot be launched here."""
    new = step.new
    if new is not None and new.td is not None and new.td["taskDefinitionArn"] == dep.get("taskDefinition"):
        td: Doc | None = new.td
    else:
        td = task_definitions.lookup(step.tx, step.ctx, dep.get("taskDefinition") or "")
    if td is None:
        return "The task definition of the deployment does not exist."
    lt = dep.get("launchType") or "EC2"
    provider = None
    for s in dep.get("capacityProviderStrategy") or []:
        provider = s.get("capacityProvider")
        lt = "FARGATE" if provider in ("FARGATE", "FARGATE_SPOT") else "EC2"
        break
    if lt != "EC2" and lt != "EXTERNAL":
        return f"Dockyard does not run {lt} tasks yet; use the EC2 launch type."
    problems = runtime_support.unsupported(td, None)
    if problems:
        return "Dockyard cannot run this task definition on the EC2 launch type yet: " + "; ".join(problems) + "."
    doc = step.doc
    tags: list[Doc] = []
    if doc.get("propagateTags") == "SERVICE":
        tags = get_tags(step.tx, step.s.arn)
    elif doc.get("propagateTags") == "TASK_DEFINITION":
        tags = get_tags(step.tx, td["taskDefinitionArn"])
    managed = ([{"key": "aws:ecs:clusterName", "value": cluster.name},
                {"key": "aws:ecs:serviceName", "value": step.name}] if doc.get("enableECSManagedTags") else [])
    strategies = doc.get("placementStrategy") or []
    if not strategies and doc.get("schedulingStrategy") != "DAEMON":
        # ECS's default for services: balance across zones, then across instances.
        strategies = [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                      {"type": "spread", "field": "instanceId"}]
    try:
        rules = tasks.compile_rules(doc.get("placementConstraints") or [], strategies, td)
    except Exception as err:  # noqa: BLE001 (a rule the task definition added later)
        return str(err)
    spec = tasks.LaunchSpec(td=td, needs=tasks.needs(td, None), launch_type=lt, group=f"service:{step.name}",
                            started_by=dep["id"], service_name=step.name, capacity_provider=provider,
                            enable_execute_command=bool(doc.get("enableExecuteCommand")), tags=tags,
                            managed_tags=managed)
    return spec, rules


def _started(step: _Step, created: list[Doc]) -> None:
    if created:
        step.event(f"has started {len(created)} tasks: {_task_ids([t['taskArn'] for t in created])}.")


def _launch(step: _Step, cluster: ClusterRow, dep: Doc, count: int,
            targets: list[ci.InstanceRow] | None = None) -> None:
    """Start ``count`` tasks of ``dep`` wherever placement puts them, or one on each of
    ``targets`` (DAEMON); a failure to place is an event and a retry."""
    got = _launch_spec(step, cluster, dep)
    if isinstance(got, str):
        step.condition("place", f"was unable to place a task. Reason: {got}")
        step.wake.append(step.now + step.settings.retry_seconds)
        return
    spec, rules = got
    created: list[Doc] = []
    failures: list[Doc] = []
    if targets is None:
        try:
            created, failures = tasks.launch(step.tx, step.ctx, cluster, spec, rules, count)
        except tasks.InvalidParameterException:
            step.condition("place", _placement_message([], True))
            step.wake.append(step.now + step.settings.retry_seconds)
            return
    else:
        for row in targets:
            c, f = tasks.place_on(step.tx, step.ctx, cluster, spec, rules, row)
            created += c
            failures += f
    _started(step, created)
    if failures:
        step.condition("place", _placement_message(failures, False))
        step.wake.append(step.now + step.settings.retry_seconds)
    else:
        step.condition("place", None)


def _eligible(step: _Step, cluster: ClusterRow, dep: Doc) -> tuple[list[str], dict[str, ci.InstanceRow]]:
    """DAEMON: ACTIVE instances of the cluster that satisfy the service's memberOf constraints."""
    rows = {r.arn: r for r in ci.active_in(step.tx, cluster.arn) if not tasks.is_external(r)}
    constraints = step.doc.get("placementConstraints") or []
    td = task_definitions.lookup(step.tx, step.ctx, dep.get("taskDefinition") or "")
    try:
        rules = tasks.compile_rules(constraints, [], td)
    except Exception:  # noqa: BLE001
        return [], rows
    out = []
    for arn, r in rows.items():
        f = ci.facts(r)
        if all(q(f) for q in rules.member_of):
            out.append(arn)
    return sorted(out), rows


def _complete(step: _Step, primary: Doc) -> None:
    if primary.get("rolloutState") == "IN_PROGRESS":
        primary["rolloutState"] = "COMPLETED"
        primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
        primary["updatedAt"] = step.now
        step.event(f"(deployment {primary['id']}) deployment completed.")
        sd_arn = step.doc.get("currentServiceDeployment")
        if sd_arn:
            status, _ = _sd_status(step)
            if step.ctl.get("rollback") == primary["id"] or status == "ROLLBACK_IN_PROGRESS":
                _sd_set(step, sd_arn, "ROLLBACK_SUCCESSFUL")
            elif status in service_deployments.OPEN_STATES:
                _sd_set(step, sd_arn, "SUCCESSFUL")
        step.ctl["completed"] = {k: v for k, v in primary.items()
                                 if k not in ("pendingCount", "runningCount", "rolloutState", "rolloutStateReason")}
        step.ctl.pop("rollback", None)
    if primary.get("rolloutState") == "COMPLETED":
        step.condition("steady", "has reached a steady state.")


def reconcile(tx: Tx, service_arn: str, now: float, settings: Settings,
              new: NewService | None = None) -> float | None:
    """Step one service; returns when it next needs a look (None: only when something changes).
    ``new``: the service is being created in this transaction (see ``NewService``)."""
    if new is None:
        row = tx.one(_SVC, a=service_arn)
        if row is None:
            return None
        s = services.ServiceRow(row)
    else:
        s = new.row
    if s.status == "INACTIVE":
        return None
    step = _Step(tx, s, now, settings, new)
    doc = step.doc
    deployments = doc.get("deployments") or []
    if (doc.get("deploymentController") or {}).get("type", "ECS") != "ECS" or not deployments:
        return None
    if new is None:
        crow = tx.one(_CLUSTER, a=s.cluster_arn)
        if crow is None:
            return None
        cluster = ClusterRow(crow)
    else:
        cluster = new.cluster
    primary = deployments[0]
    # A service created in this transaction has no tasks yet (a recreated one may have old ones).
    fresh = new is not None and not new.recreated
    live = [] if fresh else [tasks.TaskRow(r) for r in tx.all(_LIVE, c=s.cluster_arn, n=s.name)]
    if not fresh:
        _account_stopped(step, primary)
    else:
        step.ctl["wm"] = [float(doc.get("createdAt") or 0), ""]
    for t in live:
        if t.doc.get("startedBy") == primary["id"] and t.last == "RUNNING":
            _breaker_stage_two(step, primary)
            break
    if step.ctl.get("failures") and any(t.last == "RUNNING" and (t.doc.get("startedAt") or 0) > step.ctl.get(
            "failed_at", 0) for t in live):
        # A task started after the last failure: the failures are no longer consecutive.
        step.ctl["failures"] = 0
        step.ctl.pop("throttle", None)
        step.condition("throttle", None)
    if s.status == "ACTIVE":
        _deployment_rules(step, primary)
        primary = doc["deployments"][0]

    wanted = [t for t in live if t.desired == "RUNNING"]
    stopping = [t for t in live if t.desired != "RUNNING"]
    views = [_view(step, t) for t in wanted]
    counted_stopping = [t for t in stopping if not step.is_lost(step.instance(t.instance_arn))]
    dc = doc.get("deploymentConfiguration") or {}
    by_arn = {t.arn: t for t in wanted}
    daemon_rows: dict[str, ci.InstanceRow] = {}

    if s.status == "DRAINING":
        plan = rollout.Plan(stop=[(t.arn, rollout.SCALE_IN) for t in wanted])
    elif doc.get("schedulingStrategy") == "DAEMON":
        eligible, daemon_rows = _eligible(step, cluster, primary)
        doc["desiredCount"] = primary["desiredCount"] = len(eligible)
        plan = rollout.plan_daemon(eligible, int(dc.get("minimumHealthyPercent", 0)), primary["id"], views,
                                   {t.instance_arn for t in counted_stopping if t.instance_arn},
                                   can_launch=_can_launch(step, primary))
    else:
        plan = rollout.plan_replica(int(doc.get("desiredCount") or 0), int(dc.get("minimumHealthyPercent", 100)),
                                    int(dc.get("maximumPercent", 200)), primary["id"], views,
                                    len(counted_stopping), can_launch=_can_launch(step, primary))

    if primary.get("rolloutState") == "FAILED":
        # A failed deployment (not rolled back) replaces nothing: what still runs stays.
        plan.stop = [(arn, why) for arn, why in plan.stop if why != rollout.REPLACED]
    if plan.stop:
        for arn, why in plan.stop:
            tasks.request_stop(tx, by_arn[arn], now, STOP_CODE, _stop_reason(why, primary["id"]))
        step.event(f"has stopped {len(plan.stop)} running tasks: {_task_ids([a for a, _ in plan.stop])}.")
        # A task of a lost agent frees its slot at once (no report will come): look again now.
        step.wake.append(now)
    if s.status == "ACTIVE":
        if plan.targets:
            _launch(step, cluster, primary, len(plan.targets), [daemon_rows[a] for a in plan.targets])
        elif plan.launch:
            _launch(step, cluster, primary, plan.launch)
        step.condition("stuck", "was unable to stop or start tasks during a deployment because of the service "
                                "deployment configuration. Update the minimumHealthyPercent or maximumPercent "
                                "value and try again." if plan.stuck else None)
        if plan.steady:
            _complete(step, primary)
        else:
            step.ctl.get("seen", {}).pop("steady", None)

    # Older deployments leave the list once none of their tasks is left.
    # A FAILED one stays listed (ACTIVE, with its reason) until the deployment replacing it completes.
    alive = {t.doc.get("startedBy") for t in live} | {primary["id"]}
    rolling = primary.get("rolloutState") == "IN_PROGRESS"
    doc["deployments"] = [d for d in doc["deployments"]
                          if d["id"] in alive or (rolling and d.get("rolloutState") == "FAILED")]
    for d in doc["deployments"][1:]:
        if d["status"] == "PRIMARY":
            d["status"] = "ACTIVE"

    doc["_ctl"] = step.ctl
    if new is None and dumps(doc) != bytes(s.doc_raw):
        services.save_doc(tx, s, doc, notify=False)
    if s.status == "DRAINING" and not live:
        services.settle_draining(tx, now, s.arn)
    # Its own writes need no second look at this service.
    tx.events[:] = [(topic, key) for topic, key in tx.events if not (topic == "service-task" and key == s.arn)]
    return min(step.wake) if step.wake else None

