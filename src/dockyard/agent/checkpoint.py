"""Task checkpoints on disk, written off the event loop.

One JSON file per task (``<dir>/<task id>.json``), replaced atomically (temporary file +
rename), never fsynced: the containers' labels carry their identity, and a checkpoint lost
in a crash is rebuilt from the next full payload. Renaming over an existing file costs
ext4 a flush of the data (auto_da_alloc), hundreds of microseconds: too much for the
loop that starts a thousand tasks a second. So writes and deletes go to one writer
thread shared by every engine of the process; the loop only serialises and enqueues.
Per file, the last request wins and requests are applied in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("dockyard.agent.checkpoint")


class _Writer:
    """The process's checkpoint writer thread (started on first use)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[Path, bytes | None] = {}  # None: delete
        self._busy = False
        self._thread: threading.Thread | None = None

    def put(self, path: Path, data: bytes | None) -> None:
        with self._cond:
            self._pending.pop(path, None)  # keep request order: the newest goes last
            self._pending[path] = data
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dockyard-checkpoints", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        """Block until everything requested so far is on disk (not fsynced)."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                batch, self._pending = self._pending, {}
                self._busy = True
            for path, data in batch.items():
                try:
                    if data is None:
                        path.unlink(missing_ok=True)
                    else:
                        tmp = path.with_name(path.name + ".tmp")
                        try:
                            tmp.write_bytes(data)
                        except FileNotFoundError:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            tmp.write_bytes(data)
                        os.replace(tmp, path)
                except OSError as e:
                    log.warning("checkpoint %s: %s", path, e)


_writer = _Writer()


class CheckpointStore:
    """The checkpoints of one engine, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{_safe(key)}.json"

    def save(self, key: str, doc: dict[str, Any]) -> None:
        _writer.put(self.path(key), orjson.dumps(doc))

    def delete(self, key: str) -> None:
        _writer.put(self.path(key), None)

    async def flush(self) -> None:
        await asyncio.to_thread(_writer.flush)

    def load(self) -> list[dict[str, Any]]:
        """Every readable checkpoint (unreadable ones are skipped with a warning)."""
        out: list[dict[str, Any]] = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return out
        for path in paths:
            try:
                doc = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as e:
                log.warning("ignoring the unreadable checkpoint %s: %s", path, e)
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
