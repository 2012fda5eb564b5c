"""Who may push and pull: repository policies (IAM resource policies) and the caller's key.

Dockyard has no identity policies: an access key may do whatever its account may. So, as IAM
evaluates a request when only a resource policy applies:

1. an explicit ``Deny`` statement matching the caller and the action refuses it (for callers of
   the repository's own account too);
2. otherwise a caller of the repository's own account is allowed;
3. a caller of another account is allowed only by an ``Allow`` statement matching it.

Principals: ``"*"``, ``{"AWS": "*"}``, ``{"AWS": "<account id>"}`` and
``{"AWS": "arn:aws:iam::<account>:root"}`` (every principal of that account),
``{"AWS": "<exact principal ARN>"}``, and lists of these. Other principal kinds (``Service``,
``Federated``) match no access key. Actions: exact names and ``*`` / ``?`` wildcards,
case-insensitively (``ecr:*``, ``ecr:Batch*``, ``ecr:*Image*``, ``*``).

Limitations, chosen to fail closed:

* ``Condition`` blocks are not evaluated: an Allow with a Condition grants nothing, and a Deny with
  a Condition denies nothing (it cannot be known to apply).
* ``NotPrincipal`` / ``NotAction``: an Allow using either grants nothing; a Deny using them denies
  when the caller/action is *not* listed (IAM's meaning, which only narrows what is allowed).
* ``Resource`` in a repository policy is ignored (the policy is attached to one repository).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fnmatch import translate

import orjson

from dockyard.api.errors import AccessDeniedException
from dockyard.services.context import Ctx
from dockyard.services.ecr.common import Doc, Repo, check_name, find_repo, registry_of
from dockyard.services.ecr.errors import repository_not_found
from dockyard.state.store import Tx

__all__ = [
    "PULL_ACTIONS",
    "PUSH_ACTIONS",
    "AccessDeniedException",
    "allowed",
    "check",
    "decide",
    "denied_message",
    "repo_account",
    "require_repo_for",
]

PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
PUSH_ACTIONS = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")

ALLOW, DENY, IMPLICIT = "allow", "deny", "implicit"


@dataclass(frozen=True, slots=True)
class _Statement:
    allow: bool
    principals: tuple[str, ...] | None   # None: "*" (anyone)
    not_principal: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    conditional: bool


_ANY: tuple[_Statement, ...] = ()
_CACHE: dict[bytes, tuple[_Statement, ...]] = {}
_CACHE_MAX = 4096
_ACTION_RE: dict[str, re.Pattern[str]] = {}


def _action_pattern(text: str) -> re.Pattern[str]:
    pat = _ACTION_RE.get(text)
    if pat is None:
        # fnmatch's translation, but only * and ? are special (IAM has no [...] classes).
        escaped = text.replace("[", "[[]")
        pat = re.compile(translate(escaped), re.IGNORECASE)
        if len(_ACTION_RE) < 10000:
            _ACTION_RE[text] = pat
    return pat


def _strings(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str)]
    return []


def _principals(v: object) -> tuple[str, ...] | None:
    if v == "*":
        return None
    if isinstance(v, dict):
        aws = v.get("AWS")
        if aws == "*" or (isinstance(aws, list) and "*" in aws):
            return None
        return tuple(_strings(aws))
    return ()


def _parse(raw: bytes) -> tuple[_Statement, ...]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _ANY
    stmts = doc.get("Statement") if isinstance(doc, dict) else None
    if isinstance(stmts, dict):
        stmts = [stmts]
    if not isinstance(stmts, list):
        return _ANY
    out = []
    for st in stmts:
        if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
            continue
        not_principal = "Principal" not in st and "NotPrincipal" in st
        not_action = "Action" not in st and "NotAction" in st
        out.append(_Statement(
            allow=st["Effect"] == "Allow",
            principals=_principals(st.get("NotPrincipal") if not_principal else st.get("Principal")),
            not_principal=not_principal,
            actions=tuple(_action_pattern(a) for a in _strings(st.get("NotAction") if not_action
                                                               else st.get("Action"))),
            not_action=not_action,
            conditional=bool(st.get("Condition"))))
    return tuple(out)


def _statements(policy_text: bytes | str) -> tuple[_Statement, ...]:
    raw = policy_text.encode() if isinstance(policy_text, str) else bytes(policy_text)
    hit = _CACHE.get(raw)
    if hit is None:
        hit = _parse(raw)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[raw] = hit
    return hit


def _account_of(principal_arn: str) -> str:
    parts = principal_arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _principal_matches(principals: tuple[str, ...] | None, principal_arn: str, caller_account: str) -> bool:
    if principals is None:
        return True
    for p in principals:
        if p == principal_arn:
            return True
        if p == caller_account or p == f"arn:aws:iam::{caller_account}:root":
            return True
    return False


def _action_matches(patterns: tuple[re.Pattern[str], ...], action: str) -> bool:
    return any(p.match(action) for p in patterns)


def decide(policy_text: bytes | str | None, principal_arn: str, caller_account: str, repo_account: str,
           action: str) -> str:
    """ALLOW, DENY (an explicit deny) or IMPLICIT (another account's caller that nothing allows)."""
    granted = False
    if policy_text:
        for st in _statements(policy_text):
            if st.conditional:
                continue  # conditions are not evaluated: neither grants nor denies
            who = _principal_matches(st.principals, principal_arn, caller_account)
            what = _action_matches(st.actions, action)
            if st.not_principal:
                if st.allow:
                    continue  # an Allow with NotPrincipal grants nothing here
                who = not who
            if st.not_action:
                if st.allow:
                    continue
                what = not what
            if who and what:
                if not st.allow:
                    return DENY
                granted = True
    if caller_account == repo_account or granted:
        return ALLOW
    return IMPLICIT


def allowed(policy_text: bytes | str | None, principal_arn: str, caller_account: str, repo_account: str,
            action: str) -> bool:
    """Whether the caller may perform ``action`` on a repository with this policy (module docstring)."""
    return decide(policy_text, principal_arn, caller_account, repo_account, action) == ALLOW


def denied_message(principal_arn: str, action: str, repository_arn: str, explicit: bool) -> str:
    why = ("with an explicit deny in a resource-based policy" if explicit
           else f"because no resource-based policy allows the {action} action")
    return f"User: {principal_arn} is not authorized to perform: {action} on resource: {repository_arn} {why}"


def repo_account(repository_arn: str) -> str:
    """The account of an ``arn:aws:ecr:REGION:ACCOUNT:repository/NAME``."""
    return repository_arn.split(":")[4]


def verdict(repo: Repo, ctx: Ctx, action: str) -> str | None:
    """None when the caller may; otherwise the message ECR answers."""
    result = decide(repo.policy, ctx.principal_arn, ctx.account_id, repo_account(repo.arn), action)
    if result == ALLOW:
        return None
    return denied_message(ctx.principal_arn, action, repo.arn, result == DENY)


def check(repo: Repo, ctx: Ctx, action: str) -> None:
    """AccessDeniedException (HTTP 400, as ECR answers it) unless the caller may."""
    msg = verdict(repo, ctx, action)
    if msg is not None:
        raise AccessDeniedException(msg)


def require_repo_for(tx: Tx, ctx: Ctx, req: Doc, action: str, key: str = "repositoryName") -> Repo:
    """``require_repo`` that honours ``registryId``: the repository in that account (this region),
    and the caller must be allowed ``action`` on it."""
    name = req[key]
    check_name(name)
    registry = registry_of(ctx, req)
    where = ctx if registry == ctx.account_id else replace(ctx, account_id=registry)
    repo = find_repo(tx, where, name)
    if repo is None:
        raise repository_not_found(name, registry)
    check(repo, ctx, action)
    return repo
