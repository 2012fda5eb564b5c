"""Placement for RunTask/StartTask: bookkeeping against registered resources, never overcommitted.

Two halves:

* ``snapshot(tx, ...)`` reads the candidates (ACTIVE instances and what they
  have left) out of the store;
* ``decide(candidates, requests)`` is the scheduler (``dockyard.scheduler.placement``):
  pure, it returns for each request in order ``Placed(instance_arn)`` or
  ``Unplaced(arn, reason)``; requests of one batch see each other's placements.

The caller commits each placement with ``container_instances.hold``, which
re-checks the instance's version and free resources in SQL, so a stale
snapshot can never overcommit an instance.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import bindparam, func, select

from dockyard.scheduler.placement import (
    DISTINCT,
    MEMBER_OF,
    Candidate,
    Decision,
    Placed,
    Request,
    Unplaced,
    decide,
)
from dockyard.services.ecs import container_instances as ci
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import ROLLBACK_HOOKS, Tx, prepare

__all__ = ["DISTINCT", "MEMBER_OF", "Candidate", "Decision", "Placed", "Request", "Unplaced", "candidate",
           "decide", "snapshot"]


# -- snapshot ----------------------------------------------------------------------

_GROUP_COUNTS = prepare(select(tkt.c.container_instance_arn, func.count())
                        .where(tkt.c.cluster_arn == bindparam("c"), tkt.c.group_name == bindparam("g"),
                               tkt.c.desired_status == "RUNNING")
                        .group_by(tkt.c.container_instance_arn))


def candidate(row: ci.InstanceRow, task_groups: frozenset[str] = frozenset()) -> Candidate:
    static = row.static()
    used = row.used_ports
    return Candidate(arn=row.arn, agent_connected=row.agent_connected, cpu=row.remaining_cpu,
                     memory=row.remaining_memory, ports_tcp=set(static.reserved_tcp).union(used["tcp"]),
                     ports_udp=set(static.reserved_udp).union(used["udp"]), facts=ci.facts(row, task_groups),
                     version=row.version)


# Candidates by instance ARN, valid while the instance's version (bumped by every change to its
# document, connection and resources) and task count are the same: decide() never changes its
# inputs, so an unchanged instance's candidate serves every RunTask until it changes.
_CACHE: dict[str, tuple[int, int, Candidate]] = {}
ROLLBACK_HOOKS.append(_CACHE.clear)


def _cached(row: ci.InstanceRow) -> Candidate:
    hit = _CACHE.get(row.arn)
    if hit is not None and hit[0] == row.version and hit[1] == row.running_tasks:
        return hit[2]
    c = candidate(row)
    if len(_CACHE) > 100_000:
        _CACHE.clear()
    _CACHE[row.arn] = (row.version, row.running_tasks, c)
    return c


def snapshot(tx: Tx, cluster_arn: str, rows: list[ci.InstanceRow], groups: set[str],
             need_task_groups: bool) -> list[Candidate]:
    """Candidates for ``rows`` with their task counts for ``groups`` (for spread and distinctInstance)."""
    if need_task_groups:
        cands = [candidate(r, ci.task_groups_on(tx, r.arn)) for r in rows]
    elif groups:
        cands = [replace(_cached(r), group_counts={}) for r in rows]
    else:
        return [_cached(r) for r in rows]
    by_arn = {c.arn: c for c in cands}
    for g in groups:
        for arn, n in tx.all(_GROUP_COUNTS, c=cluster_arn, g=g):
            c = by_arn.get(arn)
            if c is not None:
                c.group_counts[g] = int(n)
    return cands
