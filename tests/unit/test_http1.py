"""api/http1.py: HTTP/1.1 as clients speak it (keep-alive, pipelining, HEAD, 100-continue, chunked
uploads, limits) and the RSGI subset the registry and the agent channel use (streamed bodies, file
ranges, websockets). In-process, on loopback, with a small app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import websockets

from dockyard.api import http1
from dockyard.api.http1 import HttpServer

Response = tuple[int, list[tuple[str, str]], bytes]


class _App:
    """POST /slow/N answers after N ms from a coroutine, /later/N by a ``Later`` (a write waiting
    for its commit); anything else at once.
    Paths under /v2 stream: /v2/upload echoes the body's size, /v2/file serves a file range."""

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self.seen: list[tuple[str, str, str, bytes]] = []
        self.ws_messages: list[Any] = []

    def respond(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response | Any:
        self.seen.append((method, path, query, body))
        out = f"{method} {path} {query} {len(body)} {headers.get('x-test', '-')}".encode()
        if path.startswith("/later/"):  # given by callback, as the API's writes are
            given = http1.Later()

            def give() -> None:
                self.seen.append(("given", path, "", b""))
                given.give((200, [("content-type", "text/plain")], out))
            asyncio.get_running_loop().call_later(int(path[7:]) / 1000, give)
            return given
        if path.startswith("/slow/"):
            async def later() -> Response:
                await asyncio.sleep(int(path[6:]) / 1000)
                return 200, [("content-type", "text/plain")], out
            return later()
        return 200, [("content-type", "text/plain")], out

    def streams(self, path: str) -> bool:
        return path.startswith("/v2")

    async def __call__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "ws":
            if scope.path != "/ws":
                proto.close(403)
                return
            transport = await proto.accept()
            while True:
                msg = await transport.receive()
                self.ws_messages.append((msg.kind, msg.data))
                if msg.kind == 0:
                    return
                if msg.data == "bye":
                    proto.close(1000)
                    return
                await transport.send_str(f"echo {msg.data}")
        elif scope.path == "/v2/upload":
            total = 0
            async for chunk in proto:
                total += len(chunk)
            proto.response_bytes(201, [("x-size", str(total))], b"")
        elif scope.path == "/v2/file":
            assert self.file is not None
            size = self.file.stat().st_size
            proto.response_file_range(200, [("content-type", "application/octet-stream")], str(self.file), 1, size)
        elif scope.path == "/v2/empty":
            proto.response_bytes(200, [("content-length", "1234")], b"")
        else:
            raise RuntimeError("boom")


@contextlib.asynccontextmanager
async def _serving(app: _App) -> AsyncIterator[int]:
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.stop()
        await server.wait_closed(timeout=1.0)


async def _read_response(reader: asyncio.StreamReader, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode().rstrip("\r\n")
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if head_only or status in (100, 101):
        return status, headers, b""
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_keep_alive_and_pipelined_responses_in_request_order() -> None:
    app = _App()

    async def main() -> None:
        async with _serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # a slow write, then a read: the read is answered first by the app but sent second
            writer.write(b"POST /slow/50 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
                         b"GET /fast?a=1 HTTP/1.1\r\nhost: x\r\nX-Test: yes\r\n\r\n")
            first = await _read_response(reader)
            second = await _read_response(reader)
            assert first == (200, first[1], b"POST /slow/50  3 -")
            assert second[2] == b"GET /fast a=1 0 yes"
            # every answer is dated (RFC 9110; botocore corrects clock skew from it)
            assert abs(parsedate_to_datetime(first[1]["date"]).timestamp() - time.time()) < 5
            # the same with answers given by callback, the later one first
            writer.write(b"POST /later/60 HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\na"
                         b"POST /later/10 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nab")
            assert (await _read_response(reader))[2] == b"POST /later/60  1 -"
            assert (await _read_response(reader))[2] == b"POST /later/10  2 -"
            # ...and a request pipelined behind an unanswered one is taken once its answer is in.
            writer.write(b"POST /later/30 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
                         b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await _read_response(reader))[2] == b"POST /later/30  0 -"
            assert (await _read_response(reader))[2] == b"GET /after  0 -"
            assert [(m, p) for m, p, _, _ in app.seen[-3:]] == [("POST", "/later/30"), ("given", "/later/30"),
                                                                ("GET", "/after")]
            # the connection stays open for the next request
            writer.write(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await _read_response(reader))[2] == b"GET /again  0 -"
            writer.close()
    _run(main())


def test_many_requests_pipelined_behind_a_write_are_all_answered_in_order() -> None:
    # More than MAX_HELD: the connection stops reading until the write's answer is in, then
    # takes the rest (reading resumes) and answers every one, in order.
    app = _App()
    n = http1.MAX_HELD * 3

    async def main() -> None:
        async with _serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /later/50 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
                         + b"".join(b"GET /r%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(n)))
            assert (await _read_response(reader))[2] == b"POST /later/50  0 -"
            for i in range(n):
                assert (await _read_response(reader))[2] == b"GET /r%d  0 -" % i
            writer.write(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await _read_response(reader))[2] == b"GET /again  0 -"
            writer.close()
    _run(main())
    assert [p for _, p, _, _ in app.seen[:2]] == ["/later/50", "/later/50"]  # the write, then its answer


def test_head_content_length_without_body_and_connection_close() -> None:
    async def main() -> None:
        async with _serving(_App()) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"HEAD /x HTTP/1.1\r\nhost: x\r\n\r\nGET /y HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            status, headers, _ = await _read_response(reader, head_only=True)
            assert status == 200 and headers["content-length"] == str(len(b"HEAD /x  0 -"))
            status, headers, body = await _read_response(reader)
            assert body == b"GET /y  0 -" and headers["connection"] == "close"
            assert await reader.read() == b""  # the server closed the connection
    _run(main())


def test_expect_continue_and_chunked_buffered_body() -> None:
    async def main() -> None:
        app = _App()
        async with _serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /p HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
            assert (await _read_response(reader))[0] == 100
            writer.write(b"hello")
            assert (await _read_response(reader))[2] == b"POST /p  5 -"
            writer.write(b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
            assert (await _read_response(reader))[2] == b"POST /c  7 -"
            assert app.seen[-1][3] == b"abcdefg"
            writer.close()
    _run(main())


def test_bad_request_and_too_large_body_are_refused_and_the_connection_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BUFFERED_BODY", 10)

    async def main() -> None:
        app = _App()
        async with _serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n01234567890")
            assert (await _read_response(reader))[0] == 413
            assert await reader.read() == b""
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            assert (await _read_response(reader))[0] == 400
            assert await reader.read() == b""
        assert app.seen == []  # neither reached the app
    _run(main())


def test_streamed_upload_file_range_and_empty_response(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several chunks, past the stream's high water

    async def main() -> None:
        async with _serving(_App(blob)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            payload = b"z" * (3 * 1024 * 1024)
            writer.write(b"PATCH /v2/upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 100_000):
                part = payload[i:i + 100_000]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
            status, headers, _ = await _read_response(reader)
            assert status == 201 and headers["x-size"] == str(len(payload))
            writer.write(b"GET /v2/file HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, body = await _read_response(reader)
            assert status == 200 and body == blob.read_bytes()[1:]
            writer.write(b"HEAD /v2/empty HTTP/1.1\r\nhost: x\r\n\r\nGET /v2/boom HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, _ = await _read_response(reader, head_only=True)
            assert headers["content-length"] == "1234"
            assert (await _read_response(reader))[0] == 500  # a handler's exception, answered
            writer.close()
    _run(main())


def test_websocket_refused_before_accept_echo_after_and_close() -> None:
    async def main() -> None:
        app = _App()
        async with _serving(app) as port:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(f"ws://127.0.0.1:{port}/nope"):
                    pass
            assert refused.value.response.status_code == 403
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
                await ws.send("hi")
                assert await ws.recv() == "echo hi"
                big = "x" * 300_000  # more than one read; websockets may fragment it
                await ws.send(big)
                assert await ws.recv() == "echo " + big
                await ws.send("bye")
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000
            assert app.ws_messages[:2] == [(2, "hi"), (2, big)]
    _run(main())


def test_stalled_request_gets_408_idle_connection_closes_slow_answer_still_arrives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "REQUEST_IDLE_SECONDS", 0.2)
    monkeypatch.setattr(http1, "KEEPALIVE_IDLE_SECONDS", 0.4)

    async def main() -> None:
        async with _serving(_App()) as port:
            # half a header, then nothing: 408 and closed
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-le")
            assert (await _read_response(reader))[0] == 408
            assert await reader.read() == b""
            # an answer that takes longer than the idle limits still arrives, then the idle
            # connection is closed
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /slow/700 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            assert (await _read_response(reader))[2] == b"POST /slow/700  0 -"
            t0 = asyncio.get_running_loop().time()
            assert await reader.read() == b""
            assert asyncio.get_running_loop().time() - t0 < 2.0
    _run(main())
