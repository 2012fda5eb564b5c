"""API worker processes hand their writes to the server process, the store's one writer.

A worker (``api/worker.py``) parses, verifies, validates and answers ECS reads itself; a
write goes over a unix socket to the server process as ``[prefix, operation, ctx, input]``
and joins the next group commit there (``Store.submit``), exactly as a write the server
received itself. The answer comes back once the group is durable: the response body, the
AWS error, or a failure. Reads that need the server's own state (ECR's) go the same way
and are answered at once.

Frames: a 9-byte head (payload length, sequence number, kind) and the payload. Frames
given in one loop turn go out in one write, so a group's answers cost one syscall.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from dockyard.api.errors import AwsError, ServerException
from dockyard.services.context import Ctx

if TYPE_CHECKING:
    from dockyard.services.registry import Operation
    from dockyard.state.store import Store

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<IIB")  # payload bytes, sequence number, kind
CALL, OK, AWS_ERROR, FAILED, READY = 0, 1, 2, 3, 4
Done = Callable[[bool, Any], None]


class _Framed(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_soon = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= _HEAD.size:
                size, seq, kind = _HEAD.unpack_from(buf, pos)
                stop = pos + _HEAD.size + size
                if stop > end:
                    break
                self.frame(seq, kind, bytes(view[pos + _HEAD.size:stop]))
                pos = stop
        finally:
            view.release()
        del buf[:pos]

    def frame(self, seq: int, kind: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, seq: int, kind: int, payload: bytes) -> None:
        self._out.append(_HEAD.pack(len(payload), seq, kind))
        self._out.append(payload)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))


class WriteDesk(_Framed):
    """The server process's end: runs each forwarded write in the store's next group."""

    def __init__(self, operations: dict[str, dict[str, Operation]], store: Store) -> None:
        super().__init__()
        self._operations = operations
        self._store = store
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()  # the worker listens
        self.lost = loop.create_future()

    def frame(self, seq: int, kind: int, payload: bytes) -> None:
        if kind == READY:
            if not self.ready.done():
                self.ready.set_result(None)
            return
        try:
            prefix, name, c, req = orjson.loads(payload)
            op = self._operations[prefix][name]
            ctx = Ctx(*c)
        except Exception:
            log.exception("malformed call from an API worker")
            self.send(seq, FAILED, b"")
            return
        if op.write:
            self._store.submit(op.fn, (ctx, req), lambda ok, value: self._answer(seq, ok, value), concurrent=True)
            return
        try:
            value = self._store.read(op.fn, ctx, req, snapshot=op.snapshot)
        except Exception as exc:  # noqa: BLE001  (the error is the answer)
            self._answer(seq, False, exc)
            return
        self._answer(seq, True, value)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def _answer(self, seq: int, ok: bool, value: Any) -> None:
        if ok:
            self.send(seq, OK, value if isinstance(value, bytes) else orjson.dumps(value))
        elif isinstance(value, AwsError):
            self.send(seq, AWS_ERROR, orjson.dumps([value.status, value.code, value.message, value.extra]))
        else:
            log.error("internal error in a forwarded write", exc_info=value)
            self.send(seq, FAILED, b"")


class WriteClient(_Framed):
    """A worker's end: ``submit`` has the server process run a write, ``done`` gets the answer."""

    def __init__(self) -> None:
        super().__init__()
        self._seq = 0
        self._waiting: dict[int, Done] = {}
        self.lost = asyncio.get_running_loop().create_future()

    def listening(self) -> None:
        self.send(0, READY, b"")

    def submit(self, prefix: str, op: Operation, ctx: Ctx, req: dict[str, Any], done: Done) -> None:
        if self.transport is None or self.transport.is_closing():
            done(False, ServerException("The server process is not reachable."))
            return
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self._waiting[seq] = done
        self.send(seq, CALL, orjson.dumps(
            [prefix, op.name, [ctx.account_id, ctx.region, ctx.principal_arn, ctx.request_id, ctx.now,
                               ctx.access_key_id], req]))

    def frame(self, seq: int, kind: int, payload: bytes) -> None:
        done = self._waiting.pop(seq, None)
        if done is None:
            return
        if kind == OK:
            done(True, payload)
        elif kind == AWS_ERROR:
            status, code, message, extra = orjson.loads(payload)
            done(False, AwsError(message, code=code, status=status, extra=extra))
        else:
            done(False, ServerException("Internal error."))

    def connection_lost(self, exc: Exception | None) -> None:
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done(False, ServerException("The server process is not reachable."))
        if not self.lost.done():
            self.lost.set_result(None)
