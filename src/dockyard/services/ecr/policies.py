"""Repository policies (Set/Get/DeleteRepositoryPolicy) and lifecycle policies
(Put/Get/DeleteLifecyclePolicy). Texts are kept as given; they are only checked here."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import bindparam, update

from dockyard.services.context import Ctx
from dockyard.services.ecr.common import Doc, require_repo
from dockyard.services.ecr.errors import (
    InvalidParameterException,
    LifecyclePolicyNotFoundException,
    RepositoryPolicyNotFoundException,
)
from dockyard.services.ecr.registry import ecr
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.store import Tx, prepare

_SET_POLICY = prepare(update(rt).where(rt.c.arn == bindparam("a")).values(policy=bindparam("p")))
_SET_LIFECYCLE = prepare(update(rt).where(rt.c.arn == bindparam("a"))
                         .values(lifecycle_policy=bindparam("p"), lifecycle_updated_at=bindparam("t")))


# -- repository policy -------------------------------------------------------

def _invalid_policy() -> InvalidParameterException:
    return InvalidParameterException(
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'")


def check_repository_policy(text: str) -> None:
    """An IAM resource policy: a JSON object whose statements have Effect, a principal and actions."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _invalid_policy() from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise _invalid_policy()
    statements = doc["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise _invalid_policy()
    for st in statements:
        if (not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny")
                or not ("Principal" in st or "NotPrincipal" in st)
                or not ("Action" in st or "NotAction" in st)):
            raise _invalid_policy()


def _no_policy(name: str, registry: str) -> RepositoryPolicyNotFoundException:
    return RepositoryPolicyNotFoundException(
        f"Repository policy does not exist for the repository with name '{name}' "
        f"in the registry with id '{registry}'")


@ecr.op("SetRepositoryPolicy", write=True)
def set_repository_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    text: str = req["policyText"]
    check_repository_policy(text)
    tx.run(_SET_POLICY, a=repo.arn, p=text.encode())
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "policyText": text}


@ecr.op("GetRepositoryPolicy", write=False)
def get_repository_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    if repo.policy is None:
        raise _no_policy(repo.name, ctx.account_id)
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "policyText": repo.policy.decode()}


@ecr.op("DeleteRepositoryPolicy", write=True)
def delete_repository_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    if repo.policy is None:
        raise _no_policy(repo.name, ctx.account_id)
    tx.run(_SET_POLICY, a=repo.arn, p=None)
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "policyText": repo.policy.decode()}


# -- lifecycle policy --------------------------------------------------------

class _Invalid(ValueError):
    pass


def _lifecycle_error(why: str) -> InvalidParameterException:
    return InvalidParameterException(
        f"Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
        f"'Lifecycle policy validation failure: {why}'")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_rule(rule: Any) -> int:
    """One rule's checks; returns its rulePriority."""
    if not isinstance(rule, dict):
        raise _Invalid("instance type is not object (expected [\"object\"])")
    missing = sorted({"rulePriority", "selection", "action"} - rule.keys())
    if missing:
        raise _Invalid(f"object has missing required properties ({missing})")
    extra = sorted(rule.keys() - {"rulePriority", "description", "selection", "action"})
    if extra:
        raise _Invalid(f"object instance has properties which are not allowed by the schema: {extra}")
    prio = rule["rulePriority"]
    if not _int(prio) or not 1 <= prio <= 1000:
        raise _Invalid("rulePriority must be an integer between 1 and 1000")
    if "description" in rule and not isinstance(rule["description"], str):
        raise _Invalid("description must be a string")
    sel = rule["selection"]
    if not isinstance(sel, dict):
        raise _Invalid("selection must be an object")
    missing = sorted({"tagStatus", "countType", "countNumber"} - sel.keys())
    if missing:
        raise _Invalid(f"object has missing required properties ({missing})")
    extra = sorted(sel.keys() - {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit",
                                 "countNumber", "storageClass"})
    if extra:
        raise _Invalid(f"object instance has properties which are not allowed by the schema: {extra}")
    status = sel["tagStatus"]
    if status not in ("tagged", "untagged", "any"):
        raise _Invalid(f"instance value ({status!r}) not found in enum (possible values: "
                       "[\"tagged\",\"untagged\",\"any\"])")
    prefixes, patterns = sel.get("tagPrefixList"), sel.get("tagPatternList")
    for lst, what in ((prefixes, "tagPrefixList"), (patterns, "tagPatternList")):
        if lst is not None and (not isinstance(lst, list) or not lst
                                or not all(isinstance(x, str) and x for x in lst)):
            raise _Invalid(f"{what} must be a non-empty list of non-empty strings")
    if status == "tagged":
        if prefixes is None and patterns is None:
            raise _Invalid("tagPrefixList or tagPatternList is required when tagStatus is tagged")
        if prefixes is not None and patterns is not None:
            raise _Invalid("tagPrefixList and tagPatternList cannot both be specified")
        if patterns is not None and any(p.count("*") > 4 for p in patterns):
            raise _Invalid("a tag pattern can contain at most 4 wildcards (*)")
    elif prefixes is not None or patterns is not None:
        raise _Invalid(f"tagPrefixList and tagPatternList can only be used when tagStatus is tagged, "
                       f"not {status}")
    ctype = sel["countType"]
    if ctype == "sinceImagePushed":
        if sel.get("countUnit") != "days":
            raise _Invalid("countUnit must be days when countType is sinceImagePushed")
    elif ctype == "imageCountMoreThan":
        if "countUnit" in sel:
            raise _Invalid("countUnit cannot be used when countType is imageCountMoreThan")
    else:
        raise _Invalid(f"instance value ({ctype!r}) not found in enum (possible values: "
                       "[\"imageCountMoreThan\",\"sinceImagePushed\"])")
    if not _int(sel["countNumber"]) or sel["countNumber"] < 1:
        raise _Invalid("countNumber must be an integer greater than or equal to 1")
    action = rule["action"]
    if not isinstance(action, dict) or action.get("type") != "expire":
        raise _Invalid("action type must be expire")
    return int(prio)


def check_lifecycle_policy(text: str) -> None:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _lifecycle_error("the policy is not valid JSON") from None
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list) or not doc["rules"]:
            raise _Invalid("object has missing required properties ([\"rules\"])")
        seen: set[int] = set()
        any_prio: list[int] = []
        for rule in doc["rules"]:
            prio = _check_rule(rule)
            if prio in seen:
                raise _Invalid(f"rulePriority {prio} is used by more than one rule")
            seen.add(prio)
            if rule["selection"]["tagStatus"] == "any":
                any_prio.append(prio)
        # A rule selecting any image must be evaluated last: it has the highest rulePriority.
        if any_prio and (len(any_prio) > 1 or any_prio[0] != max(seen)):
            raise _Invalid("a rule with tagStatus any must have the highest rulePriority and be the only one")
    except _Invalid as e:
        raise _lifecycle_error(str(e)) from None


def _no_lifecycle(name: str, registry: str) -> LifecyclePolicyNotFoundException:
    return LifecyclePolicyNotFoundException(
        f"Lifecycle policy does not exist for the repository with name '{name}' "
        f"in the registry with id '{registry}'")


@ecr.op("PutLifecyclePolicy", write=True)
def put_lifecycle_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    text: str = req["lifecyclePolicyText"]
    check_lifecycle_policy(text)
    tx.run(_SET_LIFECYCLE, a=repo.arn, p=text.encode(), t=ctx.now)
    tx.notify("ecr-lifecycle", repo.arn)
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "lifecyclePolicyText": text}


@ecr.op("GetLifecyclePolicy", write=False)
def get_lifecycle_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    if repo.lifecycle_policy is None:
        raise _no_lifecycle(repo.name, ctx.account_id)
    return {"registryId": ctx.account_id, "repositoryName": repo.name,
            "lifecyclePolicyText": repo.lifecycle_policy.decode()}


@ecr.op("DeleteLifecyclePolicy", write=True)
def delete_lifecycle_policy(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    if repo.lifecycle_policy is None:
        raise _no_lifecycle(repo.name, ctx.account_id)
    tx.run(_SET_LIFECYCLE, a=repo.arn, p=None, t=None)
    tx.notify("ecr-lifecycle", repo.arn)
    return {"registryId": ctx.account_id, "repositoryName": repo.name,
            "lifecyclePolicyText": repo.lifecycle_policy.decode()}
