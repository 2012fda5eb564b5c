"""Stopped tasks expire: DescribeTasks shows them for the retention window (ECS: at least 1 h), then they go.

Runs on the server's loop: every ``interval`` seconds one write deletes up to
``BATCH`` tasks whose ``stopped_at`` is older than the window (indexed on
``stopped_at``), repeating while a full batch came back. Tags were already
removed when the task stopped. Client tokens past their 24 hours go the same
way (``idempotency.purge``), and so do task definition revisions in
DELETE_IN_PROGRESS that no live task or service uses (``taskdef_purge.purge``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from sqlalchemy import bindparam, delete, select

from dockyard.services.ecs import idempotency, taskdef_purge
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Store, Tx, prepare

log = logging.getLogger(__name__)

BATCH = 1000
DEFAULT_RETENTION = 3600.0

_OLDEST = prepare(select(tkt.c.arn).where(tkt.c.stopped_at < bindparam("before"))
                  .order_by(tkt.c.stopped_at).limit(bindparam("n")))
_DELETE = prepare(delete(tkt).where(tkt.c.arn == bindparam("a")))


def retention_seconds() -> float:
    return float(os.environ.get("DOCKYARD_STOPPED_TASK_RETENTION_SECONDS", DEFAULT_RETENTION))


def expire(tx: Tx, before: float, limit: int = BATCH) -> int:
    """Delete up to ``limit`` tasks that stopped before ``before``; returns how many."""
    arns = [r[0] for r in tx.all(_OLDEST, before=before, n=limit)]
    for arn in arns:
        tx.run(_DELETE, a=arn)
    return len(arns)


async def run(store: Store, retention: float | None = None, interval: float = 60.0) -> None:
    window = retention_seconds() if retention is None else retention
    interval = min(interval, max(window / 4, 0.5))
    while True:
        await asyncio.sleep(interval)
        try:
            while await store.write(expire, time.time() - window) == BATCH:
                pass
            while await store.write(idempotency.purge, time.time() - idempotency.TTL_SECONDS) == idempotency.BATCH:
                pass
            after: str | None = ""
            while after is not None:
                _, after = await store.write(taskdef_purge.purge, after)
        except Exception:
            log.exception("expiring stopped tasks, client tokens or deleted revisions failed; trying again later")
