"""Image pulls under ECS_IMAGE_PULL_BEHAVIOR.

- ``default``: always pull; when the pull fails and the image is cached, use the cache.
- ``always``: always pull; a failed pull fails the container.
- ``once``: pull only if no earlier task on this instance pulled it (or it is no longer
  cached); otherwise use the cache.
- ``prefer-cached``: use the cache when the image is present, else pull.

Concurrent pulls of one image (many tasks starting at once) share a single driver pull.
The set of images this agent pulled (for ``once``) is kept in ``<data_dir>/pulled.json``,
rewritten only when a new image is first pulled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from pathlib import Path

import orjson

from dockyard.agent.drivers.base import Driver, DriverError

log = logging.getLogger("dockyard.agent.pull")

BEHAVIORS = ("default", "always", "once", "prefer-cached")


class ImagePuller:
    def __init__(self, driver: Driver, behavior: str, state_file: Path | None = None) -> None:
        if behavior not in BEHAVIORS:
            raise ValueError(f"pull behavior must be one of {', '.join(BEHAVIORS)}")
        self.driver = driver
        self.behavior = behavior
        self._state_file = state_file
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._pulled: set[str] = set()
        if state_file is not None and behavior == "once":
            try:
                self._pulled = set(orjson.loads(state_file.read_bytes()))
            except (OSError, orjson.JSONDecodeError, TypeError):
                pass

    async def ensure(self, ref: str) -> bool:
        """Make ``ref`` usable; True when a pull was attempted (the task records pull times).

        Raises DriverError("CannotPullContainerError", ...) when the image cannot be had.
        """
        b = self.behavior
        cached_ok = b == "prefer-cached" or (b == "once" and ref in self._pulled)
        if cached_ok and await self.driver.image_present(ref):
            return False
        try:
            await self._pull(ref)
        except DriverError:
            if b == "default" and await self.driver.image_present(ref):
                log.info("pulling %s failed; using the cached image", ref)
                return True
            raise
        return True

    async def _pull(self, ref: str) -> None:
        fut = self._inflight.get(ref)
        if fut is None:
            fut = asyncio.ensure_future(self.driver.pull(ref))
            self._inflight[ref] = fut
            fut.add_done_callback(functools.partial(self._done, ref))
        # Shielded: one waiting task being cancelled must not cancel the others' pull.
        await asyncio.shield(fut)

    def _done(self, ref: str, fut: asyncio.Future[None]) -> None:
        if self._inflight.get(ref) is fut:
            del self._inflight[ref]
        if fut.cancelled():
            return
        if fut.exception() is None and ref not in self._pulled:
            self._pulled.add(ref)
            if self.behavior == "once":
                self._save()

    def _save(self) -> None:
        if self._state_file is None:
            return
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(sorted(self._pulled)))
            os.replace(tmp, self._state_file)
        except OSError as e:
            log.warning("cannot record pulled images in %s: %s", self._state_file, e)
