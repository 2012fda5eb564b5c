"""The API worker's links to the server process: writes and their answers (api/write_link.py),
and connections handed over with the bytes already read (api/workers.py, api/worker.py)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from dockyard.api.errors import AwsError, ClusterNotFoundException
from dockyard.api.worker import _hand_off_to
from dockyard.api.workers import HAND_OFF_CHUNK, _Adoptions
from dockyard.api.write_link import WriteClient, WriteDesk
from dockyard.services.context import Ctx
from dockyard.services.registry import Operation


class FakeStore:
    """Runs writes at once in submit order, as a group commit would answer them."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Ctx, Any]] = []
        self.reads: list[str] = []

    def submit(self, fn: Any, args: tuple[Any, ...], done: Any, concurrent: bool = False) -> None:
        assert concurrent
        ctx, req = args
        self.writes.append((fn.__name__, ctx, req))
        try:
            value = fn(None, ctx, req)
        except Exception as exc:
            asyncio.get_running_loop().call_soon(done, False, exc)
            return
        asyncio.get_running_loop().call_soon(done, True, value)

    def read(self, fn: Any, *args: Any, snapshot: bool = True) -> Any:
        self.reads.append(fn.__name__)
        return fn(None, *args)


def create(tx: Any, ctx: Ctx, req: dict[str, Any]) -> dict[str, Any]:
    if req["name"] == "missing":
        raise ClusterNotFoundException("Cluster not found.")
    if req["name"] == "boom":
        raise RuntimeError("a bug")
    return {"cluster": {"clusterName": req["name"], "by": ctx.principal_arn, "at": ctx.now}}


def describe(tx: Any, ctx: Ctx, req: dict[str, Any]) -> bytes:
    return b'{"read":true}'


OPS = {"P": {"Create": Operation("Create", create, write=True), "Describe": Operation("Describe", describe, write=False)}}
CTX = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:root", "rid-1", 1700000000.123, "AKIA")


async def linked() -> tuple[WriteClient, WriteDesk, FakeStore]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    store = FakeStore()
    _, desk = await loop.create_unix_connection(lambda: WriteDesk(OPS, store), sock=a)  # type: ignore[arg-type]
    _, client = await loop.create_unix_connection(WriteClient, sock=b)
    return client, desk, store


async def call(client: WriteClient, name: str, req: dict[str, Any]) -> tuple[bool, Any]:
    fut = asyncio.get_running_loop().create_future()
    client.submit("P", OPS["P"][name], CTX, req, lambda ok, v: fut.set_result((ok, v)))
    return await asyncio.wait_for(fut, 5)


def test_a_write_runs_in_the_server_process_with_the_callers_context() -> None:
    async def main() -> None:
        client, _desk, store = await linked()
        ok, body = await call(client, "Create", {"name": "a"})
        assert ok and body == b'{"cluster":{"clusterName":"a","by":"arn:aws:iam::123456789012:root","at":1700000000.123}}'
        assert store.writes == [("create", CTX, {"name": "a"})]
        # A read that needs the server's state is answered there too, at once.
        assert await call(client, "Describe", {}) == (True, b'{"read":true}')
        assert store.reads == ["describe"]
    asyncio.run(main())


def test_errors_come_back_as_the_aws_error_or_a_server_error() -> None:
    async def main() -> None:
        client, _, _ = await linked()
        ok, err = await call(client, "Create", {"name": "missing"})
        assert not ok and isinstance(err, AwsError)
        assert (err.code, err.status, err.message) == ("ClusterNotFoundException", 400, "Cluster not found.")
        ok, err = await call(client, "Create", {"name": "boom"})
        assert not ok and isinstance(err, AwsError) and err.code == "ServerException" and err.status == 500
        assert "a bug" not in err.message
    asyncio.run(main())


def test_many_calls_in_one_turn_are_answered_each_to_its_caller() -> None:
    async def main() -> None:
        client, _, store = await linked()
        names = [f"c{i}" for i in range(500)]
        results = await asyncio.gather(*(call(client, "Create", {"name": n}) for n in names))
        assert [r[1].split(b'"clusterName":"')[1].split(b'"')[0].decode() for r in results] == names
        assert len(store.writes) == 500
    asyncio.run(main())


def test_calls_waiting_when_the_server_process_goes_get_a_server_error() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        _, client = await loop.create_unix_connection(WriteClient, sock=b)
        fut = loop.create_future()
        client.submit("P", OPS["P"]["Create"], CTX, {"name": "x"}, lambda ok, v: fut.set_result((ok, v)))
        await asyncio.sleep(0.05)
        a.close()  # never answered
        ok, err = await asyncio.wait_for(fut, 5)
        assert not ok and err.code == "ServerException"
        await asyncio.wait_for(client.lost, 5)
        # and later calls fail at once, without waiting
        now: list[Any] = []
        client.submit("P", OPS["P"]["Create"], CTX, {"name": "y"}, lambda ok, v: now.append((ok, v.code)))
        assert now == [(False, "ServerException")]
    asyncio.run(main())


class Adopter:
    def __init__(self) -> None:
        self.adopted: list[tuple[int, bytes]] = []

    def adopt(self, fd: int, preface: bytes) -> None:
        self.adopted.append((fd, preface))


@pytest.mark.parametrize("size", [0, 100, HAND_OFF_CHUNK - 4, HAND_OFF_CHUNK, 3 * HAND_OFF_CHUNK + 17])
def test_a_handed_off_connection_arrives_with_every_byte_read_before(size: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        server = Adopter()
        adoptions = _Adoptions(ours, server)  # type: ignore[arg-type]
        loop.add_reader(ours.fileno(), adoptions.readable)
        hand_off = _hand_off_to(theirs)
        client, conn = socket.socketpair()  # stands for the client's TCP connection
        preface = os.urandom(size)
        for _ in range(2):  # two connections, one after the other, each whole
            # (a worker's send blocks until the server process has read: another thread here)
            await loop.run_in_executor(None, hand_off, os.dup(conn.fileno()), preface)
        for _ in range(100):
            if len(server.adopted) == 2:
                break
            await asyncio.sleep(0.01)
        assert [p for _, p in server.adopted] == [preface, preface]
        # the adopted descriptor is the same connection: what the client sends arrives on it
        fd = server.adopted[0][0]
        client.sendall(b"ping")
        assert os.read(fd, 4) == b"ping"
        for fd, _ in server.adopted:
            os.close(fd)
        adoptions.close()
        theirs.close()
        client.close()
        conn.close()
    asyncio.run(main())
