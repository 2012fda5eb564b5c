"""An API worker process: serves the AWS JSON APIs on the server's port beside it.

``dockyard server --api-workers N`` starts N of these (``api/workers.py``). They accept on
the server's listening socket (the server process itself does not accept then), verify,
parse and validate every AWS JSON call, answer ECS reads from its own store connection
(SQLite's WAL shows every commit to readers in other processes), and hand writes, and the
reads that need the server's state, to the server process, the store's one writer, over
``api/write_link.py``. A connection that is not an AWS call (an agent's websocket, a registry
push) goes to the server process whole. So the HTTP and JSON work of every request, and all
of an ECS read, run beside the writer, on another core.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvloop

from dockyard.api.http1 import HttpServer
from dockyard.api.workers import HAND_OFF_CHUNK
from dockyard.api.write_link import WriteClient
from dockyard.state.store import Store

log = logging.getLogger("dockyard.worker")

ECS_SIGNING_NAME = "ecs"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGTERM when the server process dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)


def _hand_off_to(sock: socket.socket) -> Callable[[int, bytes], None]:
    def hand_off(fd: int, preface: bytes) -> None:
        first = HAND_OFF_CHUNK - 4
        try:
            socket.send_fds(sock, [len(preface).to_bytes(4, "little") + preface[:first]], [fd])
            for i in range(first, len(preface), HAND_OFF_CHUNK):
                sock.send(preface[i:i + HAND_OFF_CHUNK])
        except OSError:
            log.warning("could not hand a connection to the server process", exc_info=True)
        finally:
            os.close(fd)
    return hand_off


async def serve(url: str, listen_fd: int, link_fd: int, hand_off_fd: int) -> None:
    from dockyard.api.server import build_app

    loop = asyncio.get_running_loop()
    app = build_app(Store(url))
    _, link = await loop.create_unix_connection(WriteClient, sock=socket.socket(fileno=link_fd))
    for protocol in app.by_prefix.values():
        protocol.forward = link.submit
        protocol.forward_reads = protocol.signing_name != ECS_SIGNING_NAME
    hand = socket.socket(fileno=hand_off_fd)
    hand.setblocking(True)
    gc.collect()
    gc.freeze()
    listener = socket.socket(fileno=listen_fd)
    host, port = listener.getsockname()[:2]
    server = HttpServer(app, host, port, sock=listener, hand_off=_hand_off_to(hand))
    await server.start()
    loop.add_signal_handler(signal.SIGTERM, server.stop)
    # Without the server process there is no writer: stop with it.
    link.lost.add_done_callback(lambda _: server.stop())
    link.listening()
    await server.serve()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dockyard-api-worker", description="started by `dockyard server --api-workers`")
    p.add_argument("--url", required=True)
    p.add_argument("--listen-fd", type=int, required=True)
    p.add_argument("--link-fd", type=int, required=True)
    p.add_argument("--hand-off-fd", type=int, required=True)
    args = p.parse_args(argv)
    _die_with_parent()
    # The server process stops its workers (SIGTERM) once it is stopping itself: a Ctrl-C in a
    # terminal, which reaches the whole process group, must not end a worker first (the server
    # would start another). Ignored before the loop starts: the listening socket already queues
    # connections, so the worker may answer as soon as its loop runs, and asyncio's runner
    # would put its own SIGINT handler in place of the default one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    sys.setswitchinterval(0.0005)
    uvloop.run(serve(args.url, args.listen_fd, args.link_fd, args.hand_off_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
