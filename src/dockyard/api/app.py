"""The application behind ``api/http1.py``: one HTTP port for every protocol Dockyard speaks.

Routing is by request shape, as AWS endpoints are: a POST with
``X-Amz-Target`` is an AWS JSON call, routed by the target's prefix (``respond``, on
the buffered request); a websocket upgrade goes to the agent channel
(``api/agent_channel.py``), when the server has one; a path under ``/v2`` goes to the
OCI registry (``registry/http.py``) with its body streamed (``streams``), so blob
uploads go to disk as they arrive.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from dockyard.api.awsjson import JsonProtocol, Response
from dockyard.api.errors import AwsError, MissingAuthenticationTokenException, UnknownOperationException
from dockyard.api.http1 import Later
from dockyard.api.sigv4 import Credential, SigV4Verifier
from dockyard.state import keys
from dockyard.state.ids import RequestIds
from dockyard.state.store import Store

if TYPE_CHECKING:
    from dockyard.api.agent_channel import AgentHub
    from dockyard.registry.http import RegistryHttp

# How long a looked-up access key is trusted before the store is asked again,
# so `dockyard keys delete` takes effect within this many seconds.
KEY_CACHE_SECONDS = 2.0


class KeyCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[Credential | None, float]] = {}

    def lookup(self, key_id: str) -> Credential | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        cred = self._store.read(keys.lookup, key_id)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key_id] = (cred, now + KEY_CACHE_SECONDS)
        return cred


class App:
    def __init__(self, store: Store, protocols: list[JsonProtocol]) -> None:
        self.store = store
        self.by_prefix = {p.target_prefix: p for p in protocols}
        self.verifier = SigV4Verifier(KeyCache(store).lookup)
        self.request_ids = RequestIds()
        # The agent channel's websocket handler (set by the server; None: websockets refused).
        self.agents: AgentHub | None = None
        # The /v2/ registry (set by the server; None: /v2 paths get the AWS 403 like any other path).
        self.registry: RegistryHttp | None = None

    def streams(self, path: str) -> bool:
        """Whether a request's body goes to ``__call__`` as it arrives (the registry's)."""
        return self.registry is not None and path.startswith("/v2") and (len(path) == 3 or path[3] == "/")

    @staticmethod
    def serves(scope: Any) -> bool:
        """In an API worker: the requests it answers itself (AWS JSON calls and the ping). A
        connection whose first request is anything else (an agent's websocket, the registry)
        goes to the server process (``api/workers.py``)."""
        if scope.method == "POST":
            return scope.headers.get("x-amz-target") is not None
        return scope.method == "GET" and scope.path in ("/", "/ping")

    async def __call__(self, scope: Any, proto: Any) -> None:
        """Streamed requests (``streams``) and websocket upgrades, RSGI-style (``api/http1.py``)."""
        if scope.proto == "http" and self.registry is not None:
            await self.registry.handle(scope, proto)
            return
        if scope.proto == "ws" and self.agents is not None:
            await self.agents.handle(scope, proto)
            return
        # Before accept() close(status) is answered as an HTTP response: an HTTP status only.
        proto.close(404)

    async def http(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response:
        r = self.respond(method, path, query, headers, body)
        return r if isinstance(r, tuple) else await r

    def respond(self, method: str, path: str, query: str, headers: Any,
                body: bytes) -> Response | Later:
        """The response, or for writes a ``Later`` that gives it (no coroutine on either path)."""
        rid = self.request_ids.next()
        target = headers.get("x-amz-target")
        if target is not None and method == "POST":
            prefix = target.partition(".")[0]
            protocol = self.by_prefix.get(prefix)
            if protocol is None:
                return self._error(UnknownOperationException(""), rid)
            try:
                identity = self.verifier.verify(method, path, query, headers, body, protocol.signing_name)
            except AwsError as err:
                return protocol.error(err, rid)
            return protocol.respond(target, body, identity, rid)
        if method == "GET" and path in ("/", "/ping"):
            return 200, [("content-type", "application/json"), ("x-amzn-requestid", rid)], \
                b'{"service":"dockyard","status":"ok"}'
        return self._error(MissingAuthenticationTokenException("Missing Authentication Token"), rid)

    @staticmethod
    def _error(err: AwsError, rid: str) -> Response:
        return err.status, [("content-type", "application/x-amz-json-1.1"), ("x-amzn-requestid", rid),
                            ("x-amzn-errortype", err.code)], \
            orjson.dumps({"__type": err.code, "message": err.message})
