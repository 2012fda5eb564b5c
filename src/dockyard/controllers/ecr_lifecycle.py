"""The ECR lifecycle controller: applies each repository's lifecycle policy.

ECR applies a policy within 24 hours; here a repository is evaluated when its policy is put
(``ecr-lifecycle``), when an image of it changes (``ecr-image``: pushed, retagged, deleted),
at start, and every ``DOCKYARD_ECR_LIFECYCLE_SECONDS`` (default 3600) for every repository
with a policy. Each evaluation is a read; only when it finds images to expire does one write
evaluate again (level-triggered: from the store as it is then) and delete them by digest, as
BatchDeleteImage does. Those deletions publish ``ecr-image`` again, and the next evaluation
finds nothing to do.

When each repository was last evaluated is kept in memory (``last_evaluated``); the store has
no column for ECR's ``lastEvaluatedAt`` yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from sqlalchemy import bindparam, select

from dockyard.controllers.wake import sleep_until_woken
from dockyard.services.ecr import images, lifecycle
from dockyard.services.ecr.common import Repo
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.store import Store, Tx, prepare

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3600.0
ERROR_RETRY_SECONDS = 5.0

_WITH_POLICY = prepare(select(rt.c.arn).where(rt.c.lifecycle_policy.is_not(None)).order_by(rt.c.arn))
_REPO = prepare(select(rt.c.arn, rt.c.name, rt.c.created_at, rt.c.doc, rt.c.policy, rt.c.lifecycle_policy,
                       rt.c.lifecycle_updated_at).where(rt.c.arn == bindparam("a")))

# repository ARN -> when its policy was last evaluated (epoch seconds)
last_evaluated: dict[str, float] = {}


def interval_seconds() -> float:
    return float(os.environ.get("DOCKYARD_ECR_LIFECYCLE_SECONDS", DEFAULT_INTERVAL))


def repositories_with_policy(tx: Tx) -> list[str]:
    return [str(r[0]) for r in tx.all(_WITH_POLICY)]


def _repo(tx: Tx, arn: str) -> Repo | None:
    row = tx.one(_REPO, a=arn)
    if row is None:
        return None
    return Repo(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]) if row[4] is not None else None,
                bytes(row[5]) if row[5] is not None else None, row[6])


def due(tx: Tx, arn: str, now: float) -> list[tuple[str, int]]:
    """What the repository's policy expires now ([] without a repository or a policy)."""
    repo = _repo(tx, arn)
    if repo is None or repo.lifecycle_policy is None:
        return []
    return lifecycle.evaluate(repo.lifecycle_policy, lifecycle.image_facts(tx, arn), now)


def apply(tx: Tx, arn: str, now: float) -> list[str]:
    """Evaluate the policy and delete what it expires, indexes first; returns the digests deleted."""
    repo = _repo(tx, arn)
    if repo is None:
        return []
    deleted = []
    for digest, prio in due(tx, arn, now):
        gone, failure = images.delete_image_id(tx, repo, {"imageDigest": digest})
        if failure is not None:
            log.warning("lifecycle rule %d of %s could not expire %s: %s", prio, arn, digest,
                        failure["failureReason"])
        elif gone:
            deleted.append(digest)
    return deleted


class LifecycleController:
    def __init__(self, store: Store, interval: float | None = None) -> None:
        self.store = store
        self.interval = interval if interval is not None else interval_seconds()
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.expired = 0  # images deleted (for tests)

    def on_events(self, events: list[tuple[str, str]]) -> None:
        """store.subscribe callback (on the loop, after a commit)."""
        hit = False
        for topic, key in events:
            if topic == "ecr-lifecycle":
                self.dirty.add(key)
                hit = True
            elif topic == "ecr-image":
                self.dirty.add(key.rsplit("@", 1)[0])
                hit = True
        if hit:
            self.wake.set()

    async def evaluate(self, arn: str) -> None:
        now = time.time()
        try:
            if self.store.read(due, arn, now):
                deleted = await self.store.write(apply, arn, now)
                if deleted:
                    self.expired += len(deleted)
                    log.info("lifecycle policy of %s expired %d image(s)", arn, len(deleted))
            last_evaluated[arn] = now
        except Exception:
            log.exception("applying the lifecycle policy of %s failed; trying again later", arn)

    async def run(self) -> None:
        self.dirty.update(self.store.read(repositories_with_policy))
        next_sweep = time.monotonic() + self.interval
        while True:
            if not self.dirty:
                await sleep_until_woken(self.wake, next_sweep - time.monotonic())
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.interval
                try:
                    self.dirty.update(self.store.read(repositories_with_policy))
                except Exception:
                    log.exception("listing repositories with a lifecycle policy failed")
            batch, self.dirty = self.dirty, set()
            for arn in sorted(batch):
                await self.evaluate(arn)
            if batch:
                # Coalesce a burst of pushes into one evaluation per repository.
                await asyncio.sleep(0.05)


async def run(store: Store, interval: float | None = None) -> None:
    controller = LifecycleController(store, interval)
    store.subscribe(controller.on_events)
    await controller.run()
