"""The scan controller: runs ECR basic scans (StartImageScan, scanOnPush).

Event-driven: ``ecr-image`` (an image was put or deleted) starts the scan of a pushed image when
its repository has scanOnPush (and drops the scan of a deleted one); ``ecr-scan`` (a scan was
marked IN_PROGRESS) runs it. At start every IN_PROGRESS scan is run again (a scan interrupted by
a restart). Reading the layers and matching run in threads (``asyncio.to_thread``); the store
reads and writes stay on the loop. At most ``CONCURRENCY`` scans run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dockyard.registry.blobs import BlobStore
from dockyard.scan import advisories
from dockyard.scan.inventory import InventoryError, scan_layers
from dockyard.scan.matcher import match
from dockyard.services.ecr import scanning
from dockyard.state.store import Store

log = logging.getLogger(__name__)

CONCURRENCY = 2
UNSUPPORTED = "The operating system and/or package manager are not supported."


def _split(key: str) -> tuple[str, str] | None:
    arn, sep, digest = key.rpartition("@")
    return (arn, digest) if sep and arn and digest else None


class ScanController:
    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs
        self.pushed: set[tuple[str, str]] = set()
        self.scans: set[tuple[str, str]] = set()
        self.running: set[tuple[str, str]] = set()
        self.again: set[tuple[str, str]] = set()
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = 0  # scans finished (for tests)

    def on_events(self, events: list[tuple[str, str]]) -> None:
        """store.subscribe callback (on the loop, after a commit)."""
        hit = False
        for topic, key in events:
            if topic in ("ecr-image", "ecr-scan"):
                k = _split(key)
                if k is not None:
                    (self.pushed if topic == "ecr-image" else self.scans).add(k)
                    hit = True
        if hit:
            self.wake.set()

    async def run(self) -> None:
        self.scans.update(self.store.read(scanning.in_progress))
        try:
            while True:
                if not self.pushed and not self.scans:
                    self.wake.clear()
                    await self.wake.wait()
                pushed, self.pushed = self.pushed, set()
                for arn, digest in sorted(pushed):
                    try:
                        if self.store.read(scanning.image_event_needs_write, arn, digest):
                            await self.store.write(scanning.on_image_event, arn, digest, time.time())
                    except Exception:
                        log.exception("scanOnPush check of %s@%s failed", arn, digest)
                scans, self.scans = self.scans, set()
                for k in sorted(scans):
                    if k in self.running:
                        self.again.add(k)  # a newer StartImageScan: run once more after this one
                        continue
                    self.running.add(k)
                    t = asyncio.get_running_loop().create_task(self._scan(*k))
                    self.tasks.add(t)
                    t.add_done_callback(self.tasks.discard)
        finally:
            for t in list(self.tasks):
                t.cancel()

    async def _scan(self, arn: str, digest: str) -> None:
        try:
            async with self.slots:
                await self.scan(arn, digest)
        finally:
            self.running.discard((arn, digest))
            if (arn, digest) in self.again:
                self.again.discard((arn, digest))
                self.scans.add((arn, digest))
                self.wake.set()

    async def scan(self, arn: str, digest: str) -> None:
        job = self.store.read(scanning.scan_job, arn, digest)
        if job is None:
            return
        started, layers = job
        failure: str | None = None
        status = "FAILED"
        findings = None
        source_at = None
        try:
            paths = [self.blobs.path(d) for d in layers]
            missing = [d for d, p in zip(layers, paths, strict=True) if not p.exists()]
            if missing:
                raise InventoryError(f"layers not found: {', '.join(missing)}")
            inv = await asyncio.to_thread(scan_layers, paths)
            if not inv.packages and inv.os_ecosystem is None:
                failure, status = UNSUPPORTED, "UNSUPPORTED_IMAGE"
            else:
                found = self.store.read(advisories.for_packages,
                                        [(p.ecosystem, p.name) for p in inv.packages])
                source_at = self.store.read(advisories.updated_at)
                findings = await asyncio.to_thread(match, inv.packages, found)
        except asyncio.CancelledError:
            raise
        except InventoryError as e:
            failure = f"Unable to read the image's layers: {e}"
        except Exception as e:
            log.exception("scan of %s@%s failed", arn, digest)
            failure = f"The scan failed: {type(e).__name__}"
        try:
            await self.store.write(scanning.finish_scan, arn, digest, started, time.time(), findings,
                                   source_at, failure, status)
        except Exception:
            log.exception("recording the scan of %s@%s failed", arn, digest)
        self.done += 1


async def run(store: Store, blobs: BlobStore) -> None:
    controller = ScanController(store, blobs)
    store.subscribe(controller.on_events)
    await controller.run()
