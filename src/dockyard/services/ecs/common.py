"""Pieces every ECS operation module shares: documents, references, paging, tags."""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.api.errors import (
    ClusterNotFoundException,
    InvalidParameterException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import quotas
from dockyard.state import arns
from dockyard.state.schema import clusters as ct
from dockyard.state.schema import tags as tt
from dockyard.state.store import Prepared, Tx, prepare

Doc = dict[str, Any]  # a resource in its AWS wire shape

DEFAULT_CLUSTER = "default"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def loads(raw: bytes | memoryview) -> Doc:
    return orjson.loads(raw)  # type: ignore[no-any-return]


# -- clusters ----------------------------------------------------------------

_CLUSTER_BY_ARN = prepare(
    select(ct.c.arn, ct.c.name, ct.c.status, ct.c.doc, ct.c.registered_instances, ct.c.running_tasks,
           ct.c.pending_tasks, ct.c.active_services)
    .where(ct.c.arn == bindparam("a")))

# Bumping counters with arithmetic in SQL keeps them exact under concurrent writers.
# One UPDATE per set of columns changed together (a task going PENDING -> RUNNING moves two).
_BUMP: dict[tuple[str, ...], Prepared] = {}


def _bump_stmt(cols: tuple[str, ...]) -> Prepared:
    stmt = _BUMP.get(cols)
    if stmt is None:
        stmt = _BUMP[cols] = prepare(update(ct).where(ct.c.arn == bindparam("a")).values(
            {c: getattr(ct.c, c) + bindparam(f"d_{c}") for c in cols}))
    return stmt


class ClusterRow:
    __slots__ = (
        "active_services",
        "arn",
        "doc_raw",
        "name",
        "pending_tasks",
        "registered_instances",
        "running_tasks",
        "status",
    )

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.arn, self.name, self.status, self.doc_raw, self.registered_instances, self.running_tasks,
         self.pending_tasks, self.active_services) = row

    @property
    def active(self) -> bool:
        return bool(self.status == "ACTIVE")


def cluster_arn_for(ctx: Ctx, ref: str | None) -> str:
    """The ARN a cluster reference names (name or ARN; None means ``default``)."""
    if not ref:
        return arns.cluster(ctx.region, ctx.account_id, DEFAULT_CLUSTER)
    if arns.is_arn(ref):
        a = arns.parse(ref)
        if a is None or a.kind != "cluster":
            raise InvalidParameterException("Invalid identifier: Unexpected number of separators")
        return ref
    return arns.cluster(ctx.region, ctx.account_id, ref)


def find_cluster(tx: Tx, ctx: Ctx, ref: str | None) -> ClusterRow | None:
    row = tx.one(_CLUSTER_BY_ARN, a=cluster_arn_for(ctx, ref))
    return ClusterRow(row) if row else None


def require_cluster(tx: Tx, ctx: Ctx, ref: str | None, *, active: bool = True) -> ClusterRow:
    """The cluster, or ClusterNotFoundException as ECS answers for unknown and deleted clusters."""
    c = find_cluster(tx, ctx, ref)
    if c is None or (active and not c.active):
        raise ClusterNotFoundException("Cluster not found.")
    return c


def bump_cluster(tx: Tx, cluster_arn: str, **deltas: int) -> None:
    """Adjust the cluster's counters in the caller's transaction (e.g. running_tasks=+1)."""
    moved = {f"d_{c}": d for c, d in deltas.items() if d}
    if moved:
        tx.run(_bump_stmt(tuple(c for c, d in deltas.items() if d)), a=cluster_arn, **moved)


def cluster_scoped_arn(ctx: Ctx, cluster: ClusterRow, ref: str, kind: str, id_re: re.Pattern[str],
                       build: Callable[[str, str, str, str], str]) -> str | None:
    """The ARN ``ref`` (an ID, or an ARN ``kind/CLUSTER/ID``) names in ``cluster``; None if it cannot."""
    if arns.is_arn(ref):
        a = arns.parse(ref)
        if a is None or a.kind != kind:
            return None
        parts = a.resource.split("/")
        if len(parts) != 2 or parts[0] != cluster.name:
            return None
        return ref
    if not id_re.match(ref):
        return None
    return build(ctx.region, ctx.account_id, cluster.name, ref)


def cluster_name_from_arn(cluster_arn: str) -> str:
    return cluster_arn.rsplit("/", 1)[-1]


# -- paging ------------------------------------------------------------------

def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


def decode_token(token: str | None) -> Any:
    if not token:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidParameterException("Invalid nextToken") from None


def string_token(req: Doc) -> str:
    """The position a ``nextToken`` holds for lists paged by a string key ('' for the first page)."""
    after = decode_token(req.get("nextToken")) or ""
    if not isinstance(after, str):
        raise InvalidParameterException("Invalid nextToken")
    return after


def require_items(items: list[Any], what: str, limit: int) -> None:
    """The guard list parameters share: ``<what> cannot be empty.`` / ``cannot have more than N``."""
    if not items:
        raise InvalidParameterException(f"{what} cannot be empty.")
    if len(items) > limit:
        raise InvalidParameterException(f"{what} cannot have more than {limit} elements.")


def max_results(req: Doc, default: int, hi: int = 100) -> int:
    n = req.get("maxResults")
    if n is None:
        return default
    if not 1 <= n <= hi:
        raise InvalidParameterException(f"maxResults must be between 1 and {hi}.")
    return int(n)


# -- tags --------------------------------------------------------------------

_TAGS_OF = prepare(select(tt.c.key, tt.c.value).where(tt.c.resource_arn == bindparam("a"))
                   .order_by(tt.c.key))
_TAG_DEL_ONE = prepare(delete(tt).where(tt.c.resource_arn == bindparam("a"), tt.c.key == bindparam("k")))
_TAG_DEL_ALL = prepare(delete(tt).where(tt.c.resource_arn == bindparam("a")))
_TAG_INS = prepare(insert(tt))
MAX_TAGS = 50


_ASCII_TAG_TEXT = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")


def _tag_text_ok(text: str) -> bool:
    """The model's pattern for tag keys and values: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*."""
    if _ASCII_TAG_TEXT.fullmatch(text):  # the common case, without a lookup per character
        return True
    return all(unicodedata.category(ch)[0] in "LZN" or ch in "_.:/=+-@" for ch in text)


def validate_tags(tags: list[Doc]) -> None:
    limit = quotas.limit("tags_per_resource")
    if len(tags) > limit:
        raise InvalidParameterException(f"Too many tags: a resource can have at most {limit} tags.")
    seen: set[str] = set()
    for t in tags:
        key = t.get("key")
        if not key or len(key) > 128:
            raise InvalidParameterException("Tag keys must be between 1 and 128 characters.")
        if key.lower().startswith("aws:"):
            raise InvalidParameterException("Tag keys cannot start with the reserved prefix 'aws:'.")
        value = t.get("value") or ""
        if len(value) > 256:
            raise InvalidParameterException("Tag values must be at most 256 characters.")
        if not _tag_text_ok(key) or not _tag_text_ok(value):
            raise InvalidParameterException(
                "Tag keys and values may contain only letters, numbers, spaces and _ . : / = + - @")
        if key in seen:
            raise InvalidParameterException(f"Duplicate tag key: {key}")
        seen.add(key)


def get_tags(tx: Tx, arn: str) -> list[Doc]:
    return [{"key": k, "value": v} for k, v in tx.all(_TAGS_OF, a=arn)]


def put_tags(tx: Tx, arn: str, tags: list[Doc], new: bool = False) -> None:
    """Add or overwrite tags; the total may not pass the tags_per_resource quota (50).

    ``new=True`` for an ARN that has never existed (a new task, a new revision) whose caller
    has already checked the tags with validate_tags, before writing anything: nothing can be
    overwritten and the count is bounded, so the tags are only inserted.
    """
    if new:
        for t in tags:
            tx.insert(_TAG_INS, resource_arn=arn, key=t["key"], value=t.get("value", ""))
        return
    validate_tags(tags)
    for t in tags:
        tx.run(_TAG_DEL_ONE, a=arn, k=t["key"])
        tx.insert(_TAG_INS, resource_arn=arn, key=t["key"], value=t.get("value", ""))
    limit = quotas.limit("tags_per_resource")
    if len(tx.all(_TAGS_OF, a=arn)) > limit:
        raise InvalidParameterException(f"Too many tags: a resource can have at most {limit} tags.")


def remove_tags(tx: Tx, arn: str, keys: list[str] | None = None) -> None:
    if keys is None:
        tx.run(_TAG_DEL_ALL, a=arn)
        return
    for k in keys:
        tx.run(_TAG_DEL_ONE, a=arn, k=k)
