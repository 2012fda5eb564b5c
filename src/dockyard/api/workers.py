"""The server process's side of its API workers (``api/worker.py``): start, link, adopt, restart.

Each worker gets two socket pairs: the write link (``api/write_link.py``), over which it
sends writes and says when it listens, and a hand-off socket, over which it passes a
connection it does not serve (an agent's websocket, a registry push) together with the
bytes it had read; the server process serves that connection from there (``HttpServer.adopt``).
A worker that dies is started again; the workers stop with the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.api.http1 import HttpServer
from dockyard.api.write_link import WriteDesk

if TYPE_CHECKING:
    from dockyard.services.registry import Operation
    from dockyard.state.store import Store

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_MAX = 30.0  # seconds; a worker that lived less than this counts as a quick death
# Hand-off messages: the first carries the descriptor and the preface's length (4 bytes, little
# endian), the rest of the preface follows in messages of at most this size.
HAND_OFF_CHUNK = 32 * 1024


class _Adoptions:
    """Reads connections handed off by one worker and gives them to the server."""

    def __init__(self, sock: socket.socket, server: HttpServer) -> None:
        self.sock = sock
        self.server = server
        self.fd: int | None = None
        self.need = 0
        self.parts: list[bytes] = []

    def readable(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, HAND_OFF_CHUNK, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:
                self.close()
                return
            if fds:
                if self.fd is not None:  # a worker died mid-message: drop the half
                    os.close(self.fd)
                self.fd, self.need, self.parts = fds[0], int.from_bytes(msg[:4], "little"), []
                msg = msg[4:]
            elif self.fd is None:
                continue
            self.parts.append(msg)
            self.need -= len(msg)
            if self.need <= 0:
                fd, self.fd = self.fd, None
                self.server.adopt(fd, b"".join(self.parts))
                self.parts = []

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not start another API worker: %s", task.exception())


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    desk: WriteDesk
    adoptions: _Adoptions
    started: float  # loop time


class ApiWorkers:
    def __init__(self, store: Store, operations: dict[str, dict[str, Operation]], server: HttpServer,
                 url: str, listener: socket.socket) -> None:
        self.store = store
        self.operations = operations
        self.server = server
        self.url = url
        self.listener = listener
        self.workers: list[_Worker] = []
        self.stopping = False
        self.quick_deaths = 0  # workers in a row that died soon after they started

    async def start(self, count: int) -> None:
        """Start ``count`` workers and wait until each listens."""
        for _ in range(count):
            if self.stopping:  # stopped (Ctrl-C) while starting
                return
            await self._spawn()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        link, link_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        hand, hand_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _, desk = await loop.create_unix_connection(
            lambda: WriteDesk(self.operations, self.store), sock=link)  # type: ignore[arg-type]
        hand.setblocking(False)
        adoptions = _Adoptions(hand, self.server)
        loop.add_reader(hand.fileno(), adoptions.readable)
        fds = (self.listener.fileno(), link_theirs.fileno(), hand_theirs.fileno())
        proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard.api.worker", "--url", self.url, "--listen-fd", str(fds[0]),
             "--link-fd", str(fds[1]), "--hand-off-fd", str(fds[2])], pass_fds=fds)
        link_theirs.close()
        hand_theirs.close()
        worker = _Worker(proc, desk, adoptions, loop.time())
        self.workers.append(worker)
        desk.lost.add_done_callback(lambda _: self._lost(worker))
        await asyncio.wait([desk.ready, desk.lost], timeout=START_TIMEOUT_SECONDS,
                           return_when=asyncio.FIRST_COMPLETED)
        if not desk.ready.done():
            if self.stopping:
                return
            raise RuntimeError(f"API worker {proc.pid} did not start (exit status {proc.poll()})")
        log.info("API worker %d serves %s", proc.pid, self.listener.getsockname())

    def _lost(self, worker: _Worker) -> None:
        worker.adoptions.close()
        if worker in self.workers:
            self.workers.remove(worker)
        if self.stopping:
            return
        status = worker.proc.poll()
        if status is None:
            worker.proc.kill()
        loop = asyncio.get_running_loop()
        # A worker that cannot start (or dies at once) is not restarted in a tight loop.
        self.quick_deaths = self.quick_deaths + 1 if loop.time() - worker.started < RESTART_BACKOFF_MAX else 0
        delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** self.quick_deaths) if self.quick_deaths else 0.0
        log.warning("API worker %d stopped (exit status %s); starting another in %.1f s",
                    worker.proc.pid, status, delay)
        task = loop.create_task(self._respawn(delay))
        task.add_done_callback(_report)

    async def _respawn(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self.stopping:
            await self._spawn()

    def stop(self) -> None:
        """Ask every worker to stop: each answers what it has taken, then exits."""
        self.stopping = True
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.terminate()

    async def wait(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the workers to exit; the writes they forwarded are answered meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for w in list(self.workers):
            while w.proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
