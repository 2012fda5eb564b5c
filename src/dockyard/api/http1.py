"""Dockyard's HTTP/1.1 server: uvloop + httptools on the event loop, no other threads.

Why our own: an AWS JSON call is a small request answered by a small response, and
the store runs on this loop. A generic server hands each request to a coroutine
and, in granian's case, every body read and response through its own threads:
measured here, a hello world cost 41 µs of CPU per request on granian's RSGI
(13 µs of it the awaited body) against 11 µs on a plain ``asyncio.Protocol`` fed
by httptools (bench/README.md). So a request is parsed in ``data_received`` and,
once its body is complete, answered in the same call when the application can
(reads); a write's answer follows when its group commit is durable.

The application sees two interfaces:

- ``app.respond(method, path, query, headers, body)`` for buffered requests: a
  ``(status, headers, body)`` tuple, a ``Later`` that gives one, or an awaitable of one.
- ``app(scope, proto)``, a subset of RSGI (what granian offered), for requests
  whose body is streamed (``app.streams(path)``: the registry's blob uploads) and
  for websocket upgrades (the agent channel). ``proto`` is ``_Stream`` or ``_WsProto``.

Responses leave in request order (HTTP/1.1 pipelining): each request takes a slot
in its connection's queue and a slot is written once every earlier one is. A request
pipelined behind one whose answer comes later (a write) is only taken once that answer
is in: a connection's requests act in the order they were sent, so the store may order
the writes of one group commit freely (they come from different connections).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any, Protocol

import httptools
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side, State

log = logging.getLogger("dockyard.http")

Response = tuple[int, list[tuple[str, str]], bytes]

# A buffered request body past this is refused (413): ECS/ECR JSON calls are at most a few
# hundred KiB; registry uploads are streamed and take no part in it.
MAX_BUFFERED_BODY = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
# A streamed body holds at most this much unread before the socket stops being read.
STREAM_HIGH_WATER = 1024 * 1024
FILE_CHUNK = 256 * 1024
# Requests pipelined behind an unanswered one that are parsed before the connection stops reading.
MAX_HELD = 32
WS_MAX_MESSAGE = 64 * 1024 * 1024
# A connection that sends nothing for this long is closed: mid-request (a stalled or trickled
# header or body) with a 408, between requests quietly. Not while the server still owes it an
# answer, nor a websocket (the agent channel has its own heartbeat).
REQUEST_IDLE_SECONDS = 60.0
KEEPALIVE_IDLE_SECONDS = 300.0
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
            204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
            304: "Not Modified", 307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
            411: "Length Required", 413: "Payload Too Large", 416: "Range Not Satisfiable",
            429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable"}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {text}\r\n".encode() for code, text in _REASONS.items()}


class Later:
    """A response that is given later by a callback (``give``), not by a coroutine: a write is
    answered when its group commit is durable, and a Task per request cost more than this.
    Awaitable too, for callers that want a coroutine (``App.http``)."""

    __slots__ = ("_then", "_value")

    def __init__(self) -> None:
        self._then: Callable[[Response], None] | None = None
        self._value: Response | None = None

    def then(self, fn: Callable[[Response], None]) -> None:
        if self._value is not None:
            fn(self._value)
        else:
            self._then = fn

    def give(self, value: Response) -> None:
        if self._then is not None:
            self._then(value)
        else:
            self._value = value

    def __await__(self) -> Any:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def settle(value: Response) -> None:
            if not fut.done():  # the awaiting task may have been cancelled meanwhile
                fut.set_result(value)
        self.then(settle)
        return fut.__await__()


class App(Protocol):
    def respond(self, method: str, path: str, query: str, headers: Any,
                body: bytes) -> Response | Later | Awaitable[Response]: ...

    def streams(self, path: str) -> bool: ...

    def serves(self, scope: Scope) -> bool: ...

    async def __call__(self, scope: Any, proto: Any) -> None: ...


_date_line = (0, b"")


def _date() -> bytes:
    """The Date header (RFC 9110 §6.6.1: a server with a clock sends it; AWS does, and botocore
    corrects its clock skew from it), formatted once a second."""
    global _date_line
    now = int(time.time())
    if now != _date_line[0]:
        _date_line = (now, f"date: {formatdate(now, usegmt=True)}\r\n".encode())
    return _date_line[1]


def _head(status: int, headers: list[tuple[str, str]], length: int | None, close: bool) -> bytes:
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode()
    parts = [line, _date()]
    has_length = False
    for k, v in headers:
        if k == "content-length":
            has_length = True
        parts.append(f"{k}: {v}\r\n".encode("latin-1"))
    if length is not None and not has_length:
        parts.append(b"content-length: %d\r\n" % length)
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class Headers:
    """Request headers by lower-case name; repeated names are joined with "," (RFC 9110, and
    SigV4's canonical form). ``items()`` gives every header as received."""

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self._raw = raw
        m: dict[str, str] = {}
        for k, v in raw:
            m[k] = f"{m[k]},{v}" if k in m else v
        self._map = m

    def get(self, key: str, default: Any = None) -> Any:
        return self._map.get(key, default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._raw)


class Scope:
    """What an RSGI handler reads of a request."""

    __slots__ = ("headers", "method", "path", "proto", "query_string")

    def __init__(self, proto: str, method: str, path: str, query: str, headers: Headers) -> None:
        self.proto = proto
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = headers


class _Slot:
    """One request's place in its connection's response order."""

    __slots__ = ("data", "done", "file", "head_only")

    def __init__(self, head_only: bool) -> None:
        self.head_only = head_only
        self.data: bytes | None = None
        self.file: tuple[str, int, int] | None = None
        self.done = False


class _HandOff(Exception):
    """Raised from a parser callback: the connection goes to the server process."""


class _Conn(asyncio.Protocol):
    """One client connection: the httptools parser's callbacks and the response queue."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.raw_headers: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_len = 0
        self.scope: Scope | None = None
        self.stream: _Stream | None = None
        self.too_large = False
        self.slots: deque[_Slot] = deque()
        self.close_after: _Slot | None = None
        self.closed = False
        self.writing_file = False
        self.write_paused = False
        self.drained: asyncio.Event | None = None
        self.ws: _WsProto | None = None
        self.failed = False  # answered with an error; what follows on the connection is ignored
        self.out: list[bytes] = []  # deferred answers (see _defer)
        self.last_rx = 0.0
        self.in_request = False
        self.reading_paused = False  # by a streamed body's back-pressure
        self.waiting: _Slot | None = None  # the request whose answer comes later (a write)
        self.held: deque[tuple[Scope, bytes, _Slot]] = deque()  # requests pipelined behind it
        self.held_paused = False  # reading paused: MAX_HELD requests are held
        self.timer: asyncio.TimerHandle | None = None
        # In an API worker: the bytes of the connection's first request, kept until its headers
        # show whether this process serves it or hands the connection to the server process.
        self.first: bytearray | None = bytearray() if server.hand_off is not None else None
        self.handing = False
        self.preface = b""  # adopted from a worker: what it had read, fed before the socket's bytes

    # -- connection -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.conns.add(self)
        self.last_rx = self.loop.time()
        self.timer = self.loop.call_later(REQUEST_IDLE_SECONDS, self._check_idle)
        if self.preface:
            preface, self.preface = self.preface, b""
            self.data_received(preface)

    def _check_idle(self) -> None:
        """The idle timer: re-armed when it fires rather than on every read (no per-request cost)."""
        self.timer = None
        if self.closed or self.ws is not None:
            return
        limit = REQUEST_IDLE_SECONDS if self.in_request else KEEPALIVE_IDLE_SECONDS
        wait = self.last_rx + limit - self.loop.time()
        # between requests, an answer still on its way keeps the connection
        if wait <= 0 and not self.reading_paused and (self.in_request or not self.slots):
            if self.stream is not None and self.in_request:
                # a streamed body stalled: its handler sees the error; its answer cannot be sent
                self.stream.feed_eof(TimeoutError("the request body stopped arriving"))
                self._close()
            elif self.in_request:
                self._fail(408)
            else:
                self._close()
            return
        self.timer = self.loop.call_later(wait if wait > 0 else limit, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.conns.discard(self)
        if self.stream is not None:
            self.stream.feed_eof(ConnectionResetError("client disconnected"))
        if self.ws is not None:
            self.ws.lost()
        if self.drained is not None:
            self.drained.set()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None:
            self.drained.set()

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            self.drained = asyncio.Event()
            await self.drained.wait()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        if self.ws is not None:
            self.ws.feed(data)
            return
        if self.failed:
            return
        if self.first is not None:
            self.first += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            # on_message_complete has run and handed the connection to a websocket
            if self.ws is not None:
                rest = data[up.args[0]:] if up.args else b""
                if rest:
                    self.ws.feed(rest)
        except httptools.HttpParserError:
            if self.handing:
                self._hand_off()
            else:
                self._fail(400)

    def _hand_off(self) -> None:
        """Give the connection, with the bytes read so far, to the server process."""
        assert self.transport is not None and self.first is not None and self.server.hand_off is not None
        self.failed = True  # nothing more is read or answered here
        fd = os.dup(self.transport.get_extra_info("socket").fileno())
        raw, self.first = bytes(self.first), None
        # Closing this descriptor leaves the connection open: the duplicate holds it.
        self.transport.abort()
        self.server.hand_off(fd, raw)

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.feed_eof()
        return None

    def _fail(self, status: int) -> None:
        """Answer a request that cannot be parsed or taken, and end the connection after it."""
        if self.failed:
            return
        self.failed = True
        slot = _Slot(False)
        self.slots.append(slot)
        self.close_after = slot
        body = b'{"message":"' + _REASONS.get(status, "Error").encode() + b'"}'
        self._finish(slot, status, [("content-type", "application/json")], body)
        if self.transport is not None:
            self.transport.pause_reading()

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_request = True
        self.url = b""
        self.raw_headers = []
        self.header_bytes = 0
        self.body = []
        self.body_len = 0
        self.too_large = False
        self.scope = None
        self.stream = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError("headers too large")
        self.raw_headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        raw = self.url.decode("latin-1")
        path, _, query = raw.partition("?")
        headers = Headers(self.raw_headers)
        method = self.parser.get_method().decode("ascii")
        self.scope = Scope("http", method, path, query, headers)
        if self.first is not None:
            if not self.app.serves(self.scope):
                self.handing = True
                raise _HandOff  # ends feed_data; data_received hands the connection over
            self.first = None
        expect = headers.get("expect")
        if self.parser.should_upgrade():
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BUFFERED_BODY \
                and not self.app.streams(path):
            self._fail(413)  # before the body: the client need not send it
            return
        if self.app.streams(path):
            self.stream = _Stream(self, self.scope, _Slot(method == "HEAD"))
            self.slots.append(self.stream.slot)
            if expect is not None and expect.lower() == "100-continue":
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.stream.start()
        elif expect is not None and expect.lower() == "100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        if self.failed:
            return
        if self.stream is not None:
            self.stream.feed(data)
            return
        self.body_len += len(data)
        if self.body_len > MAX_BUFFERED_BODY:
            self.too_large = True
            self.body = []
            return
        if not self.too_large:
            self.body.append(data)

    def on_message_complete(self) -> None:
        self.in_request = False
        scope = self.scope
        if self.failed or scope is None:
            return
        keep = self.parser.should_keep_alive()
        if self.parser.should_upgrade():
            self._upgrade(scope)
            return
        if self.stream is not None:
            self.stream.feed_eof(None)
            if not keep:
                self.close_after = self.stream.slot
            return
        if self.too_large:
            self._fail(413)
            return
        slot = _Slot(scope.method == "HEAD")
        self.slots.append(slot)
        if not keep:
            self.close_after = slot
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body = []
        if self.waiting is not None:
            # Pipelined behind a request still waiting for its answer (a write before its commit):
            # taken once that answer is in, so a connection's requests act in the order sent.
            self.held.append((scope, body, slot))
            if len(self.held) >= MAX_HELD and self.transport is not None and not self.held_paused:
                self.transport.pause_reading()
                self.held_paused = True
            return
        self._dispatch(scope, body, slot)

    def _dispatch(self, scope: Scope, body: bytes, slot: _Slot) -> None:
        try:
            r = self.app.respond(scope.method, scope.path, scope.query_string, scope.headers, body)
        except Exception:
            log.exception("unhandled error on %s %s", scope.method, scope.path)
            self._finish(slot, 500, [("content-type", "application/json")], b'{"message":"Internal error."}')
            return
        if isinstance(r, tuple):
            self._finish(slot, *r)
            return
        self.waiting = slot
        if isinstance(r, Later):
            r.then(functools.partial(self._given, slot))
        else:
            fut: asyncio.Future[Response] = asyncio.ensure_future(r)
            fut.add_done_callback(functools.partial(self._finished, slot))

    def _finished(self, slot: _Slot, fut: asyncio.Future[Response]) -> None:
        try:
            r = fut.result()
        except BaseException:
            log.exception("unhandled error in a response")
            r = (500, [("content-type", "application/json")], b'{"message":"Internal error."}')
        self._given(slot, r)

    def _given(self, slot: _Slot, r: Response) -> None:
        self._finish(slot, *r)
        if self.waiting is slot:
            self.waiting = None
            while self.held and self.waiting is None and not self.closed:
                self._dispatch(*self.held.popleft())
            if self.held_paused and not self.held and self.transport is not None:
                self.held_paused = False
                if not self.reading_paused:
                    self.transport.resume_reading()

    # -- responses --------------------------------------------------------------------------------
    def _finish(self, slot: _Slot, status: int, headers: list[tuple[str, str]], body: bytes,
                file: tuple[str, int, int] | None = None) -> None:
        """The answer for ``slot``: a body, or (``file``) a range of a file sent after the head.
        A HEAD's answer carries the length (or the content-length given) without the body."""
        head = _head(status, headers, len(body) if file is None else file[2] - file[1], slot is self.close_after)
        if slot.head_only:
            slot.data = head
        else:
            slot.data = head + body if body else head
            slot.file = file
        slot.done = True
        self._flush()

    def _flush(self) -> None:
        while self.slots and self.slots[0].done and not self.writing_file:
            slot = self.slots.popleft()
            if slot.data:
                self._defer(slot.data)
            if slot.file is not None:
                self.writing_file = True
                self.loop.create_task(self._send_file(slot))
                return
            if slot is self.close_after:
                self._close()
                return

    async def _send_file(self, slot: _Slot) -> None:
        assert slot.file is not None
        path, start, end = slot.file
        try:
            with open(path, "rb") as f:
                pos = start
                while pos < end and not self.closed:
                    chunk = os.pread(f.fileno(), min(FILE_CHUNK, end - pos), pos)
                    if not chunk:
                        break
                    self._write(chunk)
                    pos += len(chunk)
                    await self.drain()
            if pos < end:
                self._close()  # the file shrank under us: the client must not wait for the rest
        except OSError:
            log.exception("sending %s failed", path)
            self._close()
        finally:
            self.writing_file = False
        if slot is self.close_after:
            self._close()
        elif not self.closed:
            self._flush()

    def _defer(self, data: bytes) -> None:
        """Queue a response for the end of this loop turn (``HttpServer.send_deferred``): the
        answers to every request that arrived together leave back to back, so a client waiting
        on several connections is woken once rather than once per answer. Measured: the
        loopback send of a lone answer cost the loop ~26 µs, most of it waking the reader."""
        if self.closed or self.transport is None:
            return
        if not self.out:
            self.server.deferred.append(self)
            if len(self.server.deferred) == 1:
                self.loop.call_soon(self.server.send_deferred)
        self.out.append(data)

    def send_out(self) -> None:
        if self.out:
            data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
            self.out = []
            if not self.closed and self.transport is not None:
                self.transport.write(data)

    def _write(self, data: bytes) -> None:
        """Write now, after anything deferred (websocket frames, file chunks, 100 Continue)."""
        if not self.closed and self.transport is not None:
            if self.out:
                self.send_out()
            self.transport.write(data)

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.send_out()
            self.closed = True
            self.transport.close()

    # -- websockets -------------------------------------------------------------------------------
    def _upgrade(self, scope: Scope) -> None:
        if (scope.headers.get("upgrade") or "").lower() != "websocket" or not scope.headers.get("sec-websocket-key"):
            self._fail(400)
            return
        ws_scope = Scope("ws", scope.method, scope.path, scope.query_string, scope.headers)
        self.ws = _WsProto(self, ws_scope)
        self.ws.start()


class _Stream:
    """RSGI ``proto`` for a request whose body is streamed to the handler (registry uploads)."""

    def __init__(self, conn: _Conn, scope: Scope, slot: _Slot) -> None:
        self.conn = conn
        self.scope = scope
        self.slot = slot
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.responded = False

    def start(self) -> None:
        self.conn.server.run_handler(self.scope, self, self._after)

    def _after(self) -> None:
        if not self.responded:
            self.response_bytes(500, [("content-type", "application/json")], b'{"message":"Internal error."}')

    # body in
    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > STREAM_HIGH_WATER and self.conn.transport is not None:
            self.conn.transport.pause_reading()
            self.conn.reading_paused = True
        self._wake()

    def feed_eof(self, error: Exception | None) -> None:
        self.eof = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.conn.reading_paused and self.buffered <= STREAM_HIGH_WATER // 2 \
                        and self.conn.transport is not None and not self.conn.closed:
                    self.conn.transport.resume_reading()
                    self.conn.reading_paused = False
                    self.conn.last_rx = self.conn.loop.time()
                yield chunk
                continue
            if self.eof:
                if self.error is not None:
                    raise self.error
                return
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None

    async def __call__(self) -> bytes:
        return b"".join([c async for c in self])

    # response out
    def _respond(self) -> None:
        if self.responded:
            raise RuntimeError("response already sent")
        self.responded = True

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._respond()
        self.conn._finish(self.slot, status, headers, body)

    def response_file_range(self, status: int, headers: list[tuple[str, str]], path: str, start: int,
                            end: int) -> None:
        """``end`` is exclusive."""
        self._respond()
        self.conn._finish(self.slot, status, headers, b"", (path, start, end))


class WsMessage:
    """A websocket message as RSGI gives it (granian's, which this server replaced): ``kind`` 0 close,
    1 bytes, 2 str."""

    __slots__ = ("data", "kind")

    def __init__(self, kind: int, data: bytes | str | None) -> None:
        self.kind = kind
        self.data = data


_WS_CLOSED = WsMessage(0, None)


class _WsProto:
    """RSGI websocket ``proto`` (and, once accepted, its transport): ``accept``, ``receive``,
    ``send_str``/``send_bytes``, ``close``. Framing, masking, ping/pong and the closing
    handshake are the ``websockets`` library's sans-I/O protocol."""

    def __init__(self, conn: _Conn, scope: Scope) -> None:
        self.conn = conn
        self.scope = scope
        self.accepted = False
        self.finished = False
        self.proto = WsProtocol(Side.SERVER, state=State.OPEN, max_size=WS_MAX_MESSAGE)
        self.inbox: deque[WsMessage] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.parts: list[bytes] = []
        self.part_kind = 0
        self.pending: list[bytes] = []  # bytes that arrived before accept()

    def start(self) -> None:
        self.conn.server.run_handler(self.scope, self, self._after)

    def _after(self) -> None:
        if not self.finished:
            self.close(1011 if self.accepted else 500)

    async def accept(self) -> _WsProto:
        if self.finished or self.conn.closed:
            raise ConnectionResetError("client disconnected")
        key = self.scope.headers.get("sec-websocket-key", "").strip().encode()
        digest = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()  # RFC 6455
        self.conn._write(_head(101, [("upgrade", "websocket"), ("connection", "Upgrade"),
                                     ("sec-websocket-accept", digest)], None, False))
        self.accepted = True
        pending, self.pending = self.pending, []
        for data in pending:
            self.feed(data)
        return self

    def close(self, status: int | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if not self.accepted:
            # before the upgrade: an HTTP answer with that status
            self.conn._write(_head(status or 403, [], 0, True))
            self.conn._close()
            return
        if self.proto.state is State.OPEN:
            self.proto.send_close(status or 1000)
        self._send_pending()
        self.conn._close()

    # frames in
    def feed(self, data: bytes) -> None:
        if not self.accepted:
            self.pending.append(data)
            return
        self.proto.receive_data(data)
        self._take_events()

    def feed_eof(self) -> None:
        if self.accepted:
            self.proto.receive_eof()
            self._take_events()
        self.lost()

    def lost(self) -> None:
        self.inbox.append(_WS_CLOSED)
        self._wake()

    def _take_events(self) -> None:
        for frame in self.proto.events_received():
            if not isinstance(frame, Frame):
                continue
            op = frame.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                self.part_kind = 2 if op is Opcode.TEXT else 1
                self.parts = [bytes(frame.data)]
            elif op is Opcode.CONT:
                self.parts.append(bytes(frame.data))
            elif op is Opcode.CLOSE:
                self.inbox.append(_WS_CLOSED)
                continue
            else:
                continue  # ping/pong: the protocol answers pings itself
            if frame.fin:
                data = b"".join(self.parts)
                self.parts = []
                self.inbox.append(WsMessage(self.part_kind, data.decode() if self.part_kind == 2 else data))
        self._send_pending()
        if self.proto.close_expected() or self.proto.state is State.CLOSED:
            self.inbox.append(_WS_CLOSED)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> WsMessage:
        while not self.inbox:
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None
        msg = self.inbox.popleft()
        if msg is _WS_CLOSED:
            self.inbox.appendleft(msg)  # every later receive() sees the close too
        return msg

    # frames out
    def _send_pending(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.conn._write(data)

    async def send_str(self, text: str) -> None:
        await self._send(lambda: self.proto.send_text(text.encode()))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(lambda: self.proto.send_binary(data))

    async def _send(self, frame: Callable[[], None]) -> None:
        if self.finished or self.conn.closed or self.proto.state is not State.OPEN:
            raise ConnectionResetError("websocket closed")
        frame()
        self._send_pending()
        await self.conn.drain()


class HttpServer:
    """Serves ``app`` on ``host:port`` until ``stop()``."""

    def __init__(self, app: App, host: str, port: int | None, backlog: int = 1024,
                 sock: socket.socket | None = None, hand_off: Callable[[int, bytes], None] | None = None) -> None:
        """``sock``: accept on this listening socket instead of binding ``host:port``. ``port`` None
        (and no ``sock``): listen nowhere, serve only connections given to ``adopt``. ``hand_off``
        (an API worker's): where connections whose first request ``app.serves`` declines go."""
        self.app = app
        self.sock = sock
        self.hand_off = hand_off
        self.host = host
        self.port = port
        self.backlog = backlog
        self.loop = asyncio.get_running_loop()
        self.conns: set[_Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.deferred: list[_Conn] = []
        self._server: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()

    def run_handler(self, scope: Scope, proto: Any, after: Callable[[], None]) -> None:
        """``app(scope, proto)`` as a task the server keeps (and cancels when it stops); ``after``
        answers for a handler that ended, or failed, without answering."""
        async def run() -> None:
            try:
                await self.app(scope, proto)
            except Exception:
                log.exception("unhandled error in the %s handler for %s %s", scope.proto, scope.method, scope.path)
            after()

        task = self.loop.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_deferred(self) -> None:
        conns, self.deferred = self.deferred, []
        for conn in conns:
            conn.send_out()

    def adopt(self, fd: int, preface: bytes) -> None:
        """Serve a connection a worker accepted, starting with the bytes it had read."""
        conn = _Conn(self)
        conn.preface = preface
        async def connect() -> None:
            await self.loop.connect_accepted_socket(lambda: conn, socket.socket(fileno=fd))

        task = self.loop.create_task(connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        if self.sock is not None:
            self._server = await self.loop.create_server(lambda: _Conn(self), sock=self.sock, backlog=self.backlog)
        elif self.port is not None:
            self._server = await self.loop.create_server(lambda: _Conn(self), self.host, self.port,
                                                         backlog=self.backlog, reuse_address=True)

    def bound(self) -> Any:
        """The address the server listens on."""
        sockets = getattr(self._server, "sockets", None)  # asyncio.Server's (AbstractServer has none)
        assert sockets
        return sockets[0].getsockname()

    async def serve(self) -> None:
        if self._server is None:
            await self.start()
        await self._stopped.wait()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns):
            # idle keep-alive connections go now; one with a response on its way finishes it
            if not conn.slots and conn.ws is None and conn.stream is None:
                conn._close()
        self._stopped.set()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the responses still on their way, then close what is left."""
        deadline = self.loop.time() + timeout
        # websockets get a moment to send what their handlers queued (the agents' close frames)
        ws_deadline = self.loop.time() + min(timeout, 1.0)
        while self.loop.time() < deadline and (
                any(c.slots for c in self.conns)
                or (any(c.ws is not None for c in self.conns) and self.loop.time() < ws_deadline)):
            await asyncio.sleep(0.01)
        for conn in list(self.conns):
            conn._close()
        for task in list(self.tasks):
            task.cancel()
