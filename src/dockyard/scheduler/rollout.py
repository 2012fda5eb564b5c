"""Rolling-update arithmetic of the ECS service scheduler: pure, no store.

Given a service's live tasks (each already classified by the caller) and its
deployment configuration, ``plan_replica`` says how many tasks of the PRIMARY
deployment to start and which tasks to stop now; ``plan_daemon`` does the same
per instance for a DAEMON service. The caller applies the plan and calls again
whenever something changes (level-triggered): a plan never depends on what an
earlier plan decided, only on what the tasks are now.

The limits are ECS's (reference ecs-semantics 2.2):

* ``lower = ceil(desired × minimumHealthyPercent / 100)``: tasks that must stay
  RUNNING and healthy while tasks are replaced;
* ``upper = floor(desired × maximumPercent / 100)``: tasks allowed to be
  RUNNING or PENDING at once, across every deployment. Tasks already asked to
  stop but not yet stopped still occupy their slot (they are still running).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Why a task is stopped (the caller words the stoppedReason).
SCALE_IN = "scale-in"        # more tasks of the PRIMARY than desired
REPLACED = "replaced"        # an older deployment's task, or one on a draining/lost instance
UNHEALTHY = "unhealthy"      # failed its health checks past the grace period
NOT_ELIGIBLE = "not-eligible"  # DAEMON: its instance no longer takes the daemon


@dataclass(frozen=True, slots=True)
class TaskView:
    arn: str
    deployment: str | None       # startedBy: the deployment id that started it
    instance: str | None
    zone: str | None             # availability zone, for scale-in balance
    running: bool                # lastStatus RUNNING (else still pending)
    healthy: bool                # counts toward the lower limit
    unhealthy: bool = False      # failed health checks past the grace period: replace it
    retiring: bool = False       # on a DRAINING instance or one whose agent is lost


@dataclass(slots=True)
class Plan:
    launch: int = 0
    stop: list[tuple[str, str]] = field(default_factory=list)   # (task arn, why)
    # Nothing can start or stop while tasks still need replacing (e.g. 100/100).
    stuck: bool = False
    steady: bool = False
    targets: list[str] = field(default_factory=list)            # DAEMON: instances to start on


def limits(desired: int, minimum_pct: int, maximum_pct: int) -> tuple[int, int]:
    return math.ceil(desired * minimum_pct / 100), math.floor(desired * maximum_pct / 100)


def _scale_in_pick(tasks: Sequence[TaskView], n: int) -> list[TaskView]:
    """The ``n`` tasks to stop first on scale-in: not healthy ones, then (ECS) one from the zone
    with the most tasks of the service, then from the instance with the most, counted again
    after each pick so the zones stay balanced."""
    if n <= 0 or not tasks:
        return []  # the usual case, without building the counters
    zones = Counter(t.zone for t in tasks)
    hosts = Counter(t.instance for t in tasks)
    left = list(tasks)
    out: list[TaskView] = []
    for _ in range(min(n, len(left))):
        t = min(left, key=lambda t: (t.healthy, t.running, -zones[t.zone], -hosts[t.instance], t.arn))
        left.remove(t)
        out.append(t)
        zones[t.zone] -= 1
        hosts[t.instance] -= 1
    return out


def plan_replica(desired: int, minimum_pct: int, maximum_pct: int, primary: str,
                 tasks: Sequence[TaskView], stopping: int, *, can_launch: bool = True) -> Plan:
    """One step of a REPLICA service.

    ``tasks`` are the service's tasks whose desiredStatus is RUNNING; ``stopping`` counts
    those asked to stop that are still running (they hold a slot under ``upper``).
    ``can_launch`` is False while the PRIMARY may not start tasks (circuit breaker
    tripped, throttled, stopped).
    """
    lower, upper = limits(desired, minimum_pct, maximum_pct)
    plan = Plan()
    keep = [t for t in tasks if t.deployment == primary and not t.retiring and not t.unhealthy]
    others = [t for t in tasks if not (t.deployment == primary and not t.retiring and not t.unhealthy)]

    if len(keep) > desired:
        surplus = _scale_in_pick(keep, len(keep) - desired)
        plan.stop += [(t.arn, SCALE_IN) for t in surplus]
        gone = {t.arn for t in surplus}
        keep = [t for t in keep if t.arn not in gone]

    # Tasks that do not count toward the lower limit can always go: unhealthy ones,
    # and replaced ones that are not (yet) healthy.
    budget = sum(t.healthy for t in keep) + sum(t.healthy for t in others) - lower
    held: list[TaskView] = []
    for t in others:
        if t.unhealthy:
            plan.stop.append((t.arn, UNHEALTHY))
        elif not t.healthy:
            plan.stop.append((t.arn, REPLACED))
        else:
            held.append(t)
    plan.stop += [(t.arn, REPLACED) for t in _scale_in_pick(held, max(budget, 0))]

    want = desired - len(keep)
    room = upper - len(tasks) - stopping
    if can_launch and want > 0:
        plan.launch = max(0, min(want, room))
    stopped_now = len(plan.stop)
    waiting_on_stops = stopping > 0 or stopped_now > 0
    pending = any(not t.running or not t.healthy for t in keep)
    if want > 0 and plan.launch == 0 and can_launch and not waiting_on_stops and not pending and room <= 0:
        plan.stuck = True
    plan.steady = (len(keep) == desired and not others and stopping == 0 and not plan.stop
                   and all(t.healthy for t in keep))
    return plan


def plan_daemon(eligible: Iterable[str], minimum_pct: int, primary: str, tasks: Sequence[TaskView],
                stopping_on: set[str], *, can_launch: bool = True) -> Plan:
    """One step of a DAEMON service: one PRIMARY task on every eligible instance.

    The implied maximumPercent is 100, so a new task starts on an instance only once
    every older task there has stopped (``stopping_on``: instances with a task asked
    to stop that is still running); older tasks are stopped within ``minimumHealthyPercent``
    of the eligible count.
    """
    wanted = list(eligible)
    wanted_set = set(wanted)
    lower = math.ceil(len(wanted) * minimum_pct / 100)
    plan = Plan()
    by_instance: dict[str | None, list[TaskView]] = {}
    for t in tasks:
        by_instance.setdefault(t.instance, []).append(t)
    # Healthy instances, not tasks: a duplicate on an instance lends no budget.
    healthy = len({t.instance for t in tasks if t.instance in wanted_set and t.healthy and not t.retiring})
    budget = healthy - lower
    for inst, ts in by_instance.items():
        if inst not in wanted_set:
            plan.stop += [(t.arn, NOT_ELIGIBLE) for t in ts]
    for inst in wanted:
        ts = by_instance.get(inst, [])
        mine = [t for t in ts if t.deployment == primary and not t.unhealthy]
        old = [t for t in ts if not (t.deployment == primary and not t.unhealthy)]
        if len(mine) > 1:
            plan.stop += [(t.arn, SCALE_IN) for t in _scale_in_pick(mine, len(mine) - 1)]
        for t in old:
            if t.unhealthy:
                plan.stop.append((t.arn, UNHEALTHY))
            elif not t.healthy:
                plan.stop.append((t.arn, REPLACED))
            elif budget > 0:
                plan.stop.append((t.arn, REPLACED))
                budget -= 1
        if not mine and not old and inst not in stopping_on and can_launch:
            plan.targets.append(inst)
    plan.launch = len(plan.targets)
    plan.steady = (not plan.stop and not plan.targets and not stopping_on
                   and all(t.healthy and t.deployment == primary for t in tasks)
                   and len(tasks) == len(wanted))
    return plan
