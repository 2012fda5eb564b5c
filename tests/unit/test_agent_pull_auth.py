"""The agent's credentials for pulls from Dockyard's own registry (agent/pull.py RegistryAuth):
which images are on the server's registry, and the GetAuthorizationToken cache."""

from __future__ import annotations

import asyncio
import base64
import functools
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.agent.drivers.base import DriverError
from dockyard.agent.pull import ImagePuller, RegistryAuth, RegistryToken, _decode, image_host, server_registry_host

SERVER = "http://127.0.0.1:7480"


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded so a hang fails fast."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 8.0))

    return wrapper


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """A GetAuthorizationToken stand-in: password n for the n-th call, valid ``ttl`` seconds."""

    def __init__(self, clock: Clock, ttl: float = 12 * 3600, proxy_host: str | None = "127.0.0.1:7480",
                 fail: bool = False) -> None:
        self.clock, self.ttl, self.proxy_host, self.fail = clock, ttl, proxy_host, fail
        self.calls = 0
        self.gate: threading.Event | None = None

    def __call__(self) -> RegistryToken:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls += 1
        if self.fail:
            raise ConnectionError("connection refused")
        return RegistryToken("AWS", f"pw{self.calls}", self.clock.now + self.ttl, self.proxy_host)


class RecordingDriver:
    """Only what ImagePuller uses: pull (recording the auth) and image_present."""

    def __init__(self, fail: bool = False) -> None:
        self.pulls: list[tuple[str, dict[str, str] | None]] = []
        self.fail = fail

    async def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        self.pulls.append((ref, auth))
        if self.fail:
            raise DriverError("CannotPullContainerError", f"{ref}: unauthorized")

    async def image_present(self, ref: str) -> bool:
        return False


def _auth(clock: Clock | None = None, **kw: Any) -> tuple[RegistryAuth, Fetcher]:
    clock = clock or Clock()
    fetch = Fetcher(clock, **kw)
    return RegistryAuth(SERVER, fetch=fetch, clock=clock), fetch


# -- which images --------------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "host"), [
    ("busybox", None),
    ("busybox:1.36", None),
    ("library/busybox", None),
    ("myorg/app:v1", None),
    ("docker.io/library/busybox", "docker.io"),
    ("localhost/app", "localhost"),
    ("127.0.0.1:7480/dy/app:v1", "127.0.0.1:7480"),
    ("LocalHost:7480/app@sha256:" + "a" * 64, "localhost:7480"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
])
def test_image_host(ref: str, host: str | None) -> None:
    assert image_host(ref) == host


def test_server_registry_host() -> None:
    assert server_registry_host("http://127.0.0.1:7480") == "127.0.0.1:7480"
    assert server_registry_host("http://127.0.0.1:7480/") == "127.0.0.1:7480"
    assert server_registry_host("http://Dockyard.Example:9000/x") == "dockyard.example:9000"
    assert server_registry_host("http://dockyard.example") == "dockyard.example:80"
    assert server_registry_host("https://dockyard.example") == "dockyard.example:443"
    assert server_registry_host("http://[::1]:7480") == "[::1]:7480"


def test_matches_the_servers_host_and_port_only() -> None:
    auth, _ = _auth()
    assert auth.matches("127.0.0.1:7480/dy/app:v1")
    assert auth.matches("localhost:7480/dy/app:v1")  # the same host
    assert auth.matches("127.0.0.1:7480/app@sha256:" + "b" * 64)
    assert not auth.matches("127.0.0.1:7481/dy/app:v1")  # another port
    assert not auth.matches("127.0.0.1/dy/app:v1")
    assert not auth.matches("127.0.0.2:7480/dy/app:v1")
    assert not auth.matches("busybox")
    assert not auth.matches("docker.io/library/busybox")


def test_named_server_does_not_match_loopback() -> None:
    auth = RegistryAuth("http://dockyard.example:7480", fetch=Fetcher(Clock()))
    assert auth.matches("dockyard.example:7480/app:v1")
    assert not auth.matches("127.0.0.1:7480/app:v1")
    assert not auth.matches("localhost:7480/app:v1")


# -- the token cache -------------------------------------------------------------------------------

@run_async
async def test_auth_for_the_servers_images_only() -> None:
    auth, fetch = _auth()
    assert await auth.auth_for("busybox:latest") is None
    assert fetch.calls == 0  # Docker Hub images never ask the server
    got = await auth.auth_for("127.0.0.1:7480/dy/app:v1")
    assert got == {"username": "AWS", "password": "pw1", "serveraddress": "127.0.0.1:7480"}
    got = await auth.auth_for("localhost:7480/dy/app:v1")
    assert got == {"username": "AWS", "password": "pw1", "serveraddress": "localhost:7480"}
    assert fetch.calls == 1


@run_async
async def test_token_cached_until_shortly_before_expiry() -> None:
    clock = Clock()
    auth, fetch = _auth(clock)
    ref = "127.0.0.1:7480/dy/app:v1"
    assert (await auth.auth_for(ref) or {})["password"] == "pw1"
    clock.now += 12 * 3600 - 301  # still more than the 300 s margin left
    assert (await auth.auth_for(ref) or {})["password"] == "pw1"
    assert fetch.calls == 1
    clock.now += 2  # within the margin: a new token
    assert (await auth.auth_for(ref) or {})["password"] == "pw2"
    assert fetch.calls == 2
    clock.now += 12 * 3600 + 10  # long expired
    assert (await auth.auth_for(ref) or {})["password"] == "pw3"


@run_async
async def test_short_lived_token_uses_half_its_life_as_margin() -> None:
    clock = Clock()
    auth, fetch = _auth(clock, ttl=60)
    ref = "127.0.0.1:7480/dy/app:v1"
    await auth.auth_for(ref)
    clock.now += 29
    await auth.auth_for(ref)
    assert fetch.calls == 1
    clock.now += 2
    await auth.auth_for(ref)
    assert fetch.calls == 2


@run_async
async def test_concurrent_pulls_share_one_fetch() -> None:
    auth, fetch = _auth()
    fetch.gate = threading.Event()
    waiting = [asyncio.ensure_future(auth.auth_for(f"127.0.0.1:7480/dy/app{i}:v1")) for i in range(5)]
    await asyncio.sleep(0.05)
    fetch.gate.set()
    got = await asyncio.gather(*waiting)
    assert fetch.calls == 1
    assert {g["password"] for g in got if g} == {"pw1"}


@run_async
async def test_invalidate_fetches_again() -> None:
    auth, _ = _auth()
    ref = "127.0.0.1:7480/dy/app:v1"
    await auth.auth_for(ref)
    auth.invalidate()
    assert (await auth.auth_for(ref) or {})["password"] == "pw2"


@run_async
async def test_fetch_failure_is_a_pull_error() -> None:
    auth, _ = _auth(fail=True)
    with pytest.raises(DriverError) as e:
        await auth.auth_for("127.0.0.1:7480/dy/app:v1")
    assert e.value.reason == "CannotPullContainerError"
    assert "GetAuthorizationToken" in str(e.value)


@run_async
async def test_learns_the_repository_uri_host_from_proxy_endpoint() -> None:
    # DOCKYARD_REGISTRY_HOST made the server give another name in repositoryUri.
    clock = Clock()
    fetch = Fetcher(clock, proxy_host="registry.dockyard.test:7480")
    auth = RegistryAuth(SERVER, fetch=fetch, clock=clock)
    assert not auth.matches("registry.dockyard.test:7480/dy/app:v1")
    got = await auth.auth_for("registry.dockyard.test:7480/dy/app:v1")
    assert got == {"username": "AWS", "password": "pw1", "serveraddress": "registry.dockyard.test:7480"}
    assert auth.matches("registry.dockyard.test:7480/dy/app:v1")
    # Another registry: asked once to learn the host, then never again.
    assert await auth.auth_for("quay.io/org/app:v1") is None
    assert await auth.auth_for("ghcr.io/org/app:v1") is None
    assert fetch.calls == 1


@run_async
async def test_unreachable_server_does_not_break_other_registries() -> None:
    auth, fetch = _auth(fail=True)
    assert await auth.auth_for("quay.io/org/app:v1") is None
    assert fetch.calls == 1


def test_decode_get_authorization_token() -> None:
    data = {"authorizationToken": base64.b64encode(b"AWS:dy1.abc.def").decode(),
            "expiresAt": datetime(2030, 1, 1, tzinfo=UTC), "proxyEndpoint": "http://127.0.0.1:7480"}
    t = _decode(data)
    assert (t.username, t.password, t.proxy_host) == ("AWS", "dy1.abc.def", "127.0.0.1:7480")
    assert t.expires_at == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


# -- through ImagePuller --------------------------------------------------------------------------

@run_async
async def test_puller_passes_auth_to_the_driver() -> None:
    drv = RecordingDriver()
    auth, fetch = _auth()
    puller = ImagePuller(drv, "always", registry_auth=auth)  # type: ignore[arg-type]
    await puller.ensure("127.0.0.1:7480/dy/app:v1")
    await puller.ensure("busybox:latest")
    await puller.ensure("127.0.0.1:7480/dy/other:v2")
    assert drv.pulls == [
        ("127.0.0.1:7480/dy/app:v1", {"username": "AWS", "password": "pw1", "serveraddress": "127.0.0.1:7480"}),
        ("busybox:latest", None),
        ("127.0.0.1:7480/dy/other:v2", {"username": "AWS", "password": "pw1", "serveraddress": "127.0.0.1:7480"}),
    ]
    assert fetch.calls == 1


@run_async
async def test_puller_without_registry_auth_pulls_as_before() -> None:
    drv = RecordingDriver()
    puller = ImagePuller(drv, "always")  # type: ignore[arg-type]
    await puller.ensure("127.0.0.1:7480/dy/app:v1")
    assert drv.pulls == [("127.0.0.1:7480/dy/app:v1", None)]


@run_async
async def test_refused_pull_drops_the_token() -> None:
    drv = RecordingDriver(fail=True)
    auth, fetch = _auth()
    puller = ImagePuller(drv, "always", registry_auth=auth)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(DriverError):
            await puller.ensure("127.0.0.1:7480/dy/app:v1")
    assert [a["password"] for _, a in drv.pulls if a] == ["pw1", "pw2"]
    assert fetch.calls == 2
