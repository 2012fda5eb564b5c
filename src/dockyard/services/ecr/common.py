"""Pieces every ECR operation module shares: repository lookup, names, ARNs, paging."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, select

from dockyard.services.context import Ctx
from dockyard.services.ecr.errors import InvalidParameterException, repository_not_found
from dockyard.services.ecs.common import decode_token, encode_token
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.store import Tx, prepare

Doc = dict[str, Any]

__all__ = ["Doc", "Repo", "decode_token", "encode_token"]

# ECR's own regular expression for repository names (the model's, with the same language).
_NAME_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_NAME_RULE = "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
# Tags as the distribution spec allows them, with ECR's 300-character limit.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,299}")
DIGEST_RE = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")

_REPO = prepare(select(rt.c.arn, rt.c.name, rt.c.created_at, rt.c.doc, rt.c.policy, rt.c.lifecycle_policy,
                       rt.c.lifecycle_updated_at)
                .where(rt.c.account_id == bindparam("acct"), rt.c.region == bindparam("r"),
                       rt.c.name == bindparam("n")))


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def loads(raw: bytes | memoryview) -> Doc:
    return orjson.loads(bytes(raw))  # type: ignore[no-any-return]


def repository_arn(ctx: Ctx, name: str) -> str:
    return f"arn:aws:ecr:{ctx.region}:{ctx.account_id}:repository/{name}"


def check_name(name: str) -> None:
    if not 2 <= len(name) <= 256 or not _NAME_RE.fullmatch(name):
        raise InvalidParameterException(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            f"'must satisfy regular expression '{_NAME_RULE}''")


def registry_of(ctx: Ctx, req: Doc) -> str:
    """The registry a request names (its own account's unless ``registryId`` says otherwise)."""
    return str(req.get("registryId") or ctx.account_id)


@dataclass(slots=True)
class Repo:
    arn: str
    name: str
    created_at: float
    doc_raw: bytes
    policy: bytes | None
    lifecycle_policy: bytes | None
    lifecycle_updated_at: float | None

    @property
    def doc(self) -> Doc:
        return loads(self.doc_raw)

    @property
    def mutability(self) -> str:
        return str(self.doc.get("imageTagMutability", "MUTABLE"))


def find_repo(tx: Tx, ctx: Ctx, name: str) -> Repo | None:
    row = tx.one(_REPO, acct=ctx.account_id, r=ctx.region, n=name)
    if row is None:
        return None
    return Repo(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]) if row[4] is not None else None,
                bytes(row[5]) if row[5] is not None else None, row[6])


def require_repo(tx: Tx, ctx: Ctx, req: Doc, key: str = "repositoryName") -> Repo:
    """The repository a request names, or RepositoryNotFoundException as ECR words it.

    Another account's registry holds nothing here: this server keeps one registry per account.
    """
    name = req[key]
    check_name(name)
    registry = registry_of(ctx, req)
    repo = find_repo(tx, ctx, name) if registry == ctx.account_id else None
    if repo is None:
        raise repository_not_found(name, registry)
    return repo


def max_results(req: Doc, default: int = 100, hi: int = 1000) -> int:
    n = req.get("maxResults")
    if n is None:
        return default
    if not 1 <= n <= hi:
        raise InvalidParameterException(
            f"Invalid parameter at 'maxResults' failed to satisfy constraint: "
            f"'Member must have value less than or equal to {hi}'")
    return int(n)


def token_after(req: Doc) -> Any:
    """The position a ``nextToken`` holds (None on the first page)."""
    return decode_token(req.get("nextToken"))
