"""The service controller: runs the service scheduler's step whenever a service may need one.

Event-driven, no polling: it subscribes to the store's commits and marks a
service dirty when the service itself changed (``service``: Create/Update/
DeleteService), one of its tasks changed (``service-task``: started, stopped,
health), its service deployment got a stop request (``service-deployment``), or
an instance of its cluster changed (``container-instance``: registered,
draining, agent gone or back). Dirty services are stepped together, so their
writes join one group commit. Each step says when it next needs a look with
nothing else happening; those are kept as timers.

Level-triggered and restart-safe: at start every ACTIVE and DRAINING service is
stepped (``STEP_CHUNK`` at a time, so API writes are not queued behind them), and
every ``resync`` seconds (``DOCKYARD_SERVICE_RESYNC_SECONDS``, default 300) those
not stepped within the last ``resync`` seconds are again: a safety net only, since
each server steps the services its own commits touched (servers sharing a
PostgreSQL store each hear their own API calls and their own agents). A step that
changes nothing writes nothing, but every step is a transaction, so the net is
coarse and paced: a resync's chunks are spread over half the period instead of
running back to back (tens of thousands of services would otherwise take a core for
seconds, beside the API).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import os
import time

from dockyard.controllers.wake import sleep_until_woken
from dockyard.services.ecs import service_scheduler
from dockyard.services.ecs.service_scheduler import Settings
from dockyard.state import arns
from dockyard.state.store import Store

log = logging.getLogger(__name__)

RESYNC_SECONDS = 300.0
ERROR_RETRY_SECONDS = 5.0
# Steps queued for the group commit at a time. The writer takes writes in arrival order, so a
# resync of every service queued at once put API writes behind all of them: with ~100,000
# services (bench/api_mix.py's CreateService runs) the mix's p99 reached 1.6 s. In chunks, an
# API write waits for one chunk at most.
STEP_CHUNK = 64


def _service_of_deployment(sd_arn: str) -> str | None:
    a = arns.parse(sd_arn)
    if a is None or a.kind != "service-deployment":
        return None
    parts = a.resource.split("/")
    return arns.service(a.region, a.account_id, parts[0], parts[1]) if len(parts) == 3 else None


def _cluster_of_instance(instance_arn: str) -> str | None:
    a = arns.parse(instance_arn)
    if a is None or "/" not in a.resource:
        return None
    return arns.cluster(a.region, a.account_id, a.resource.split("/", 1)[0])


class ServiceController:
    def __init__(self, store: Store, settings: Settings | None = None, resync: float | None = None) -> None:
        self.store = store
        self.settings = settings or Settings.from_env()
        self.resync = resync or float(os.environ.get("DOCKYARD_SERVICE_RESYNC_SECONDS", RESYNC_SECONDS))
        self.dirty: set[str] = set()
        self.dirty_clusters: set[str] = set()
        self.timers: list[tuple[float, str]] = []
        self.due: dict[str, float] = {}
        self.wake = asyncio.Event()
        self.steps = 0  # reconciles run (for benchmarks and tests)
        self.clock = time.monotonic  # a test may drive it
        self.stepped_at: dict[str, float] = {}  # service ARN -> clock() of its last step
        # A resync's services, stepped STEP_CHUNK at a time, one chunk every backlog_gap seconds.
        self.backlog: collections.deque[str] = collections.deque()
        self.backlog_at = self.backlog_since = 0.0
        self.backlog_gap = 0.0

    def on_events(self, events: list[tuple[str, str]]) -> None:
        """store.subscribe callback (on the loop, after a commit)."""
        hit = False
        for topic, key in events:
            if topic in ("service", "service-task"):
                self.dirty.add(key)
                hit = True
            elif topic == "service-stepped":
                # Stepped inside the commit (CreateService): what came before it is seen.
                at, _, arn = key.partition(" ")
                self.dirty.discard(arn)
                self.stepped_at[arn] = self.clock()
                self._schedule(arn, float(at) if at else None)
            elif topic == "service-deployment":
                svc = _service_of_deployment(key)
                if svc:
                    self.dirty.add(svc)
                    hit = True
            elif topic == "container-instance":
                cluster = _cluster_of_instance(key)
                if cluster:
                    self.dirty_clusters.add(cluster)
                    hit = True
        if hit:
            self.wake.set()

    def _schedule(self, arn: str, at: float | None) -> None:
        if at is None:
            return
        if arn in self.due and self.due[arn] <= at:
            return
        self.due[arn] = at
        heapq.heappush(self.timers, (at, arn))

    def _take_due(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            at, arn = heapq.heappop(self.timers)
            if self.due.get(arn) == at:
                del self.due[arn]
                self.dirty.add(arn)

    async def _step(self, arn: str) -> None:
        try:
            nxt = await self.store.write(service_scheduler.reconcile, arn, time.time(), self.settings)
        except Exception:
            log.exception("service scheduler step for %s failed; retrying", arn)
            nxt = time.time() + ERROR_RETRY_SECONDS
        self.steps += 1
        self.stepped_at[arn] = self.clock()
        self._schedule(arn, nxt)

    def _queue_resync(self, now: float) -> None:
        """The services not stepped for a whole period go to the backlog, paced over half of it."""
        live = self.store.read(service_scheduler.live_services)
        kept = set(live)
        self.stepped_at = {a: t for a, t in self.stepped_at.items() if a in kept}  # deleted ones go
        stale = now - self.resync
        self.backlog = collections.deque(a for a in live
                                         if self.stepped_at.get(a, stale) <= stale and a not in self.dirty)
        chunks = -(-len(self.backlog) // STEP_CHUNK)
        self.backlog_gap = self.resync / 2 / max(chunks, 1)
        self.backlog_at = self.backlog_since = now

    async def run(self) -> None:
        self.dirty.update(self.store.read(service_scheduler.live_services))
        next_resync = self.clock() + self.resync
        while True:
            try:
                next_resync = await self._round(next_resync)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service controller round failed; trying again")
                await asyncio.sleep(ERROR_RETRY_SECONDS)

    async def _round(self, next_resync: float) -> float:
        """Wait for work (an event, a timer, the resync), then step every dirty service."""
        if not self.dirty and not self.dirty_clusters:
            now = time.time()
            wait = min(next_resync - self.clock(), (self.timers[0][0] - now) if self.timers else self.resync)
            if self.backlog:
                wait = min(wait, self.backlog_at - self.clock())
            await sleep_until_woken(self.wake, wait)
        mono = self.clock()
        if mono >= next_resync:
            next_resync = mono + self.resync
            self._queue_resync(mono)
        if self.backlog and mono >= self.backlog_at:
            taken = 0
            while self.backlog and taken < STEP_CHUNK:
                arn = self.backlog.popleft()
                if self.stepped_at.get(arn, -1.0) < self.backlog_since:  # not stepped since the resync
                    self.dirty.add(arn)
                    taken += 1
            self.backlog_at = mono + self.backlog_gap
        self._take_due(time.time())
        if self.dirty_clusters:
            clusters, self.dirty_clusters = self.dirty_clusters, set()
            for c in clusters:
                self.dirty.update(self.store.read(service_scheduler.services_in, c))
        batch, self.dirty = sorted(self.dirty), set()
        for i in range(0, len(batch), STEP_CHUNK):
            # A chunk together: their writes share one group commit.
            await asyncio.gather(*(self._step(arn) for arn in batch[i:i + STEP_CHUNK]))
        return next_resync


async def run(store: Store, settings: Settings | None = None) -> None:
    controller = ServiceController(store, settings)
    store.subscribe(controller.on_events)
    await controller.run()


