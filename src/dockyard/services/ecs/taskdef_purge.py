"""Task definition revisions in DELETE_IN_PROGRESS go once nothing uses them.

ECS: after DeleteTaskDefinitions a revision "stays in DELETE_IN_PROGRESS status until all
the associated tasks and services have been terminated"; ECS checks periodically and then
deletes it for good (DescribeTaskDefinition answers "Unable to describe task definition.").
The family keeps its revision count, and once none of its revisions is left its name is no
longer listed (ListTaskDefinitionFamilies).

A revision is in use while a task of it has not stopped, or while a service that is not
INACTIVE names it (as its task definition or in one of its deployments). The expiry
controller (``controllers/task_expiry.py``) calls ``purge`` a batch at a time.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import bindparam, delete, or_, select, text, update

from dockyard.services.ecs.common import loads, remove_tags
from dockyard.state.schema import clusters as ct
from dockyard.state.schema import services as st
from dockyard.state.schema import task_definition_families as ft
from dockyard.state.schema import task_definitions as tdt
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Tx, prepare

BATCH = 100
# A literal, not a bound value: SQLite uses the partial index ix_taskdef_deleting only for a
# condition it can see is the index's own.
_DELETING = prepare(select(tdt.c.arn, tdt.c.account_id, tdt.c.region, tdt.c.family)
                    .where(text("task_definitions.status = 'DELETE_IN_PROGRESS'"), tdt.c.arn > bindparam("after"))
                    .order_by(tdt.c.arn).limit(bindparam("n")))
_CLUSTERS = prepare(select(ct.c.arn).where(ct.c.account_id == bindparam("acct"), ct.c.region == bindparam("r")))
_LIVE_TASKS = prepare(select(tkt.c.doc).where(tkt.c.cluster_arn == bindparam("c"), tkt.c.family == bindparam("f"),
                                              tkt.c.stopped_at.is_(None)))
_LIVE_SERVICES = prepare(select(st.c.doc).where(st.c.cluster_arn == bindparam("c"),
                                                or_(st.c.status == "ACTIVE", st.c.status == "DRAINING")))
_DELETE = prepare(delete(tdt).where(tdt.c.arn == bindparam("a")))
_ANY_REVISION = prepare(select(tdt.c.arn).where(tdt.c.account_id == bindparam("acct"), tdt.c.region == bindparam("r"),
                                                tdt.c.family == bindparam("f")).limit(1))
# "DELETED": a family none of whose revisions is left. Not a status the API shows: listings
# leave such families out, and the next registration makes the family ACTIVE again.
_FAMILY_GONE = prepare(update(ft).where(ft.c.account_id == bindparam("acct"), ft.c.region == bindparam("r"),
                                        ft.c.family == bindparam("f")).values(status="DELETED"))


def _in_use(tx: Tx, account: str, region: str, families: set[str], candidates: set[str]) -> set[str]:
    """The candidates that a live task or a live service of the account and region uses."""
    used: set[str] = set()
    for (cluster,) in tx.all(_CLUSTERS, acct=account, r=region):
        for family in families:
            for (raw,) in tx.all(_LIVE_TASKS, c=cluster, f=family):
                arn = loads(raw).get("taskDefinitionArn")
                if arn in candidates:
                    used.add(arn)
        for (raw,) in tx.all(_LIVE_SERVICES, c=cluster):
            doc = loads(raw)
            named = [doc.get("taskDefinition")] + [d.get("taskDefinition") for d in doc.get("deployments") or []]
            used.update(a for a in named if a in candidates)
    return used


def purge(tx: Tx, after: str = "", limit: int = BATCH) -> tuple[int, str | None]:
    """Delete the unused DELETE_IN_PROGRESS revisions among the next ``limit`` after ``after``
    (by ARN). Returns (how many were deleted, where the next batch starts: None at the end)."""
    rows = tx.all(_DELETING, after=after, n=limit)
    scopes: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for arn, account, region, family in rows:
        scopes[(account, region)].append((arn, family))
    deleted = 0
    for (account, region), revisions in scopes.items():
        families = {family for _, family in revisions}
        used = _in_use(tx, account, region, families, {arn for arn, _ in revisions})
        for arn, _ in revisions:
            if arn not in used:
                tx.run(_DELETE, a=arn)
                remove_tags(tx, arn)
                tx.notify("task-definition", arn)
                deleted += 1
        for family in families:
            if tx.one(_ANY_REVISION, acct=account, r=region, f=family) is None:
                tx.run(_FAMILY_GONE, acct=account, r=region, f=family)
    return deleted, (rows[-1][0] if len(rows) == limit else None)
