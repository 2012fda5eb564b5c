"""Basic scanning: StartImageScan, DescribeImageScanFindings, and the store side of scans.

A scan is an ``ecr_image_scans`` row (status, times, findings); the image's ``doc`` carries
``imageScanStatus`` and ``imageScanFindingsSummary`` for DescribeImages. StartImageScan (and a
push to a repository with scanOnPush) marks the scan IN_PROGRESS and publishes ``ecr-scan``;
the scan controller (``controllers/ecr_scan.py``) reads the layers and finishes it.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.api.errors import AwsError
from dockyard.registry import manifests
from dockyard.services.context import Ctx
from dockyard.services.ecr.common import Doc, dumps, encode_token, loads, max_results, require_repo, token_after
from dockyard.services.ecr.errors import InvalidParameterException, LimitExceededException
from dockyard.services.ecr.images import require_image
from dockyard.services.ecr.registry import ecr
from dockyard.state.schema import ecr_image_scans as st
from dockyard.state.schema import ecr_images as it
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.store import Tx, prepare

# ECR scans an image at most once a day (basic scanning); tests may shorten it.
RESCAN_SECONDS = float(os.environ.get("DOCKYARD_ECR_RESCAN_SECONDS", 24 * 3600))


class ScanNotFoundException(AwsError):
    code = "ScanNotFoundException"


class UnsupportedImageTypeException(AwsError):
    code = "UnsupportedImageTypeException"


_SCAN = prepare(select(st.c.status, st.c.started_at, st.c.completed_at, st.c.source_updated_at, st.c.findings)
                .where(st.c.repository_arn == bindparam("a"), st.c.digest == bindparam("d")))
_ADD_SCAN = prepare(insert(st))
_RESTART_SCAN = prepare(update(st).where(st.c.repository_arn == bindparam("a"), st.c.digest == bindparam("d"))
                        .values(status="IN_PROGRESS", started_at=bindparam("t")))
_FINISH_SCAN = prepare(update(st).where(st.c.repository_arn == bindparam("a"), st.c.digest == bindparam("d"),
                                        st.c.started_at == bindparam("s"))
                       .values(status=bindparam("st"), completed_at=bindparam("t"),
                               source_updated_at=bindparam("u"), findings=bindparam("f")))
_DEL_SCAN = prepare(delete(st).where(st.c.repository_arn == bindparam("a"), st.c.digest == bindparam("d")))
_IN_PROGRESS = prepare(select(st.c.repository_arn, st.c.digest).where(st.c.status == "IN_PROGRESS"))
_IMAGE = prepare(select(it.c.media_type, it.c.manifest, it.c.doc)
                 .where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d")))
_SET_DOC = prepare(update(it).where(it.c.repository_arn == bindparam("a"), it.c.digest == bindparam("d"))
                   .values(doc=bindparam("doc")))
_REPO_DOC = prepare(select(rt.c.doc).where(rt.c.arn == bindparam("a")))

IN_PROGRESS = {"status": "IN_PROGRESS", "description": "The scan is in progress."}
COMPLETE = {"status": "COMPLETE", "description": "The scan was completed successfully."}


def _set_image_doc(tx: Tx, arn: str, digest: str, **fields: Any) -> bool:
    row = tx.one(_IMAGE, a=arn, d=digest)
    if row is None:
        return False
    doc = loads(row[2])
    for k, v in fields.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    tx.run(_SET_DOC, a=arn, d=digest, doc=dumps(doc))
    return True


def begin_scan(tx: Tx, arn: str, digest: str, now: float) -> None:
    """Mark the image's scan IN_PROGRESS (a new one replaces the last) and tell the controller."""
    if tx.one(_SCAN, a=arn, d=digest) is None:
        tx.insert(_ADD_SCAN, repository_arn=arn, digest=digest, status="IN_PROGRESS", started_at=now,
                  completed_at=None, source_updated_at=None, findings=None)
    else:
        tx.run(_RESTART_SCAN, a=arn, d=digest, t=now)
    _set_image_doc(tx, arn, digest, imageScanStatus=IN_PROGRESS)
    tx.notify("ecr-scan", f"{arn}@{digest}")


def begin_push_scan(tx: Tx, arn: str, digest: str, now: float) -> bool:
    """scanOnPush: start a scan of a newly pushed image if its repository asks for one (once)."""
    repo = tx.one(_REPO_DOC, a=arn)
    img = tx.one(_IMAGE, a=arn, d=digest)
    if repo is None or img is None or str(img[0]) in manifests.INDEX_TYPES:
        return False
    if not (loads(repo[0]).get("imageScanningConfiguration") or {}).get("scanOnPush"):
        return False
    if tx.one(_SCAN, a=arn, d=digest) is not None:
        return False
    begin_scan(tx, arn, digest, now)
    return True


def forget_if_gone(tx: Tx, arn: str, digest: str) -> None:
    """Drop the scan of an image that no longer exists."""
    if tx.one(_IMAGE, a=arn, d=digest) is None:
        tx.run(_DEL_SCAN, a=arn, d=digest)


def image_event_needs_write(tx: Tx, arn: str, digest: str) -> bool:
    """Whether ``on_image_event`` has anything to do (a read, so most pushes cost no write)."""
    scan = tx.one(_SCAN, a=arn, d=digest)
    img = tx.one(_IMAGE, a=arn, d=digest)
    if img is None:
        return scan is not None
    if scan is not None or str(img[0]) in manifests.INDEX_TYPES:
        return False
    repo = tx.one(_REPO_DOC, a=arn)
    return repo is not None and bool((loads(repo[0]).get("imageScanningConfiguration") or {}).get("scanOnPush"))


def on_image_event(tx: Tx, arn: str, digest: str, now: float) -> bool:
    """An image was put or deleted: drop the scan of a deleted one, start scanOnPush's scan."""
    forget_if_gone(tx, arn, digest)
    return begin_push_scan(tx, arn, digest, now)


def in_progress(tx: Tx) -> list[tuple[str, str]]:
    return [(str(a), str(d)) for a, d in tx.all(_IN_PROGRESS)]


def scan_job(tx: Tx, arn: str, digest: str) -> tuple[float, list[str]] | None:
    """(started_at, layer digests bottom first) of an IN_PROGRESS scan, or None if there is none."""
    row = tx.one(_SCAN, a=arn, d=digest)
    img = tx.one(_IMAGE, a=arn, d=digest)
    if row is None or row[0] != "IN_PROGRESS" or img is None:
        return None
    m = manifests.parse(bytes(img[1]), str(img[0]))
    return float(row[1]), [d.digest for d in m.layers]


def finish_scan(tx: Tx, arn: str, digest: str, started_at: float, now: float, findings: list[Doc] | None,
                source_updated_at: float | None, failure: str | None = None, status: str = "FAILED") -> None:
    """Record the result of the scan that started at ``started_at`` (a newer one wins): its findings,
    or ``failure`` (the description) with ``status`` FAILED or UNSUPPORTED_IMAGE."""
    status = status if failure is not None else "COMPLETE"
    n = tx.run(_FINISH_SCAN, a=arn, d=digest, s=started_at, st=status, t=now, u=source_updated_at,
               f=orjson.dumps(findings) if findings is not None else None)
    if not n:
        return
    if failure is not None:
        _set_image_doc(tx, arn, digest, imageScanStatus={"status": status, "description": failure},
                       imageScanFindingsSummary=None)
        return
    from dockyard.scan.matcher import severity_counts

    summary: Doc = {"imageScanCompletedAt": now, "findingSeverityCounts": severity_counts(findings or [])}
    if source_updated_at is not None:
        summary["vulnerabilitySourceUpdatedAt"] = source_updated_at
    _set_image_doc(tx, arn, digest, imageScanStatus=COMPLETE, imageScanFindingsSummary=summary)


# -- the API ---------------------------------------------------------------------------------

def _image(tx: Tx, ctx: Ctx, req: Doc) -> tuple[Any, str, Doc]:
    repo = require_repo(tx, ctx, req)
    image_id: Doc = req["imageId"]
    digest = require_image(tx, ctx, repo, image_id)
    out_id: Doc = {"imageDigest": digest}
    if image_id.get("imageTag") is not None:
        out_id["imageTag"] = image_id["imageTag"]
    return repo, digest, out_id


@ecr.op("StartImageScan", write=True)
def start_image_scan(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo, digest, out_id = _image(tx, ctx, req)
    img = tx.one(_IMAGE, a=repo.arn, d=digest)
    assert img is not None
    if str(img[0]) in manifests.INDEX_TYPES:
        raise UnsupportedImageTypeException("The operation is not supported for this type of image.")
    scan = tx.one(_SCAN, a=repo.arn, d=digest)
    if scan is not None and scan[0] != "FAILED" and ctx.now - float(scan[1]) < RESCAN_SECONDS:
        raise LimitExceededException("The scan quota per image has been exceeded. Wait and try again.")
    begin_scan(tx, repo.arn, digest, ctx.now)
    return {"registryId": ctx.account_id, "repositoryName": repo.name, "imageId": out_id,
            "imageScanStatus": IN_PROGRESS}


@ecr.op("DescribeImageScanFindings", write=False)
def describe_image_scan_findings(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo, digest, out_id = _image(tx, ctx, req)
    scan = tx.one(_SCAN, a=repo.arn, d=digest)
    if scan is None:
        shown = "{" + f"imageDigest:'{out_id['imageDigest']}', imageTag:'{out_id.get('imageTag', 'null')}'" + "}"
        raise ScanNotFoundException(
            f"Image scan does not exist for the image with '{shown}' in the repository with name "
            f"'{repo.name}' in the registry with id '{ctx.account_id}'")
    status, _, completed_at, source_at, raw = scan
    resp: Doc = {"registryId": ctx.account_id, "repositoryName": repo.name, "imageId": out_id}
    if status == "IN_PROGRESS":
        resp["imageScanStatus"] = IN_PROGRESS
        return resp
    if status != "COMPLETE":
        img = tx.one(_IMAGE, a=repo.arn, d=digest)
        resp["imageScanStatus"] = loads(img[2]).get("imageScanStatus", {"status": "FAILED"}) if img else \
            {"status": "FAILED"}
        return resp
    findings: list[Doc] = orjson.loads(bytes(raw)) if raw is not None else []
    n = max_results(req, 100, 1000)
    after = token_after(req)
    start = after if isinstance(after, int) and 0 <= after <= len(findings) else 0
    if req.get("nextToken") is not None and not isinstance(after, int):
        raise InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: "
                                        "'Invalid token'")
    page = findings[start:start + n]
    from dockyard.scan.matcher import severity_counts

    out: Doc = {"imageScanCompletedAt": completed_at, "findingSeverityCounts": severity_counts(findings),
                "findings": page}
    if source_at is not None:
        out["vulnerabilitySourceUpdatedAt"] = source_at
    resp["imageScanStatus"] = COMPLETE
    resp["imageScanFindings"] = out
    if start + n < len(findings):
        resp["nextToken"] = encode_token(start + n)
    return resp
