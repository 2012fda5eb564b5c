"""Layers: BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload,
GetDownloadUrlForLayer.

Bytes go through the BlobPort (``blob_port.py``); which blobs a repository holds is ``ecr_layers``,
and upload sessions are ``ecr_uploads`` rows (the registry's /v2/ uploads share them).
"""

from __future__ import annotations

import base64
import binascii
import uuid

from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.services.context import Ctx
from dockyard.services.ecr import config
from dockyard.services.ecr.access import repo_account, require_repo_for
from dockyard.services.ecr.blob_port import DigestMismatch, UnknownUpload, blob_port
from dockyard.services.ecr.common import DIGEST_RE, Doc, Repo
from dockyard.services.ecr.errors import (
    EmptyUploadException,
    InvalidLayerException,
    InvalidLayerPartException,
    InvalidParameterException,
    LayerAlreadyExistsException,
    LayersNotFoundException,
    UploadNotFoundException,
)
from dockyard.services.ecr.registry import ecr
from dockyard.state.schema import ecr_layers as lt
from dockyard.state.schema import ecr_uploads as ut
from dockyard.state.store import Tx, prepare

PART_SIZE = 10 * 1024 * 1024  # what InitiateLayerUpload advises; parts may be up to 20 MiB

_LAYER = prepare(select(lt.c.size, lt.c.media_type)
                 .where(lt.c.repository_arn == bindparam("a"), lt.c.digest == bindparam("d")))
_ADD_LAYER = prepare(insert(lt))
_UPLOAD = prepare(select(ut.c.repository_arn, ut.c.size).where(ut.c.upload_id == bindparam("u")))
_ADD_UPLOAD = prepare(insert(ut))
_UPLOAD_SIZE = prepare(update(ut).where(ut.c.upload_id == bindparam("u"))
                       .values(size=bindparam("s"), updated_at=bindparam("t")))
_END_UPLOAD = prepare(delete(ut).where(ut.c.upload_id == bindparam("u")))


def layer(tx: Tx, repository_arn: str, digest: str) -> tuple[int, str | None] | None:
    """(size, media type) of a blob the repository holds, or None."""
    row = tx.one(_LAYER, a=repository_arn, d=digest)
    return (int(row[0]), row[1]) if row else None


def add_layer(tx: Tx, repository_arn: str, digest: str, size: int, media_type: str | None, now: float) -> None:
    if layer(tx, repository_arn, digest) is None:
        tx.insert(_ADD_LAYER, repository_arn=repository_arn, digest=digest, size=size, media_type=media_type,
                  created_at=now)


# -- upload sessions (shared with the registry's /v2/ uploads) ----------------

def start_upload(tx: Tx, repository_arn: str, upload_id: str, now: float) -> None:
    tx.insert(_ADD_UPLOAD, upload_id=upload_id, repository_arn=repository_arn, created_at=now,
              updated_at=now, size=0)


def upload(tx: Tx, upload_id: str) -> tuple[str, int] | None:
    """(repository ARN, bytes received) of an upload session, or None."""
    row = tx.one(_UPLOAD, u=upload_id)
    return (str(row[0]), int(row[1])) if row else None


def set_upload_size(tx: Tx, upload_id: str, size: int, now: float) -> None:
    tx.run(_UPLOAD_SIZE, u=upload_id, s=size, t=now)


def end_upload(tx: Tx, upload_id: str) -> None:
    tx.run(_END_UPLOAD, u=upload_id)


@ecr.op("BatchCheckLayerAvailability", write=False)
def batch_check_layer_availability(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:BatchCheckLayerAvailability")
    layers: list[Doc] = []
    failures: list[Doc] = []
    for digest in req["layerDigests"]:
        if not DIGEST_RE.fullmatch(digest):
            failures.append({"layerDigest": digest, "failureCode": "InvalidLayerDigest",
                             "failureReason": "Invalid layer digest"})
            continue
        found = layer(tx, repo.arn, digest)
        if found is None:
            failures.append({"layerDigest": digest, "failureCode": "MissingLayerDigest",
                             "failureReason": "Could not find layer"})
            continue
        out: Doc = {"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": found[0]}
        if found[1]:
            out["mediaType"] = found[1]
        layers.append(out)
    return {"layers": layers, "failures": failures}


@ecr.op("InitiateLayerUpload", write=True)
def initiate_layer_upload(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:InitiateLayerUpload")
    upload_id = str(uuid.uuid4())
    start_upload(tx, repo.arn, upload_id, ctx.now)
    blob_port(tx).start_upload(upload_id)
    return {"uploadId": upload_id, "partSize": PART_SIZE}


def _upload_of(tx: Tx, ctx: Ctx, repo: Repo, upload_id: str) -> int:
    """Bytes received so far by this repository's upload, or UploadNotFoundException."""
    row = tx.one(_UPLOAD, u=upload_id)
    if row is None or row[0] != repo.arn:
        raise UploadNotFoundException(
            f"The upload with id '{upload_id}' does not exist in the repository with name '{repo.name}' "
            f"in the registry with id '{repo_account(repo.arn)}'")
    return int(row[1])


@ecr.op("UploadLayerPart", write=True)
def upload_layer_part(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:UploadLayerPart")
    upload_id: str = req["uploadId"]
    size = _upload_of(tx, ctx, repo, upload_id)
    try:
        data = base64.b64decode(req["layerPartBlob"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidParameterException(
            "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'must be base64'") from None
    first, last = req["partFirstByte"], req["partLastByte"]
    if first != size or last < first or last - first + 1 != len(data):
        # Parts arrive in order, each starting right after the last byte received.
        raise InvalidLayerPartException(
            f"The part with range {first}-{last} is not valid: the upload has received {size} bytes "
            f"and the part holds {len(data)}",
            extra={"registryId": repo_account(repo.arn), "repositoryName": repo.name, "uploadId": upload_id,
                   "lastValidByteReceived": max(size - 1, 0)})
    try:
        new_size = blob_port(tx).append(upload_id, first, data)
    except UnknownUpload:
        raise UploadNotFoundException(f"The upload with id '{upload_id}' is no longer available") from None
    tx.run(_UPLOAD_SIZE, u=upload_id, s=new_size, t=ctx.now)
    return {"registryId": repo_account(repo.arn), "repositoryName": repo.name, "uploadId": upload_id,
            "lastByteReceived": new_size - 1}


@ecr.op("CompleteLayerUpload", write=True)
def complete_layer_upload(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:CompleteLayerUpload")
    upload_id: str = req["uploadId"]
    size = _upload_of(tx, ctx, repo, upload_id)
    digests: list[str] = req["layerDigests"]
    if len(digests) != 1:
        raise InvalidParameterException(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'must hold exactly one digest'")
    digest = digests[0]
    if not DIGEST_RE.fullmatch(digest) or not digest.startswith("sha256:") or len(digest) != 71:
        raise InvalidLayerException(f"Invalid layer digest '{digest}': only sha256 digests are supported")
    if size == 0:
        raise EmptyUploadException(f"The upload with id '{upload_id}' is empty")
    if layer(tx, repo.arn, digest) is not None:
        raise LayerAlreadyExistsException(
            f"The layer '{digest}' already exists in the repository with name '{repo.name}' "
            f"in the registry with id '{repo_account(repo.arn)}'")
    try:
        stored = blob_port(tx).commit(upload_id, digest)
    except UnknownUpload:
        raise UploadNotFoundException(f"The upload with id '{upload_id}' is no longer available") from None
    except DigestMismatch as e:
        raise InvalidLayerException(
            f"The calculated layer digest '{e.actual}' does not match the provided digest '{digest}'") from None
    add_layer(tx, repo.arn, digest, stored, None, ctx.now)
    tx.run(_END_UPLOAD, u=upload_id)
    tx.notify("ecr-layer", repo.arn)
    return {"registryId": repo_account(repo.arn), "repositoryName": repo.name, "uploadId": upload_id,
            "layerDigest": digest}


@ecr.op("GetDownloadUrlForLayer", write=False)
def get_download_url_for_layer(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    repo = require_repo_for(tx, ctx, req, "ecr:GetDownloadUrlForLayer")
    digest: str = req["layerDigest"]
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidParameterException(
            "Invalid parameter at 'layerDigest' failed to satisfy constraint: "
            "'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''")
    if layer(tx, repo.arn, digest) is None:
        raise LayersNotFoundException(
            f"The layer with digest '{digest}' does not exist in the repository with name '{repo.name}' "
            f"in the registry with id '{repo_account(repo.arn)}'")
    return {"downloadUrl": f"http://{config.registry_host()}/v2/{repo.name}/blobs/{digest}",
            "layerDigest": digest}
