"""Lifecycle policy evaluation (ECR's rule semantics) and the lifecycle policy preview operations
(Start/GetLifecyclePolicyPreview). ``controllers/ecr_lifecycle.py`` applies policies.

ECR's evaluation rules, as its user guide states them and its examples work them out:

- Rules are evaluated in ``rulePriority`` order, lowest first; an image is expired by exactly
  one rule or none.
- A rule *selects* the images matching its tag requirements: ``untagged`` (no tags), ``any``
  (every image), ``tagged`` with ``tagPrefixList`` / ``tagPatternList``: every entry of the
  list must match at least one of the image's tags (a list of several entries is an AND;
  patterns take ``*`` wildcards and match whole tags).
- ``imageCountMoreThan``: of the selected images, newest first by push time, all past the
  first ``countNumber`` are candidates. ``sinceImagePushed``: selected images pushed more than
  ``countNumber`` days ago are candidates.
- A selected image still counts for a rule even when a higher-priority rule selected it
  (expired or kept), but an image that matched the tag requirements of a higher-priority rule
  cannot be expired by a lower-priority one (ECR's "Example A").
- Here, in addition: a manifest still referenced by a manifest that stays (an image index
  listing it, or a referrer whose ``subject`` it is) is not expired, as BatchDeleteImage
  would refuse it; the expired images are returned indexes first, so deleting them in
  order never leaves a dangling reference.

Previews are kept in this process's memory (one per repository, the latest), not in the store:
they are lost on restart and not shared between servers on one PostgreSQL store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import bindparam, select

from dockyard.api.errors import AwsError
from dockyard.services.context import Ctx
from dockyard.services.ecr.common import Doc, encode_token, require_repo, token_after
from dockyard.services.ecr.errors import InvalidParameterException, LifecyclePolicyNotFoundException
from dockyard.services.ecr.policies import check_lifecycle_policy
from dockyard.services.ecr.registry import ecr
from dockyard.state.schema import ecr_image_refs as reft
from dockyard.state.schema import ecr_image_tags as tagt
from dockyard.state.schema import ecr_images as it
from dockyard.state.store import Tx, prepare

DAY = 86400.0


class LifecyclePolicyPreviewNotFoundException(AwsError):
    code = "LifecyclePolicyPreviewNotFoundException"


# -- the rule engine (pure) --------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImageFacts:
    digest: str
    tags: tuple[str, ...]
    pushed_at: float
    # Digests of the manifests in the repository that reference this one (indexes, referrers).
    parents: frozenset[str] = field(default_factory=frozenset)


def _pattern(p: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in p.split("*")))


class _Rule:
    __slots__ = ("count", "count_type", "patterns", "prefixes", "priority", "status")

    def __init__(self, rule: Doc) -> None:
        sel = rule["selection"]
        self.priority = int(rule["rulePriority"])
        self.status = str(sel["tagStatus"])
        self.prefixes: list[str] | None = sel.get("tagPrefixList")
        self.patterns = [_pattern(p) for p in sel["tagPatternList"]] if sel.get("tagPatternList") else None
        self.count_type = str(sel["countType"])
        self.count = int(sel["countNumber"])

    def selects(self, img: ImageFacts) -> bool:
        if self.status == "any":
            return True
        if self.status == "untagged":
            return not img.tags
        if not img.tags:
            return False
        if self.prefixes is not None:
            return all(any(t.startswith(p) for t in img.tags) for p in self.prefixes)
        if self.patterns is not None:
            return all(any(p.fullmatch(t) for t in img.tags) for p in self.patterns)
        return False

    def candidates(self, selected: list[ImageFacts], now: float) -> list[ImageFacts]:
        if self.count_type == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda i: (-i.pushed_at, i.digest))
            return newest_first[self.count:]
        cutoff = now - self.count * DAY
        return [i for i in selected if i.pushed_at < cutoff]


def _policy_doc(policy: Doc | str | bytes) -> Doc:
    return policy if isinstance(policy, dict) else orjson.loads(policy)  # type: ignore[no-any-return]


def evaluate(policy: Doc | str | bytes, images: Sequence[ImageFacts], now: float) -> list[tuple[str, int]]:
    """The images ``policy`` expires: (digest, rulePriority of the rule that expires it).

    Ordered for deletion: an index comes before the manifests it lists; otherwise by rule
    priority, then oldest first. ``policy`` is assumed valid (``check_lifecycle_policy``).
    """
    rules = sorted((_Rule(r) for r in _policy_doc(policy)["rules"]), key=lambda r: r.priority)
    by_digest = {i.digest: i for i in images}
    expired: dict[str, int] = {}
    claimed: set[str] = set()  # matched the tag requirements of a rule already evaluated
    for rule in rules:
        selected = [i for i in images if rule.selects(i)]
        for img in rule.candidates(selected, now):
            if img.digest not in claimed:
                expired[img.digest] = rule.priority
        claimed.update(i.digest for i in selected)
    # A manifest an index lists stays while that index stays (repeat: an index may be listed too).
    changed = True
    while changed:
        changed = False
        for d in list(expired):
            if any(p in by_digest and p not in expired for p in by_digest[d].parents):
                del expired[d]
                changed = True
    # Indexes before their children: depth = longest chain of expired parents above an image.
    depth: dict[str, int] = {}

    def depth_of(d: str, seen: frozenset[str] = frozenset()) -> int:
        if d not in depth:
            ps = [p for p in by_digest[d].parents if p in expired and p not in seen]
            depth[d] = 1 + max((depth_of(p, seen | {d}) for p in ps), default=-1)
        return depth[d]

    order = sorted(expired, key=lambda d: (depth_of(d), expired[d], by_digest[d].pushed_at, d))
    return [(d, expired[d]) for d in order]


# -- reading a repository's images -------------------------------------------

_IMAGES = prepare(select(it.c.digest, it.c.pushed_at).where(it.c.repository_arn == bindparam("a")))
_TAGS = prepare(select(tagt.c.digest, tagt.c.tag).where(tagt.c.repository_arn == bindparam("a")))
_REFS = prepare(select(reft.c.image_digest, reft.c.ref_digest).where(reft.c.repository_arn == bindparam("a")))


def image_facts(tx: Tx, repository_arn: str) -> list[ImageFacts]:
    """Every image of a repository with its tags, push time and the indexes that list it."""
    rows = tx.all(_IMAGES, a=repository_arn)
    digests = {r[0] for r in rows}
    tags: dict[str, list[str]] = {}
    for digest, tag in tx.all(_TAGS, a=repository_arn):
        tags.setdefault(digest, []).append(tag)
    parents: dict[str, set[str]] = {}
    for image, ref in tx.all(_REFS, a=repository_arn):
        # Manifests only (not blobs): an index's children, and also a referrer's subject, since
        # BatchDeleteImage (images.delete_image_id) refuses to delete an image another references.
        if ref in digests:
            parents.setdefault(ref, set()).add(image)
    return [ImageFacts(str(d), tuple(sorted(tags.get(d, ()))), float(pushed), frozenset(parents.get(d, ())))
            for d, pushed in rows]


# -- previews ----------------------------------------------------------------

@dataclass(slots=True)
class Preview:
    policy_text: str
    status: str
    results: list[Doc]  # LifecyclePolicyPreviewResult shapes, in deletion order


# (repository ARN, repository creation time) -> the latest preview; the oldest go past MAX_PREVIEWS
# (a deleted repository's preview is never asked for again).
_previews: dict[tuple[str, float], Preview] = {}
MAX_PREVIEWS = 1000


def preview_results(policy: Doc | str | bytes, images: Iterable[ImageFacts], now: float) -> list[Doc]:
    facts = {i.digest: i for i in images}
    out = []
    for digest, prio in evaluate(policy, list(facts.values()), now):
        img = facts[digest]
        r: Doc = {"imageDigest": digest, "imagePushedAt": img.pushed_at, "action": {"type": "EXPIRE"},
                  "appliedRulePriority": prio}
        if img.tags:
            r["imageTags"] = list(img.tags)
        out.append(r)
    return out


def _no_lifecycle(name: str, registry: str) -> LifecyclePolicyNotFoundException:
    return LifecyclePolicyNotFoundException(
        f"Lifecycle policy does not exist for the repository with name '{name}' "
        f"in the registry with id '{registry}'")


@ecr.op("StartLifecyclePolicyPreview", write=True)
def start_lifecycle_policy_preview(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    """Evaluates at once (the preview is COMPLETE when this answers), against the given text or
    the repository's saved policy; nothing is deleted."""
    repo = require_repo(tx, ctx, req)
    text = req.get("lifecyclePolicyText")
    if text is None:
        if repo.lifecycle_policy is None:
            raise _no_lifecycle(repo.name, ctx.account_id)
        text = repo.lifecycle_policy.decode()
    else:
        check_lifecycle_policy(text)
    # Evaluated here and now, so a preview is never IN_PROGRESS when another one starts
    # (ECR's LifecyclePolicyPreviewInProgressException cannot happen).
    key = (repo.arn, repo.created_at)
    try:
        preview = Preview(text, "COMPLETE", preview_results(text, image_facts(tx, repo.arn), ctx.now))
    except (ValueError, KeyError, TypeError):  # a text the checks let through but the engine cannot read
        preview = Preview(text, "FAILED", [])
    _previews.pop(key, None)
    _previews[key] = preview
    while len(_previews) > MAX_PREVIEWS:
        del _previews[next(iter(_previews))]
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "lifecyclePolicyText": text,
            "status": preview.status}


def _bad(member: str, why: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter at '{member}' failed to satisfy constraint: '{why}'")


def _wanted(result: Doc, image_ids: list[Doc] | None, status: str) -> bool:
    tags = result.get("imageTags", [])
    if status == "TAGGED" and not tags:
        return False
    if status == "UNTAGGED" and tags:
        return False
    if not image_ids:
        return True
    for i in image_ids:
        digest, tag = i.get("imageDigest"), i.get("imageTag")
        if (digest is None or digest == result["imageDigest"]) and (tag is None or tag in tags) \
                and (digest is not None or tag is not None):
            return True
    return False


@ecr.op("GetLifecyclePolicyPreview", write=False)
def get_lifecycle_policy_preview(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo(tx, ctx, req)
    preview = _previews.get((repo.arn, repo.created_at))
    if preview is None:
        raise LifecyclePolicyPreviewNotFoundException(
            f"Lifecycle policy preview does not exist for the repository with name '{repo.name}' "
            f"in the registry with id '{ctx.account_id}'")
    image_ids = req.get("imageIds")
    if image_ids and (req.get("maxResults") is not None or req.get("nextToken") is not None):
        raise _bad("maxResults", "maxResults and nextToken cannot be used with imageIds")
    status = str((req.get("filter") or {}).get("tagStatus") or "ANY")
    results = [r for r in preview.results if _wanted(r, image_ids, status)]
    n = int(req.get("maxResults") or 100)
    after = token_after(req)
    start = 0
    if after is not None:
        if not isinstance(after, int) or after < 0:
            raise _bad("nextToken", "Invalid token")
        start = after
    page = results[start:start + n]
    resp: Doc = {"registryId": ctx.account_id, "repositoryName": repo.name,
                 "lifecyclePolicyText": preview.policy_text, "status": preview.status,
                 "previewResults": page,
                 "summary": {"expiringImageTotalCount": len(preview.results)}}
    if start + n < len(results):
        resp["nextToken"] = encode_token(start + n)
    return resp
