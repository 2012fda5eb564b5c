"""The AWS JSON 1.0/1.1 protocol: X-Amz-Target dispatch, bodies and errors.

One ``JsonProtocol`` per service (ECS now; ECR, Application Auto Scaling...
later). It only turns wire bytes into a validated request and a response or an
AWS-shaped error; the operations themselves live in ``dockyard.services``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from botocore.model import ServiceModel

from dockyard.api.constraints import compile_constraints
from dockyard.api.errors import (
    AwsError,
    InvalidParameterException,
    SerializationException,
    ServerException,
    UnknownOperationException,
)
from dockyard.api.http1 import Later
from dockyard.api.sigv4 import Identity
from dockyard.api.validation import Validator
from dockyard.services.context import Ctx
from dockyard.services.registry import Operation, Registry
from dockyard.state.store import Store

log = logging.getLogger(__name__)

Response = tuple[int, list[tuple[str, str]], bytes]


class JsonProtocol:
    def __init__(self, model: ServiceModel, registry: Registry, store: Store,
                 validator: Validator | None = None) -> None:
        self.model = model
        self.signing_name: str = model.metadata.get("signingName") or model.metadata["endpointPrefix"]
        self.target_prefix: str = model.metadata["targetPrefix"]
        self.content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}"
        self.registry = registry
        self.store = store
        self.validator = validator or Validator(model)
        self.constraints = compile_constraints(model)
        # In an API worker: hands a write to the server process (``api/write_link.py``), and its
        # reads too when ``forward_reads`` (ECR's reach the registry's blobs, held by the server).
        self.forward: Callable[[str, Operation, Ctx, dict[str, Any], Callable[[bool, Any], None]], None] | None = None
        self.forward_reads = False

    def error(self, err: AwsError, request_id: str) -> Response:
        body: dict[str, Any] = {"__type": err.code, "message": err.message}
        body.update(err.extra)
        return (err.status, [("content-type", self.content_type), ("x-amzn-requestid", request_id),
                             ("x-amzn-errortype", err.code)], orjson.dumps(body))

    def respond(self, target: str, body: bytes, identity: Identity, request_id: str) -> Response | Later:
        """The response to one call: at once for reads and errors, ``Later`` for writes.

        Synchronous up to the store so that a read costs no coroutine frames; a write is
        answered by callback once its group commit is durable.
        """
        try:
            op, ctx, req = self._prepare(target, body, identity, request_id)
            if op.write or self.forward_reads:
                return self._write(op, ctx, req, target)
            result = self.store.read(op.fn, ctx, req, snapshot=op.snapshot)
        except Exception as exc:  # noqa: BLE001  (every failure is answered)
            return self._failure(exc, target, request_id)
        return self._ok(result, request_id)

    def _failure(self, exc: Exception, target: str, request_id: str) -> Response:
        if isinstance(exc, AwsError):
            return self.error(exc, request_id)
        log.error("internal error in %s (request %s)", target, request_id, exc_info=exc)
        return self.error(ServerException("Internal error."), request_id)

    def _ok(self, result: Any, request_id: str) -> Response:
        raw = result if isinstance(result, bytes) else orjson.dumps(result)
        return 200, [("content-type", self.content_type), ("x-amzn-requestid", request_id)], raw

    def _write(self, op: Operation, ctx: Ctx, req: dict[str, Any], target: str) -> Later:
        later = Later()

        def done(ok: bool, value: Any) -> None:
            try:
                later.give(self._ok(value, ctx.request_id) if ok else self._failure(value, target, ctx.request_id))
            except Exception as exc:  # noqa: BLE001  (an answer that cannot be built is still answered)
                later.give(self._failure(exc, target, ctx.request_id))

        if self.forward is not None:
            self.forward(self.target_prefix, op, ctx, req, done)
        else:
            self.store.submit(op.fn, (ctx, req), done, concurrent=True)
        return later

    def _prepare(self, target: str, body: bytes, identity: Identity,
                 request_id: str) -> tuple[Operation, Ctx, dict[str, Any]]:
        """The operation, its context and its validated input; raises the AWS error otherwise."""
        prefix, _, name = target.partition(".")
        op = self.registry.operations.get(name) if prefix == self.target_prefix else None
        if op is None:
            if prefix == self.target_prefix and self.validator.operation(name) is not None:
                raise UnknownOperationException(f"Dockyard does not implement {name} yet.")
            raise UnknownOperationException("")
        try:
            req = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            if body.strip():
                raise SerializationException("Start of structure or map found where not expected.") from None
            req = {}
        if not isinstance(req, dict):
            raise SerializationException("Start of structure or map found where not expected.")
        problem = self.validator.check(name, req)
        if problem is not None:
            raise InvalidParameterException(problem)
        constrain = self.constraints.get(name)
        if constrain is not None:
            constrain(req)
        # AWS timestamps carry milliseconds.
        return op, Ctx(identity.account_id, identity.region, identity.principal_arn, request_id,
                       round(time.time(), 3), identity.access_key_id), req
