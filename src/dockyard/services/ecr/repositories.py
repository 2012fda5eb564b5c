"""Repositories: Create/Describe/DeleteRepository, PutImageTagMutability,
PutImageScanningConfiguration, DescribeRegistry and the repository tags."""

from __future__ import annotations

import unicodedata

from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.services.context import Ctx
from dockyard.services.ecr import config
from dockyard.services.ecr.common import (
    Doc,
    Repo,
    check_name,
    dumps,
    encode_token,
    loads,
    max_results,
    registry_of,
    repository_arn,
    require_repo,
    token_after,
)
from dockyard.services.ecr.errors import (
    InvalidParameterException,
    InvalidTagParameterException,
    RepositoryAlreadyExistsException,
    RepositoryNotEmptyException,
    TooManyTagsException,
    repository_not_found,
)
from dockyard.services.ecr.registry import ecr
from dockyard.services.ecs.common import get_tags, put_tags, remove_tags
from dockyard.state.schema import ecr_image_refs as reft
from dockyard.state.schema import ecr_image_tags as tagt
from dockyard.state.schema import ecr_images as it
from dockyard.state.schema import ecr_layers as lt
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.schema import ecr_uploads as ut
from dockyard.state.store import Tx, prepare

MAX_TAGS = 50

_INSERT = prepare(insert(rt))
_SET_DOC = prepare(update(rt).where(rt.c.arn == bindparam("a")).values(doc=bindparam("d")))
_DELETE = prepare(delete(rt).where(rt.c.arn == bindparam("a")))
_PAGE = prepare(select(rt.c.name, rt.c.doc)
                .where(rt.c.account_id == bindparam("acct"), rt.c.region == bindparam("r"),
                       rt.c.name > bindparam("after"))
                .order_by(rt.c.name).limit(bindparam("n")))
_HAS_REPO = prepare(select(rt.c.arn).where(rt.c.arn == bindparam("a")))
_HAS_IMAGE = prepare(select(it.c.digest).where(it.c.repository_arn == bindparam("a")).limit(1))
# Everything a repository owns goes with it (DeleteRepository force=true).
_DELETE_OWNED = [prepare(delete(t).where(t.c.repository_arn == bindparam("a")))
                 for t in (tagt, reft, it, lt, ut)]

_MUTABILITY_WITH_FILTERS = ("IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")


def _mutability(req: Doc, doc: Doc) -> None:
    """Set imageTagMutability (and its exclusion filters, which only the *_WITH_EXCLUSION kinds take)."""
    mode = req.get("imageTagMutability") or "MUTABLE"
    filters = req.get("imageTagMutabilityExclusionFilters")
    if mode in _MUTABILITY_WITH_FILTERS and not filters:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
            f"'must be provided when imageTagMutability is {mode}'")
    if mode not in _MUTABILITY_WITH_FILTERS and filters:
        raise InvalidParameterException(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
            f"'cannot be provided when imageTagMutability is {mode}'")
    doc["imageTagMutability"] = mode
    if filters:
        doc["imageTagMutabilityExclusionFilters"] = filters
    else:
        doc.pop("imageTagMutabilityExclusionFilters", None)


def _tag_text_ok(text: str) -> bool:
    return all(unicodedata.category(ch)[0] in "LZN" or ch in "_.:/=+-@" for ch in text)


def _ecs_tags(tags: list[Doc]) -> list[Doc]:
    """ECR's {Key, Value} tags, checked as ECR checks them, in the shared tags table's {key, value}."""
    seen: set[str] = set()
    out = []
    for t in tags:
        key, value = t.get("Key"), t.get("Value")
        if key is None or value is None:
            raise InvalidTagParameterException("Tag Key and Value are both required.")
        if not 1 <= len(key) <= 128 or len(value) > 256 or not _tag_text_ok(key) or not _tag_text_ok(value):
            raise InvalidTagParameterException(
                "Tag keys must be 1-128 and values at most 256 characters of letters, numbers, spaces "
                "and _ . : / = + - @")
        if key.lower().startswith("aws:"):
            raise InvalidTagParameterException("Tag keys cannot start with the reserved prefix 'aws:'.")
        if key in seen:
            raise InvalidTagParameterException(f"Duplicate tag key: {key}")
        seen.add(key)
        out.append({"key": key, "value": value})
    return out


def _add_tags(tx: Tx, arn: str, tags: list[Doc]) -> None:
    converted = _ecs_tags(tags)
    existing = {t["key"] for t in get_tags(tx, arn)}
    if len(existing | {t["key"] for t in converted}) > MAX_TAGS:
        raise TooManyTagsException(f"A repository can have at most {MAX_TAGS} tags.")
    if converted:
        put_tags(tx, arn, converted)


@ecr.op("CreateRepository", write=True)
def create_repository(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name = req["repositoryName"]
    check_name(name)
    registry = registry_of(ctx, req)
    if registry != ctx.account_id:
        raise InvalidParameterException(
            f"Invalid parameter at 'registryId' failed to satisfy constraint: "
            f"'registry id must be the caller's account id {ctx.account_id}'")
    enc = req.get("encryptionConfiguration") or {"encryptionType": "AES256"}
    if enc["encryptionType"] == "AES256" and enc.get("kmsKey"):
        raise InvalidParameterException(
            "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
            "'kmsKey can only be specified when encryptionType is KMS or KMS_DSSE'")
    arn = repository_arn(ctx, name)
    doc: Doc = {
        "repositoryArn": arn, "registryId": ctx.account_id, "repositoryName": name,
        "repositoryUri": f"{config.registry_host()}/{name}", "createdAt": ctx.now,
    }
    _mutability(req, doc)
    doc["imageScanningConfiguration"] = {
        "scanOnPush": bool((req.get("imageScanningConfiguration") or {}).get("scanOnPush", False))}
    doc["encryptionConfiguration"] = enc
    tags = req.get("tags") or []
    if len(tags) > MAX_TAGS:
        raise TooManyTagsException(f"A repository can have at most {MAX_TAGS} tags.")
    if tx.one(_HAS_REPO, a=arn) is not None:
        raise RepositoryAlreadyExistsException(
            f"The repository with name '{name}' already exists in the registry with id '{ctx.account_id}'")
    tx.insert(_INSERT, arn=arn, account_id=ctx.account_id, region=ctx.region, name=name,
              created_at=ctx.now, doc=dumps(doc))
    # A repository created again under a deleted one's name starts untagged.
    remove_tags(tx, arn)
    _add_tags(tx, arn, tags)
    tx.notify("ecr-repository", arn)
    return {"repository": doc}



@ecr.op("DescribeRepositories", write=False)
def describe_repositories(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    names = req.get("repositoryNames")
    registry = registry_of(ctx, req)
    if names:
        if "maxResults" in req or "nextToken" in req:
            raise InvalidParameterException(
                "Invalid parameter: maxResults and nextToken cannot be used with repositoryNames")
        out = []
        for name in names:
            out.append(require_repo(tx, ctx, {"repositoryName": name, "registryId": registry}).doc)
        return {"repositories": out}
    n = max_results(req)
    after = token_after(req) or ""
    if not isinstance(after, str):
        raise InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: "
                                        "'Invalid token'")
    if registry != ctx.account_id:
        return {"repositories": []}
    rows = tx.all(_PAGE, acct=ctx.account_id, r=ctx.region, after=after, n=n + 1)
    resp: Doc = {"repositories": [loads(r[1]) for r in rows[:n]]}
    if len(rows) > n:
        resp["nextToken"] = encode_token(rows[n - 1][0])
    return resp


@ecr.op("DeleteRepository", write=True)
def delete_repository(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    if not req.get("force") and tx.one(_HAS_IMAGE, a=repo.arn) is not None:
        raise RepositoryNotEmptyException(
            f"The repository with name '{repo.name}' in registry with id '{ctx.account_id}' "
            "cannot be deleted because it still contains images")
    for stmt in _DELETE_OWNED:
        tx.run(stmt, a=repo.arn)
    remove_tags(tx, repo.arn)
    tx.run(_DELETE, a=repo.arn)
    tx.notify("ecr-repository", repo.arn)
    return {"repository": repo.doc}


def _save(tx: Tx, repo: Repo, doc: Doc) -> None:
    tx.run(_SET_DOC, a=repo.arn, d=dumps(doc))
    tx.notify("ecr-repository", repo.arn)


@ecr.op("PutImageTagMutability", write=True)
def put_image_tag_mutability(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    doc = repo.doc
    _mutability(req, doc)
    _save(tx, repo, doc)
    out: Doc = {"registryId": ctx.account_id, "repositoryName": repo.name,
                "imageTagMutability": doc["imageTagMutability"]}
    if "imageTagMutabilityExclusionFilters" in doc:
        out["imageTagMutabilityExclusionFilters"] = doc["imageTagMutabilityExclusionFilters"]
    return out


@ecr.op("PutImageScanningConfiguration", write=True)
def put_image_scanning_configuration(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    doc = repo.doc
    doc["imageScanningConfiguration"] = {
        "scanOnPush": bool(req["imageScanningConfiguration"].get("scanOnPush", False))}
    _save(tx, repo, doc)
    return {"registryId": ctx.account_id, "repositoryName": repo.name,
            "imageScanningConfiguration": doc["imageScanningConfiguration"]}


@ecr.op("DescribeRegistry", write=False)
def describe_registry(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    # No replication: this server is one registry per account and region.
    return {"registryId": ctx.account_id, "replicationConfiguration": {"rules": []}}


# -- tags --------------------------------------------------------------------

def _tagged_repo(tx: Tx, ctx: Ctx, resource_arn: str) -> Repo:
    """The repository an ECR repository ARN names, in this account and region."""
    parts = resource_arn.split(":", 5)
    if (len(parts) != 6 or parts[0] != "arn" or parts[2] != "ecr" or not parts[5].startswith("repository/")
            or not parts[3] or not parts[4]):
        raise InvalidParameterException(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'")
    name = parts[5][len("repository/"):]
    if (parts[3], parts[4]) != (ctx.region, ctx.account_id):
        check_name(name)
        raise repository_not_found(name, parts[4])
    return require_repo(tx, ctx, {"repositoryName": name})


@ecr.op("TagResource", write=True)
def tag_resource(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = _tagged_repo(tx, ctx, req["resourceArn"])
    _add_tags(tx, repo.arn, req["tags"])
    return {}


@ecr.op("UntagResource", write=True)
def untag_resource(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = _tagged_repo(tx, ctx, req["resourceArn"])
    keys: list[str] = req["tagKeys"]
    for k in keys:
        if not 1 <= len(k) <= 128:
            raise InvalidTagParameterException("Tag keys must be between 1 and 128 characters.")
    remove_tags(tx, repo.arn, keys)
    return {}


@ecr.op("ListTagsForResource", write=False)
def list_tags_for_resource(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = _tagged_repo(tx, ctx, req["resourceArn"])
    return {"tags": [{"Key": t["key"], "Value": t["value"]} for t in get_tags(tx, repo.arn)]}
