"""Client tokens (RunTask, CreateService): what a token's first request did, kept for 24 hours.

AWS keeps a client token for 24 hours; after that the same token starts a new request. A
RunTask token belongs to its cluster: the same token in another cluster is another request, so
its key is a digest of the cluster ARN and the token (a token is up to 64 characters, and the
key column holds 128). Expired records are also deleted in batches by the expiry controller
(``purge``), so the table does not grow with every call: boto3 and the aws CLI send a fresh
token with every RunTask.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, select

from dockyard.api.errors import InvalidParameterException
from dockyard.services.context import Ctx
from dockyard.state.schema import idempotency as it
from dockyard.state.store import Tx, prepare

TTL_SECONDS = 24 * 3600.0
BATCH = 1000

_KEY = (it.c.account_id == bindparam("acct"), it.c.region == bindparam("r"),
        it.c.operation == bindparam("op"), it.c.token == bindparam("t"))
_GET = prepare(select(it.c.request_hash, it.c.response, it.c.created_at).where(*_KEY))
_DEL = prepare(delete(it).where(*_KEY))
_INS = prepare(it.insert())
_OLDEST = prepare(select(it.c.account_id, it.c.region, it.c.operation, it.c.token)
                  .where(it.c.created_at < bindparam("before")).order_by(it.c.created_at).limit(bindparam("n")))


def check_token(token: str, max_len: int) -> None:
    """AWS: 1 to ``max_len`` ASCII characters in the range 33-126 (RunTask 64, CreateService 36)."""
    # printable ASCII is 32-126; the space is the one left out
    if not (1 <= len(token) <= max_len and token.isascii() and token.isprintable() and " " not in token):
        raise InvalidParameterException(
            f"clientToken must be 1 to {max_len} ASCII characters in the range 33-126.")


def request_hash(req: dict[str, Any], **fixed: Any) -> str:
    """What a retry must repeat: the request without its token, with ``fixed`` fields set
    (e.g. the cluster as an ARN, however the request named it)."""
    body = {k: v for k, v in req.items() if k != "clientToken"} | fixed
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def cluster_key(cluster_arn: str, token: str) -> str:
    """The key of a token scoped to a cluster (RunTask)."""
    return hashlib.sha256(f"{cluster_arn}\n{token}".encode()).hexdigest()


def seen(tx: Tx, ctx: Ctx, operation: str, key: str) -> tuple[str, bytes] | None:
    """(request hash, response) of the live record under ``key``; an expired one is deleted."""
    row = tx.one(_GET, acct=ctx.account_id, r=ctx.region, op=operation, t=key)
    if row is None:
        return None
    if row[2] < ctx.now - TTL_SECONDS:
        tx.run(_DEL, acct=ctx.account_id, r=ctx.region, op=operation, t=key)
        return None
    return row[0], bytes(row[1])


def remember(tx: Tx, ctx: Ctx, operation: str, key: str, request_hash: str, response: bytes,
             replace: bool = False) -> None:
    """Record what the first request under ``key`` did; ``replace`` drops a record already there
    (CreateService: a token reused after its service was deleted)."""
    if replace:
        tx.run(_DEL, acct=ctx.account_id, r=ctx.region, op=operation, t=key)
    tx.insert(_INS, account_id=ctx.account_id, region=ctx.region, operation=operation, token=key,
              request_hash=request_hash, response=response, created_at=ctx.now)


def purge(tx: Tx, before: float, limit: int = BATCH) -> int:
    """Delete up to ``limit`` records made before ``before``; returns how many."""
    rows = tx.all(_OLDEST, before=before, n=limit)
    for acct, region, op, key in rows:
        tx.run(_DEL, acct=acct, r=region, op=op, t=key)
    return len(rows)
