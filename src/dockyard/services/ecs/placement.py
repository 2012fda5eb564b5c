"""Placement for RunTask/StartTask: bookkeeping against registered resources, never overcommitted.

Two halves:

* ``snapshot(tx, ...)`` reads the candidates (ACTIVE instances and what they
  have left) out of the store;
* ``decide(candidates, requests)`` is pure: it returns, for each request in
  order, ``Placed(instance_arn)`` or ``Unplaced(arn, reason)``. Requests of one
  batch see each other's placements (resources, ports, groups).

The caller commits each placement with ``container_instances.hold``, which
re-checks the instance's version and free resources in SQL, so a stale
snapshot can never overcommit an instance. The full scheduler (next issue)
replaces ``decide``; its signature is the seam.

Checks, in the order a candidate can fail them (the failure reported for an
unplaced request is the candidate that got furthest, as ECS reports the
"closest" instance): ``ATTRIBUTE`` (requiresAttributes), ``MemberOf placement
constraint unsatisfied.``, ``DistinctInstance placement constraint
unsatisfied.``, ``RESOURCE:CPU``, ``RESOURCE:MEMORY``, ``RESOURCE:PORTS``,
``AGENT`` (would fit, but its agent is not connected).

Strategies (best effort, in order, later ones break ties): ``binpack`` on
cpu/memory (least remaining after placement first), ``spread`` on
``instanceId``/``host`` or ``attribute:<name>`` (fewest tasks of the request's
group), ``random``. Without strategies the choice is random.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam, func, select

from dockyard.scheduler.query import InstanceFacts, Query
from dockyard.services.ecs import container_instances as ci
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Tx, prepare

MEMBER_OF = "MemberOf placement constraint unsatisfied."
DISTINCT = "DistinctInstance placement constraint unsatisfied."


@dataclass(slots=True)
class Candidate:
    arn: str
    agent_connected: bool
    cpu: int  # remaining
    memory: int  # remaining
    ports_tcp: set[int]  # reserved + held
    ports_udp: set[int]
    facts: InstanceFacts
    group_counts: dict[str, int] = field(default_factory=dict)  # tasks per group on the instance
    version: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    cpu: int
    memory: int
    ports_tcp: tuple[int, ...] = ()
    ports_udp: tuple[int, ...] = ()
    group: str = ""
    required_attributes: tuple[tuple[str, str | None], ...] = ()
    member_of: tuple[Query, ...] = ()
    distinct_instance: bool = False
    strategies: tuple[tuple[str, str | None], ...] = ()  # (type, field)


@dataclass(frozen=True, slots=True)
class Placed:
    instance_arn: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    arn: str | None
    reason: str


Decision = Placed | Unplaced


def _misfit(c: Candidate, r: Request) -> tuple[int, str] | None:
    attrs = c.facts.attributes
    for name, value in r.required_attributes:
        if name not in attrs or (value is not None and attrs[name] != value):
            return 1, "ATTRIBUTE"
    for q in r.member_of:
        if not q(c.facts):
            return 2, MEMBER_OF
    if r.distinct_instance and c.group_counts.get(r.group, 0) > 0:
        return 3, DISTINCT
    if r.cpu > c.cpu:
        return 4, "RESOURCE:CPU"
    if r.memory > c.memory:
        return 5, "RESOURCE:MEMORY"
    if (len(set(r.ports_tcp)) != len(r.ports_tcp) or len(set(r.ports_udp)) != len(r.ports_udp)
            or c.ports_tcp.intersection(r.ports_tcp) or c.ports_udp.intersection(r.ports_udp)):
        return 6, "RESOURCE:PORTS"
    if not c.agent_connected:
        return 7, "AGENT"
    return None


def _order_key(c: Candidate, r: Request, spread_counts: dict[str, dict[str | None, int]],
               rng: random.Random) -> tuple[float, ...]:
    key: list[float] = []
    for kind, fld in r.strategies:
        if kind == "binpack":
            key.append(c.cpu - r.cpu if (fld or "").lower() == "cpu" else c.memory - r.memory)
        elif kind == "spread":
            if fld in ("instanceId", "host"):
                key.append(c.group_counts.get(r.group, 0))
            elif fld:
                attr = fld[len("attribute:"):]
                key.append(spread_counts[attr].get(c.facts.attributes.get(attr), 0))
        elif kind == "random":
            key.append(rng.random())
    key.append(rng.random())
    return tuple(key)


def decide(candidates: Sequence[Candidate], requests: Sequence[Request],
           rng: random.Random | None = None) -> list[Decision]:
    """Place each request on a candidate, or say why none would take it. Pure: inputs are not changed."""
    rng = rng or random.Random()
    pool = [replace(c, ports_tcp=set(c.ports_tcp), ports_udp=set(c.ports_udp),
                    group_counts=dict(c.group_counts),
                    facts=replace(c.facts, task_groups=set(c.facts.task_groups)))
            for c in candidates]
    out: list[Decision] = []
    for r in requests:
        fits: list[Candidate] = []
        closest: tuple[int, int, Candidate] | None = None
        for i, c in enumerate(pool):
            miss = _misfit(c, r)
            if miss is None:
                fits.append(c)
            elif closest is None or miss[0] > closest[0]:
                closest = (miss[0], i, c)
        if not fits:
            if closest is None:
                out.append(Unplaced(None, "RESOURCE:CPU" if r.cpu else "RESOURCE:MEMORY"))
            else:
                out.append(Unplaced(closest[2].arn, _misfit(closest[2], r)[1]))  # type: ignore[index]
            continue
        spread_counts: dict[str, dict[str | None, int]] = {}
        for kind, fld in r.strategies:
            if kind == "spread" and fld and fld.startswith("attribute:"):
                attr = fld[len("attribute:"):]
                counts: dict[str | None, int] = {}
                for c in pool:
                    v = c.facts.attributes.get(attr)
                    counts[v] = counts.get(v, 0) + c.group_counts.get(r.group, 0)
                spread_counts[attr] = counts
        best = min(fits, key=lambda c: _order_key(c, r, spread_counts, rng))
        best.cpu -= r.cpu
        best.memory -= r.memory
        best.ports_tcp.update(r.ports_tcp)
        best.ports_udp.update(r.ports_udp)
        best.group_counts[r.group] = best.group_counts.get(r.group, 0) + 1
        best.facts.running_tasks_count += 1
        assert isinstance(best.facts.task_groups, set)
        best.facts.task_groups.add(r.group)
        out.append(Placed(best.arn))
    return out


# -- snapshot ----------------------------------------------------------------------

_GROUP_COUNTS = prepare(select(tkt.c.container_instance_arn, func.count())
                        .where(tkt.c.cluster_arn == bindparam("c"), tkt.c.group_name == bindparam("g"),
                               tkt.c.desired_status == "RUNNING")
                        .group_by(tkt.c.container_instance_arn))


def candidate(row: ci.InstanceRow, task_groups: frozenset[str] = frozenset()) -> Candidate:
    _, _, reserved_tcp, reserved_udp = ci.registered(row.doc)
    used = row.used_ports
    return Candidate(arn=row.arn, agent_connected=row.agent_connected, cpu=row.remaining_cpu,
                     memory=row.remaining_memory, ports_tcp=reserved_tcp | set(used["tcp"]),
                     ports_udp=reserved_udp | set(used["udp"]), facts=ci.facts(row, task_groups),
                     version=row.version)


def snapshot(tx: Tx, cluster_arn: str, rows: list[ci.InstanceRow], groups: set[str],
             need_task_groups: bool) -> list[Candidate]:
    """Candidates for ``rows`` with their task counts for ``groups`` (for spread and distinctInstance)."""
    cands = [candidate(r, ci.task_groups_on(tx, r.arn) if need_task_groups else frozenset())
             for r in rows]
    by_arn = {c.arn: c for c in cands}
    for g in groups:
        for arn, n in tx.all(_GROUP_COUNTS, c=cluster_arn, g=g):
            c = by_arn.get(arn)
            if c is not None:
                c.group_counts[g] = int(n)
    return cands
