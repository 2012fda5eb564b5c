"""Images: PutImage, BatchGetImage, ListImages, DescribeImages, BatchDeleteImage.

An image is an ``ecr_images`` row (the manifest bytes as pushed); tags are ``ecr_image_tags``
rows pointing at a digest; ``ecr_image_refs`` records what each manifest references.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.registry import manifests
from dockyard.services.context import Ctx
from dockyard.services.ecr.access import repo_account, require_repo_for
from dockyard.services.ecr.blob_port import blob_port
from dockyard.services.ecr.common import (
    DIGEST_RE,
    TAG_RE,
    Doc,
    Repo,
    dumps,
    encode_token,
    loads,
    max_results,
    token_after,
)
from dockyard.services.ecr.errors import (
    ImageAlreadyExistsException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    LayersNotFoundException,
    ReferencedImagesNotFoundException,
)
from dockyard.services.ecr.layers import layer
from dockyard.services.ecr.registry import ecr
from dockyard.state.schema import ecr_image_refs as reft
from dockyard.state.schema import ecr_image_tags as tagt
from dockyard.state.schema import ecr_images as it
from dockyard.state.store import Tx, prepare

_IMAGE = prepare(select(it.c.media_type, it.c.manifest)
                 .where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d")))
_DETAIL_COLS = (it.c.digest, it.c.media_type, it.c.artifact_media_type, it.c.size, it.c.pushed_at,
                it.c.last_pulled_at, it.c.doc)
_DETAIL = prepare(select(*_DETAIL_COLS)
                  .where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d")))
_ALL_DETAILS = prepare(select(*_DETAIL_COLS).where(it.c.repository_arn == bindparam("a")).order_by(it.c.digest))
_DIGESTS = prepare(select(it.c.digest).where(it.c.repository_arn == bindparam("a")).order_by(it.c.digest))
_ADD_IMAGE = prepare(insert(it))
_DEL_IMAGE = prepare(delete(it).where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d")))
_TAG = prepare(select(tagt.c.digest).where(tagt.c.repository_arn == bindparam("a"), tagt.c.tag == bindparam("t")))
_TAGS_OF = prepare(select(tagt.c.tag).where(tagt.c.repository_arn == bindparam("a"), tagt.c.digest == bindparam("d"))
                   .order_by(tagt.c.tag))
_ALL_TAGS = prepare(select(tagt.c.digest, tagt.c.tag).where(tagt.c.repository_arn == bindparam("a"))
                    .order_by(tagt.c.digest, tagt.c.tag))
_ADD_TAG = prepare(insert(tagt))
_MOVE_TAG = prepare(update(tagt).where(tagt.c.repository_arn == bindparam("a"), tagt.c.tag == bindparam("t"))
                    .values(digest=bindparam("d")))
_DEL_TAG = prepare(delete(tagt).where(tagt.c.repository_arn == bindparam("a"), tagt.c.tag == bindparam("t")))
_DEL_TAGS_OF = prepare(delete(tagt).where(tagt.c.repository_arn == bindparam("a"), tagt.c.digest == bindparam("d")))
_ADD_REF = prepare(insert(reft))
_DEL_REFS = prepare(delete(reft).where(reft.c.repository_arn == bindparam("a"), reft.c.image_digest == bindparam("d")))
_REFERRERS = prepare(select(reft.c.image_digest)
                     .where(reft.c.repository_arn == bindparam("a"), reft.c.ref_digest == bindparam("d")))


def _bad_param(member: str, why: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter at '{member}' failed to satisfy constraint: '{why}'")


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")))


def tag_is_immutable(repo_doc: Doc, tag: str) -> bool:
    """Whether the repository's setting forbids moving ``tag`` (exclusion filters are wildcards)."""
    mode = repo_doc.get("imageTagMutability", "MUTABLE")
    if mode == "IMMUTABLE":
        return True
    if mode == "MUTABLE":
        return False
    excluded = any(_wildcard(f["filter"]).fullmatch(tag)
                   for f in repo_doc.get("imageTagMutabilityExclusionFilters", []))
    # IMMUTABLE_WITH_EXCLUSION: matching tags stay mutable; MUTABLE_WITH_EXCLUSION: the reverse.
    return not excluded if mode == "IMMUTABLE_WITH_EXCLUSION" else excluded


def _tag_of(tx: Tx, repo: Repo, tag: str) -> str | None:
    row = tx.one(_TAG, a=repo.arn, t=tag)
    return str(row[0]) if row else None


def put_manifest(tx: Tx, repo: Repo, account_id: str, m: manifests.Manifest, tag: str | None, now: float,
                 *, exists_ok: bool) -> None:
    """Store a parsed manifest (and move ``tag`` to it): PutImage's and the /v2/ manifest PUT's effects.

    Every blob it references must be in the repository and on disk; each is touched before the
    manifest is committed (the blob store's gc contract). ``exists_ok``: pushing the same manifest
    (and tag) again is a no-op (the registry API) instead of ImageAlreadyExistsException (PutImage).
    """
    port = blob_port(tx)
    missing = [d for d in dict.fromkeys(m.blob_digests())
               if layer(tx, repo.arn, d) is None or port.touch(d) is None]
    if missing:
        raise LayersNotFoundException(
            f"Layers with digests '[{', '.join(missing)}]' required for pushing image into repository "
            f"with name '{repo.name}' in the registry with id '{account_id}' do not exist")
    children = [d.digest for d in m.manifests if tx.one(_IMAGE, a=repo.arn, d=d.digest) is None]
    if children:
        raise ReferencedImagesNotFoundException(
            f"Some of the images referenced by the manifest list do not exist in the repository with name "
            f"'{repo.name}' in the registry with id '{account_id}': [{', '.join(children)}]")
    exists = tx.one(_IMAGE, a=repo.arn, d=m.digest) is not None
    current = _tag_of(tx, repo, tag) if tag is not None else None
    if exists and (tag is None or current == m.digest):
        if exists_ok:
            return
        shown = f" and tag '{tag}'" if tag is not None else ""
        raise ImageAlreadyExistsException(
            f"Image with digest '{m.digest}'{shown} already exists in the repository with name "
            f"'{repo.name}' in registry with id '{account_id}'")
    if tag is not None and current is not None and tag_is_immutable(repo.doc, tag):
        raise ImageTagAlreadyExistsException(
            f"The image tag '{tag}' already exists in the '{repo.name}' repository and cannot be overwritten "
            "because the tag is immutable.")
    if not exists:
        doc: Doc = {}
        if m.subject is not None:
            doc["subjectManifestDigest"] = m.subject.digest
        tx.insert(_ADD_IMAGE, repository_arn=repo.arn, digest=m.digest, media_type=m.media_type,
                  artifact_media_type=m.artifact_type, manifest=m.raw, size=m.size, pushed_at=now,
                  last_pulled_at=None, doc=dumps(doc))
        for ref in dict.fromkeys(m.references()):
            tx.insert(_ADD_REF, repository_arn=repo.arn, image_digest=m.digest, ref_digest=ref)
    if tag is not None:
        if current is None:
            tx.insert(_ADD_TAG, repository_arn=repo.arn, tag=tag, digest=m.digest)
        else:  # a mutable tag moves; the image it left stays, untagged if that was its last tag
            tx.run(_MOVE_TAG, a=repo.arn, t=tag, d=m.digest)
    tx.notify("ecr-image", f"{repo.arn}@{m.digest}")


def manifest_of(tx: Tx, repo: Repo, reference: str) -> tuple[str, str, bytes] | None:
    """(digest, media type, bytes) of the manifest a tag or digest names in the repository, or None."""
    digest = reference if ":" in reference else _tag_of(tx, repo, reference)
    if digest is None:
        return None
    row = tx.one(_IMAGE, a=repo.arn, d=digest)
    return (digest, str(row[0]), bytes(row[1])) if row else None


def tags_of_repo(tx: Tx, repo: Repo) -> list[str]:
    return sorted(t for _, t in tx.all(_ALL_TAGS, a=repo.arn))


_PULLED = prepare(update(it).where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d"))
                  .values(last_pulled_at=bindparam("t")))


def record_pull(tx: Tx, repository_arn: str, digest: str, now: float) -> None:
    tx.run(_PULLED, a=repository_arn, d=digest, t=now)


# -- PutImage ----------------------------------------------------------------

@ecr.op("PutImage", write=True)
def put_image(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:PutImage")
    text: str = req["imageManifest"]
    raw = text.encode()
    given_type = req.get("imageManifestMediaType")
    if given_type is not None and given_type not in manifests.MANIFEST_TYPES:
        raise _bad_param("imageManifestMediaType", f"unsupported manifest media type {given_type}")
    try:
        m = manifests.parse(raw, given_type)
    except manifests.ManifestError as e:
        raise _bad_param("imageManifest", str(e)) from None
    if given_type is not None and given_type != m.media_type:
        raise _bad_param("imageManifestMediaType",
                         f"does not match the manifest's media type {m.media_type}")
    tag = req.get("imageTag")
    if tag is not None and not TAG_RE.fullmatch(tag):
        raise _bad_param("imageTag", "must satisfy regular expression '[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,299}'")
    given_digest = req.get("imageDigest")
    if given_digest is not None:
        if not DIGEST_RE.fullmatch(given_digest):
            raise _bad_param("imageDigest", "must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")
        if given_digest != m.digest:
            raise ImageDigestDoesNotMatchException(
                f"The provided image digest '{given_digest}' does not match the digest of the manifest "
                f"'{m.digest}'")
    put_manifest(tx, repo, repo_account(repo.arn), m, tag, ctx.now, exists_ok=False)
    image_id: Doc = {"imageDigest": m.digest}
    if tag is not None:
        image_id["imageTag"] = tag
    return {"image": {"registryId": repo_account(repo.arn), "repositoryName": repo.name, "imageId": image_id,
                      "imageManifest": text, "imageManifestMediaType": m.media_type}}


# -- resolving image ids -----------------------------------------------------

def _resolve(tx: Tx, repo: Repo, image_id: Doc) -> tuple[str | None, Doc | None]:
    """(digest, None) for an image id that names an image here, else (None, failure)."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")

    def fail(code: str, reason: str) -> tuple[None, Doc]:
        return None, {"imageId": image_id, "failureCode": code, "failureReason": reason}

    if digest is None and tag is None:
        return fail("MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null")
    if digest is not None and not DIGEST_RE.fullmatch(digest):
        return fail("InvalidImageDigest", "Invalid request parameters: image digest should satisfy the regex "
                                          "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")
    if tag is not None and not TAG_RE.fullmatch(tag):
        return fail("InvalidImageTag", "Invalid request parameters: image tag should satisfy the regex "
                                       "'[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,299}'")
    if tag is not None:
        found = _tag_of(tx, repo, tag)
        if found is None:
            return fail("ImageNotFound", "Requested image not found")
        if digest is not None and found != digest:
            return fail("ImageTagDoesNotMatchDigest", "Invalid request parameters: given tag does not map to "
                                                      "the given digest")
        return found, None
    if tx.one(_IMAGE, a=repo.arn, d=digest) is None:
        return fail("ImageNotFound", "Requested image not found")
    return digest, None


@ecr.op("BatchGetImage", write=False)
def batch_get_image(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:BatchGetImage")
    accepted = req.get("acceptedMediaTypes")
    images: list[Doc] = []
    failures: list[Doc] = []
    for image_id in req["imageIds"]:
        digest, failure = _resolve(tx, repo, image_id)
        if failure is not None:
            failures.append(failure)
            continue
        row = tx.one(_IMAGE, a=repo.arn, d=digest)
        assert row is not None
        media_type, raw = row[0], bytes(row[1])
        if accepted is not None and media_type not in accepted:
            # ECR does not convert between manifest formats either.
            failures.append({"imageId": image_id, "failureCode": "ImageNotFound",
                             "failureReason": f"Requested image's media type {media_type} is not in "
                                              "acceptedMediaTypes"})
            continue
        out_id: Doc = {"imageDigest": digest}
        if image_id.get("imageTag") is not None:
            out_id["imageTag"] = image_id["imageTag"]
        images.append({"registryId": repo_account(repo.arn), "repositoryName": repo.name, "imageId": out_id,
                       "imageManifest": raw.decode(), "imageManifestMediaType": media_type})
    return {"images": images, "failures": failures}


# -- ListImages / DescribeImages ---------------------------------------------

def _tag_status(req: Doc) -> str:
    return str((req.get("filter") or {}).get("tagStatus") or "ANY")


def _tags_by_digest(tx: Tx, repo: Repo) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for digest, tag in tx.all(_ALL_TAGS, a=repo.arn):
        out.setdefault(digest, []).append(tag)
    return out


def _page(req: Doc, keys: list[Any], default: int) -> tuple[int, int, str | None]:
    """[start, end) of the page of ``keys`` (sorted) the request asks for, and the next token."""
    n = max_results(req, default)
    after = token_after(req)
    start = 0
    if after is not None:
        if not isinstance(after, list):
            raise _bad_param("nextToken", "Invalid token")
        while start < len(keys) and keys[start] <= after:
            start += 1
    end = min(start + n, len(keys))
    return start, end, encode_token(keys[end - 1]) if end < len(keys) else None


@ecr.op("ListImages", write=False)
def list_images(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:ListImages")
    status = _tag_status(req)
    tags = _tags_by_digest(tx, repo)
    ids: list[Doc] = []
    keys: list[Any] = []
    for (digest,) in tx.all(_DIGESTS, a=repo.arn):
        its = tags.get(digest, [])
        if its and status in ("TAGGED", "ANY"):
            for t in its:
                ids.append({"imageDigest": digest, "imageTag": t})
                keys.append([digest, t])
        elif not its and status in ("UNTAGGED", "ANY"):
            ids.append({"imageDigest": digest})
            keys.append([digest, ""])
    start, end, token = _page(req, keys, 100)
    # The model's ImageIdentifierList has min 1: an empty page leaves the member out.
    resp: Doc = {"imageIds": ids[start:end]} if end > start else {}
    if token:
        resp["nextToken"] = token
    return resp


def _detail(ctx: Ctx, repo: Repo, row: tuple[Any, ...], tags: list[str]) -> Doc:
    digest, media_type, artifact, size, pushed, pulled, doc_raw = row
    d: Doc = {"registryId": repo_account(repo.arn), "repositoryName": repo.name, "imageDigest": digest}
    if tags:
        d["imageTags"] = tags
    d.update({"imageSizeInBytes": size, "imagePushedAt": pushed, "imageManifestMediaType": media_type})
    if artifact:
        d["artifactMediaType"] = artifact
    if pulled is not None:
        d["lastRecordedPullTime"] = pulled
    extra = loads(doc_raw)
    for k in ("imageScanStatus", "imageScanFindingsSummary", "subjectManifestDigest"):
        if k in extra:
            d[k] = extra[k]
    return d


def require_image(tx: Tx, ctx: Ctx, repo: Any, image_id: Doc) -> str:
    """The digest ``image_id`` names in ``repo``; ECR's InvalidParameter / ImageNotFound otherwise."""
    digest, failure = _resolve(tx, repo, image_id)
    if failure is not None:
        if failure["failureCode"] in ("InvalidImageDigest", "InvalidImageTag", "MissingDigestAndTag"):
            raise InvalidParameterException(failure["failureReason"])
        shown = "{" + f"imageDigest:'{image_id.get('imageDigest', 'null')}', " \
                      f"imageTag:'{image_id.get('imageTag', 'null')}'" + "}"
        raise ImageNotFoundException(
            f"The image with imageId {shown} does not exist within the repository with name "
            f"'{repo.name}' in the registry with id '{repo_account(repo.arn)}'")
    assert digest is not None
    return digest


@ecr.op("DescribeImages", write=False)
def describe_images(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:DescribeImages")
    image_ids = req.get("imageIds")
    if image_ids:
        out = []
        seen: set[str] = set()
        for image_id in image_ids:
            digest = require_image(tx, ctx, repo, image_id)
            if digest in seen:
                continue
            seen.add(digest)
            row = tx.one(_DETAIL, a=repo.arn, d=digest)
            assert row is not None
            out.append(_detail(ctx, repo, row, [r[0] for r in tx.all(_TAGS_OF, a=repo.arn, d=digest)]))
        return {"imageDetails": out}
    status = _tag_status(req)
    tags = _tags_by_digest(tx, repo)
    rows = [r for r in tx.all(_ALL_DETAILS, a=repo.arn)
            if status == "ANY" or (status == "TAGGED") == bool(tags.get(r[0]))]
    start, end, token = _page(req, [[r[0]] for r in rows], 100)
    resp: Doc = {"imageDetails": [_detail(ctx, repo, r, tags.get(r[0], [])) for r in rows[start:end]]}
    if token:
        resp["nextToken"] = token
    return resp


# -- BatchDeleteImage --------------------------------------------------------

def delete_image(tx: Tx, repo: Repo, digest: str) -> None:
    """Remove an image, its tags and its references (the blobs stay until garbage collection)."""
    tx.run(_DEL_TAGS_OF, a=repo.arn, d=digest)
    tx.run(_DEL_REFS, a=repo.arn, d=digest)
    tx.run(_DEL_IMAGE, a=repo.arn, d=digest)


def delete_image_id(tx: Tx, repo: Repo, image_id: Doc) -> tuple[list[Doc], Doc | None]:
    """Delete what one image id names, by ECR's rules: (the image ids deleted, or a failure)."""
    digest, failure = _resolve(tx, repo, image_id)
    if failure is not None:
        return [], failure
    assert digest is not None
    tag = image_id.get("imageTag")
    tags = [r[0] for r in tx.all(_TAGS_OF, a=repo.arn, d=digest)]
    deleted: list[Doc]
    if tag is None or tags == [tag]:
        parents = [r[0] for r in tx.all(_REFERRERS, a=repo.arn, d=digest)
                   if tx.one(_IMAGE, a=repo.arn, d=r[0]) is not None]
        if parents:
            return [], {"imageId": image_id, "failureCode": "ImageReferencedByManifestList",
                        "failureReason": f"Requested image referenced by manifest list: [{', '.join(parents)}]"}
        delete_image(tx, repo, digest)
        deleted = [{"imageDigest": digest, "imageTag": t} for t in tags] or [{"imageDigest": digest}]
    else:
        tx.run(_DEL_TAG, a=repo.arn, t=tag)
        deleted = [{"imageDigest": digest, "imageTag": tag}]
    tx.notify("ecr-image", f"{repo.arn}@{digest}")
    return deleted, None


@ecr.op("BatchDeleteImage", write=True)
def batch_delete_image(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    """ECR's rules: a tag removes only that tag, and the image goes with its last tag; a digest
    removes the image and all its tags. An image an index here references cannot go."""
    repo = require_repo_for(tx, ctx, req, "ecr:BatchDeleteImage")
    deleted: list[Doc] = []
    failures: list[Doc] = []
    for image_id in req["imageIds"]:
        gone, failure = delete_image_id(tx, repo, image_id)
        if failure is not None:
            failures.append(failure)
        deleted += gone
    resp: Doc = {"failures": failures}
    if deleted:  # ImageIdentifierList has min 1
        resp["imageIds"] = deleted
    return resp
