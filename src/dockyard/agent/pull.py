"""Image pulls under ECS_IMAGE_PULL_BEHAVIOR.

- ``default``: always pull; when the pull fails and the image is cached, use the cache.
- ``always``: always pull; a failed pull fails the container.
- ``once``: pull only if no earlier task on this instance pulled it (or it is no longer
  cached); otherwise use the cache.
- ``prefer-cached``: use the cache when the image is present, else pull.

Concurrent pulls of one image (many tasks starting at once) share a single driver pull.
The set of images this agent pulled (for ``once``) is kept in ``<data_dir>/pulled.json``,
rewritten only when a new image is first pulled.

Images on Dockyard's own registry (the /v2/ routes on the server's port) are pulled with
credentials of the agent's own, as the ECS agent uses the task execution role for ECR:
``RegistryAuth`` calls ECR GetAuthorizationToken on the server with the agent's key and hands
the engine ``{"username": "AWS", "password": ..., "serveraddress": host}`` (X-Registry-Auth).
An image is on that registry when its host part is the server URL's host:port (127.0.0.1 and
localhost being the same host) or the host of the ``proxyEndpoint`` the server reported (its
``repositoryUri`` host, which DOCKYARD_REGISTRY_HOST may set to another name). The token is
cached until shortly before its ``expiresAt``; other registries are pulled as before.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from dockyard.agent.drivers.base import Driver, DriverError

log = logging.getLogger("dockyard.agent.pull")

BEHAVIORS = ("default", "always", "once", "prefer-cached")

_LOOPBACK = ("127.0.0.1", "localhost")


def image_host(ref: str) -> str | None:
    """The registry host[:port] of an image reference (lower case), None for Docker Hub's.

    Docker's rule: the first path component is a registry when it has a '.' or a ':' or is
    ``localhost``; otherwise the image is on Docker Hub (``busybox``, ``library/x``, ``org/x``).
    """
    first, sep, _ = ref.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return None
    return first.lower()


def _host_keys(host: str) -> set[str]:
    """``host`` as compared: itself, and with 127.0.0.1 and localhost taken for each other."""
    name, sep, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not sep:
        name, port = host, ""
    keys = {host}
    if name in _LOOPBACK:
        keys |= {f"{n}:{port}" if port else n for n in _LOOPBACK}
    return keys


def server_registry_host(server: str) -> str:
    """The host:port of the server's URL (the port its scheme implies when it has none)."""
    u = urlsplit(server if "://" in server else "http://" + server)
    host = (u.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{host}:{port}"


@dataclass(frozen=True)
class RegistryToken:
    username: str
    password: str
    expires_at: float  # epoch seconds
    proxy_host: str | None  # the host of the proxyEndpoint the server reported


TokenFetcher = Callable[[], RegistryToken]

_boto_lock = threading.Lock()
_boto_session: Any = None


def _decode(data: dict[str, Any]) -> RegistryToken:
    """One authorizationData entry of GetAuthorizationToken (as botocore parses it)."""
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    expires = data.get("expiresAt")
    if isinstance(expires, datetime):
        expires_at = expires.timestamp()
    elif isinstance(expires, int | float):
        expires_at = float(expires)
    else:
        expires_at = time.time() + 3600.0
    proxy = data.get("proxyEndpoint")
    proxy_host = (urlsplit(proxy).netloc.lower() or None) if isinstance(proxy, str) else None
    return RegistryToken(user, password, expires_at, proxy_host)


def botocore_fetcher(server: str, region: str, access_key: str, secret_key: str) -> TokenFetcher:
    """GetAuthorizationToken on the server with the agent's key (synchronous: run in a thread)."""

    def fetch() -> RegistryToken:
        global _boto_session
        import botocore.session
        from botocore.config import Config

        with _boto_lock:
            if _boto_session is None:
                _boto_session = botocore.session.get_session()
            client = _boto_session.create_client(
                "ecr", region_name=region, endpoint_url=server, aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                              read_timeout=30))
        try:
            resp = client.get_authorization_token()
        finally:
            client.close()
        return _decode(resp["authorizationData"][0])

    return fetch


class RegistryAuth:
    """Credentials for pulls from Dockyard's own registry, from ECR GetAuthorizationToken.

    The token is fetched when first needed and reused until ``margin`` seconds before it
    expires (ECR's live 12 hours); concurrent pulls share one fetch.
    """

    def __init__(self, server: str, region: str = "us-east-1", access_key: str = "", secret_key: str = "",
                 *, fetch: TokenFetcher | None = None, clock: Callable[[], float] = time.time,
                 margin: float = 300.0) -> None:
        self.server_host = server_registry_host(server)
        self._hosts = _host_keys(self.server_host)
        self._fetch = fetch or botocore_fetcher(server, region, access_key, secret_key)
        self._clock = clock
        self.margin = margin
        self._token: RegistryToken | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # GetAuthorizationToken calls made (tests)

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` is an image on the server's registry."""
        host = image_host(ref)
        return host is not None and host in self._hosts

    def learn(self, token: RegistryToken) -> None:
        if token.proxy_host:
            self._hosts |= _host_keys(token.proxy_host)

    def _fresh(self) -> RegistryToken | None:
        t = self._token
        if t is None:
            return None
        # margin, or half the token's life when it was issued for less than twice that
        margin = min(self.margin, (t.expires_at - self._fetched_at) / 2)
        return t if self._clock() < t.expires_at - margin else None

    async def token(self) -> RegistryToken:
        """A token valid for at least ``margin`` more seconds (fetched when needed)."""
        t = self._fresh()
        if t is not None:
            return t
        async with self._lock:
            t = self._fresh()
            if t is None:
                self.fetches += 1
                fetched_at = self._clock()
                t = await asyncio.to_thread(self._fetch)
                self._token, self._fetched_at = t, fetched_at
                self.learn(t)
            return t

    def invalidate(self) -> None:
        """Forget the cached token (a pull with it was refused): the next pull fetches another."""
        self._token = None

    async def auth_for(self, ref: str) -> dict[str, str] | None:
        """X-Registry-Auth for ``ref``: None for images on other registries.

        The first image with an explicit registry host that is not the server's URL fetches a
        token once anyway, to learn the host the server gives in ``repositoryUri``
        (proxyEndpoint); failures there are ignored (the image is pulled as before).
        """
        host = image_host(ref)
        if host is None:
            return None
        if host not in self._hosts:
            if self._token is not None:
                return None
            try:
                await self.token()
            except Exception as e:  # noqa: BLE001 - only learning the server's registry host
                log.debug("GetAuthorizationToken to learn the registry host failed: %s", e)
                return None
            if host not in self._hosts:
                return None
        try:
            t = await self.token()
        except Exception as e:  # botocore's errors, connection errors
            raise DriverError("CannotPullContainerError",
                              f"{ref}: cannot get registry credentials from the Dockyard server "
                              f"(ECR GetAuthorizationToken): {e}") from e
        return {"username": t.username, "password": t.password, "serveraddress": host}


class ImagePuller:
    def __init__(self, driver: Driver, behavior: str, state_file: Path | None = None,
                 registry_auth: RegistryAuth | None = None) -> None:
        if behavior not in BEHAVIORS:
            raise ValueError(f"pull behavior must be one of {', '.join(BEHAVIORS)}")
        self.driver = driver
        # Set by the agent (main.py) once it knows its server and key; None: no credentials.
        self.registry_auth = registry_auth
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
            fut = asyncio.ensure_future(self._pull_once(ref))
            self._inflight[ref] = fut
            fut.add_done_callback(functools.partial(self._done, ref))
        # Shielded: one waiting task being cancelled must not cancel the others' pull.
        await asyncio.shield(fut)

    async def _pull_once(self, ref: str) -> None:
        ra = self.registry_auth
        auth = await ra.auth_for(ref) if ra is not None else None
        if auth is None:
            await self.driver.pull(ref)
            return
        log.info("pulling %s with a token from the server's registry", ref)
        try:
            await self.driver.pull(ref, auth=auth)
        except DriverError:
            assert ra is not None
            ra.invalidate()  # perhaps refused (a deleted key): the next attempt asks again
            raise

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
