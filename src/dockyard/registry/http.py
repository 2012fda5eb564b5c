"""The OCI Distribution API (``/v2/``) on the API's port: what ``docker login/push/pull`` talk to.

Authentication is ECR's: ``Authorization: Basic base64("AWS:" + password)`` with the password from
GetAuthorizationToken; the password's account decides which repositories a name refers to.
Request bodies stream into the BlobStore and blob GETs are answered from files, so memory stays
flat whatever the blob's size. Which repository holds which blob, the upload sessions and the
manifests are the ECR tables, written through the same functions as the ECR API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

import orjson

from dockyard.registry import manifests, ops
from dockyard.registry.blobs import BlobStore, DigestInvalid, DigestMismatch, RangeError, UploadUnknown
from dockyard.registry.errors import RegistryError
from dockyard.services.context import Ctx
from dockyard.services.ecr import access, images, layers
from dockyard.services.ecr.auth import RegistryIdentity, verify_password
from dockyard.services.ecr.common import TAG_RE, Repo, check_name
from dockyard.services.ecr.errors import (
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    LayersNotFoundException,
    ReferencedImagesNotFoundException,
)
from dockyard.state.store import Store

log = logging.getLogger(__name__)

API_VERSION = ("docker-distribution-api-version", "registry/2.0")
CHALLENGE = ("www-authenticate", 'Basic realm="Dockyard ECR"')
AUTH_CACHE_SECONDS = 2.0     # as the SigV4 key cache: a deleted key stops working within this
PULL_RECORD_SECONDS = 60.0   # last_pulled_at is written at most this often per image
PAGE_DEFAULT, PAGE_MAX = 100, 1000

_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?(?P<id>[^/]*)$")
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/.*)?$")


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: tuple[str, int, int] | None = None  # (path, start, end exclusive) sent by the HTTP server


def _json(status: int, doc: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("content-type", "application/json"), *(headers or [])], orjson.dumps(doc))


class Request:
    """What a route needs of one RSGI request."""

    def __init__(self, scope: Any, proto: Any) -> None:
        self.method: str = scope.method
        self.path: str = scope.path
        self.headers = scope.headers
        self.query = {k: v[-1] for k, v in parse_qs(scope.query_string or "", keep_blank_values=True).items()}
        self.proto = proto

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return str(value) if value is not None else None

    def all(self, name: str) -> list[str]:
        return [str(v) for k, v in self.headers.items() if k.lower() == name]

    @property
    def has_body(self) -> bool:
        length = self.header("content-length")
        if length is not None:
            return length.strip() not in ("", "0")
        return self.header("transfer-encoding") is not None

    async def read(self, limit: int) -> bytes:
        """The whole (small) body; SIZE_INVALID past ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        async for chunk in self.proto:
            total += len(chunk)
            if total > limit:
                raise RegistryError("SIZE_INVALID", f"the body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


class RegistryHttp:
    """The /v2/ handler; ``App`` hands it every request whose path starts with /v2."""

    def __init__(self, store: Store, blobs: BlobStore, *, create_on_push: bool = False) -> None:
        self.store = store
        self.blobs = blobs
        self.create_on_push = create_on_push
        self._auth: dict[str, tuple[RegistryIdentity | None, float]] = {}
        self._pulled: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, scope: Any, proto: Any) -> None:
        req = Request(scope, proto)
        try:
            resp = await self._route(req)
        except RegistryError as e:
            resp = Response(e.status, [("content-type", "application/json"), *e.headers], e.body())
        except Exception:
            log.exception("registry: internal error on %s %s", req.method, req.path)
            err = RegistryError("UNKNOWN", "Internal error.")
            resp = Response(500, [("content-type", "application/json")], err.body())
        headers = [API_VERSION, *resp.headers]
        if resp.file is not None:
            path, start, end = resp.file
            proto.response_file_range(resp.status, headers, path, start, end)
        else:
            # a HEAD's answer carries the body's length (or the content-length given), not the body
            proto.response_bytes(resp.status, headers, resp.body)

    # -- authentication -------------------------------------------------------------------------

    def _identity(self, req: Request) -> RegistryIdentity:
        header = req.header("authorization") or ""
        scheme, _, cred = header.partition(" ")
        identity = None
        if scheme.lower() == "basic" and cred:
            try:
                user, _, password = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if user == "AWS" and password:
                identity = self._verify(password)
        if identity is None:
            raise RegistryError("UNAUTHORIZED", "Not Authorized" if header else "authentication required",
                                headers=[CHALLENGE])
        return identity

    def _verify(self, password: str) -> RegistryIdentity | None:
        now = time.time()
        hit = self._auth.get(password)
        if hit is not None and hit[1] > time.monotonic():
            identity = hit[0]
        else:
            identity = self.store.read(verify_password, password, now)
            if len(self._auth) > 10000:
                self._auth.clear()
            self._auth[password] = (identity, time.monotonic() + AUTH_CACHE_SECONDS)
        if identity is not None and identity.expires_at <= now:
            return None
        return identity

    # -- routing --------------------------------------------------------------------------------

    async def _route(self, req: Request) -> Response:
        identity = self._identity(req)
        ctx = Ctx(identity.account_id, identity.region, identity.principal_arn, "", round(time.time(), 3),
                  identity.access_key_id)
        path, method = req.path, req.method
        if path in ("/v2", "/v2/"):
            return _json(200, {})
        if path == "/v2/_catalog":
            self._allow(method, "GET")
            return self._catalog(req, ctx)
        if m := _TAGS.match(path):
            self._allow(method, "GET")
            return self._tags(req, ctx, self._name(m["name"]))
        if m := _MANIFEST.match(path):
            name, ref = self._name(m["name"]), m["ref"]
            if method in ("GET", "HEAD"):
                return self._get_manifest(req, ctx, name, ref)
            if method == "PUT":
                return await self._put_manifest(req, ctx, name, ref)
            if method == "DELETE":
                return await self._delete_manifest(ctx, name, ref)
            raise self._unsupported(method)
        if m := _UPLOAD.match(path):
            name, upload_id = self._name(m["name"]), m["id"]
            if not upload_id:
                self._allow(method, "POST")
                return await self._start_upload(req, ctx, name)
            return await self._upload(req, ctx, name, upload_id)
        if m := _BLOB.match(path):
            name, digest = self._name(m["name"]), m["digest"]
            if method in ("GET", "HEAD"):
                return self._get_blob(req, ctx, name, digest)
            raise self._unsupported(method)
        raise RegistryError("NAME_UNKNOWN", f"no route for {path}", status=404)

    @staticmethod
    def _name(name: str) -> str:
        try:
            check_name(name)
        except InvalidParameterException:
            raise RegistryError("NAME_INVALID", f"invalid repository name {name!r}") from None
        return name

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed and not (method == "HEAD" and "GET" in allowed):
            raise self._unsupported(method)

    @staticmethod
    def _unsupported(method: str) -> RegistryError:
        return RegistryError("UNSUPPORTED", f"The operation {method} is unsupported.", status=405)

    def _repo(self, ctx: Ctx, name: str, *actions: str) -> Repo:
        """The repository, which the caller must be allowed ``actions`` on (403 DENIED otherwise)."""
        repo: Repo = self.store.read(ops.require, ctx, name)
        self._check(ctx, repo, *actions)
        return repo

    @staticmethod
    def _check(ctx: Ctx, repo: Repo, *actions: str) -> None:
        """DENIED, in ECR's words, unless the repository's policy lets the caller do ``actions``."""
        for action in actions:
            msg = access.verdict(repo, ctx, action)
            if msg is not None:
                raise RegistryError("DENIED", msg)

    async def _push_repo(self, ctx: Ctx, name: str, *actions: str) -> Repo:
        """The repository a push goes to: created on first push when the server allows it."""
        found = self.store.read(ops.repo, ctx, name)
        if found is not None:
            self._check(ctx, found, *actions)
            return found
        if not self.create_on_push:
            return self._repo(ctx, name)  # NAME_UNKNOWN
        return await self.store.write(ops.create_repo, ctx, name)  # no policy yet

    # -- listings -------------------------------------------------------------------------------

    @staticmethod
    def _page_size(req: Request) -> int:
        raw = req.query.get("n")
        if raw is None or raw == "":
            return PAGE_DEFAULT
        try:
            n = int(raw)
        except ValueError:
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid page size {raw!r}", status=400) from None
        return max(0, min(n, PAGE_MAX))

    def _catalog(self, req: Request, ctx: Ctx) -> Response:
        n, last = self._page_size(req), req.query.get("last", "")
        names = self.store.read(ops.catalog, ctx, last, n + 1) if n else []
        headers = []
        if len(names) > n:
            names = names[:n]
            headers.append(("link", f'</v2/_catalog?n={n}&last={quote(names[-1], safe="")}>; rel="next"'))
        return _json(200, {"repositories": names}, headers)

    def _tags(self, req: Request, ctx: Ctx, name: str) -> Response:
        repo = self._repo(ctx, name, "ecr:ListImages")
        n, last = self._page_size(req), req.query.get("last", "")
        tags = [t for t in self.store.read(ops.tags, repo) if t > last]
        headers = []
        if len(tags) > n:
            tags = tags[:n]
            headers.append(("link", f'</v2/{name}/tags/list?n={n}&last={quote(tags[-1], safe="")}>; rel="next"'))
        return _json(200, {"name": name, "tags": tags}, headers)

    # -- blobs ----------------------------------------------------------------------------------

    def _get_blob(self, req: Request, ctx: Ctx, name: str, digest: str) -> Response:
        if not manifests.valid_digest(digest):
            raise RegistryError("DIGEST_INVALID", f"invalid digest {digest!r}")
        repo = self._repo(ctx, name, "ecr:GetDownloadUrlForLayer" if req.method == "GET"
                          else "ecr:BatchCheckLayerAvailability")
        size = self.blobs.stat(digest) if self.store.read(layers.layer, repo.arn, digest) else None
        if size is None:
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}", detail={"digest": digest})
        headers = [("content-type", "application/octet-stream"), ("docker-content-digest", digest),
                   ("accept-ranges", "bytes"), ("etag", f'"{digest}"')]
        start, end, status = 0, size, 200
        spec = req.header("range")
        if spec:
            start, end = self._range(spec, size)
            status = 206
            headers.append(("content-range", f"bytes {start}-{end - 1}/{size}"))
        headers.append(("content-length", str(end - start)))
        if req.method == "HEAD" or end == start:
            return Response(status, headers)
        return Response(status, headers, file=(str(self.blobs.path(digest)), start, end))

    @staticmethod
    def _range(spec: str, size: int) -> tuple[int, int]:
        """[start, end) of a ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` Range; 416 when it does not fit."""
        m = _RANGE.match(spec.strip())
        bad = RegistryError("RANGE_INVALID", f"range {spec!r} not satisfiable", status=416,
                            headers=[("content-range", f"bytes */{size}")])
        if m is None or (not m[1] and not m[2]):
            raise bad
        if not m[1]:  # the last n bytes
            return max(0, size - int(m[2])), size
        start = int(m[1])
        end = min(int(m[2]) + 1, size) if m[2] else size
        if start >= size or end <= start:
            raise bad
        return start, end

    # -- uploads --------------------------------------------------------------------------------

    @staticmethod
    def _upload_headers(name: str, upload_id: str, size: int) -> list[tuple[str, str]]:
        return [("location", f"/v2/{name}/blobs/uploads/{upload_id}"), ("range", f"0-{max(size - 1, 0)}"),
                ("docker-upload-uuid", upload_id), ("content-length", "0")]

    @staticmethod
    def _blob_created(name: str, digest: str) -> Response:
        return Response(201, [("location", f"/v2/{name}/blobs/{digest}"), ("docker-content-digest", digest),
                              ("content-length", "0")])

    async def _start_upload(self, req: Request, ctx: Ctx, name: str) -> Response:
        repo = await self._push_repo(ctx, name, "ecr:InitiateLayerUpload")
        mount, source = req.query.get("mount"), req.query.get("from")
        digest = req.query.get("digest")
        self._check(ctx, repo, *(("ecr:UploadLayerPart", "ecr:CompleteLayerUpload") if digest
                                 else ("ecr:CompleteLayerUpload",) if mount else ()))
        # A mount needs the blob in a repository the caller may read (its own account's) and on
        # disk; otherwise it is an ordinary upload.
        if mount and source and manifests.valid_digest(mount) and self.blobs.touch(mount) is not None \
                and await self.store.write(ops.mount, ctx, source, repo.arn, mount, ctx.now):
            return self._blob_created(name, mount)
        if digest and not manifests.valid_digest(digest):
            raise RegistryError("DIGEST_INVALID", f"invalid or unsupported digest {digest!r}")
        upload_id = self.blobs.new_upload()
        if digest:  # monolithic: the whole blob in this request
            try:
                size = await self._commit(upload_id, digest, req)
            except BaseException:
                if self._upload_alive(upload_id):
                    self.blobs.cancel(upload_id)
                raise
            await self.store.write(ops.finish_upload, repo.arn, None, digest, size, ctx.now)
            return self._blob_created(name, digest)
        try:
            await self.store.write(ops.start_upload, repo.arn, upload_id, ctx.now)
        except BaseException:
            self.blobs.cancel(upload_id)
            raise
        return Response(202, self._upload_headers(name, upload_id, 0))

    async def _commit(self, upload_id: str, digest: str, req: Request) -> int:
        """Finish an upload with the request's body (if any) as its last chunk."""
        try:
            return await self.blobs.commit(upload_id, digest, req.proto if req.has_body else None)
        except DigestMismatch as e:
            raise RegistryError("DIGEST_INVALID", str(e), detail={"digest": digest}) from None
        except DigestInvalid as e:  # malformed: the upload is left as it was
            raise RegistryError("DIGEST_INVALID", str(e), detail={"digest": digest}) from None
        except UploadUnknown:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry") from None

    async def _upload(self, req: Request, ctx: Ctx, name: str, upload_id: str) -> Response:
        method = req.method
        repo = self._repo(ctx, name, {"PATCH": "ecr:UploadLayerPart", "PUT": "ecr:CompleteLayerUpload"}
                          .get(method, "ecr:InitiateLayerUpload"))
        if method == "PUT" and req.has_body:
            self._check(ctx, repo, "ecr:UploadLayerPart")
        found = self.store.read(layers.upload, upload_id)
        if found is None or found[0] != repo.arn:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                detail={"uuid": upload_id})
        try:
            if method == "GET":
                return Response(204, self._upload_headers(name, upload_id, self.blobs.size(upload_id)))
            if method == "DELETE":
                self.blobs.cancel(upload_id)
                await self.store.write(ops.end_upload, upload_id)
                return Response(204, [("content-length", "0")])
            if method == "PATCH":
                return await self._patch(req, ctx, name, upload_id)
            if method == "PUT":
                digest = req.query.get("digest")
                if not digest:
                    raise RegistryError("DIGEST_INVALID", "the digest parameter is required")
                try:
                    size = await self._commit(upload_id, digest, req)
                except RegistryError as e:
                    if e.code == "DIGEST_INVALID" and not self._upload_alive(upload_id):
                        await self.store.write(ops.end_upload, upload_id)  # the store dropped it
                    raise
                await self.store.write(ops.finish_upload, repo.arn, upload_id, digest, size, ctx.now)
                return self._blob_created(name, digest)
        except UploadUnknown:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                detail={"uuid": upload_id}) from None
        raise self._unsupported(method)

    def _upload_alive(self, upload_id: str) -> bool:
        try:
            self.blobs.size(upload_id)
            return True
        except UploadUnknown:
            return False

    async def _patch(self, req: Request, ctx: Ctx, name: str, upload_id: str) -> Response:
        offset = None
        spec = req.header("content-range")
        if spec:
            m = _CONTENT_RANGE.match(spec.strip())
            if m is None:
                raise RegistryError("BLOB_UPLOAD_INVALID", f"invalid Content-Range {spec!r}")
            offset = int(m[1])
        try:
            size = await self.blobs.append(upload_id, req.proto, offset)
        except RangeError as e:
            raise RegistryError("RANGE_INVALID", str(e), status=416,
                                headers=self._upload_headers(name, upload_id, e.size)) from None
        await self.store.write(ops.upload_size, upload_id, size, ctx.now)
        return Response(202, self._upload_headers(name, upload_id, size))

    # -- manifests ------------------------------------------------------------------------------

    def _get_manifest(self, req: Request, ctx: Ctx, name: str, ref: str) -> Response:
        repo = self._repo(ctx, name, "ecr:BatchGetImage")
        found = self.store.read(images.manifest_of, repo, ref) if self._valid_ref(ref) else None
        if found is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {ref}", detail={"reference": ref})
        digest, media_type, raw = found
        if not self._acceptable(req, media_type):
            # No conversion between formats (ECR does none either): as a missing manifest.
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest {ref} is {media_type}, not an accepted type",
                                detail={"reference": ref})
        if req.method == "GET":
            self._record_pull(repo.arn, digest)
        headers = [("content-type", media_type), ("docker-content-digest", digest),
                   ("etag", f'"{digest}"'), ("content-length", str(len(raw)))]
        return Response(200, headers, raw if req.method == "GET" else b"")

    @staticmethod
    def _valid_ref(ref: str) -> bool:
        return manifests.valid_digest(ref) if ":" in ref else bool(TAG_RE.fullmatch(ref))

    @staticmethod
    def _acceptable(req: Request, media_type: str) -> bool:
        accepted = {t.split(";")[0].strip() for h in req.all("accept") for t in h.split(",")}
        accepted.discard("")
        return not accepted or media_type in accepted or "*/*" in accepted

    def _record_pull(self, repo_arn: str, digest: str) -> None:
        key = (repo_arn, digest)
        now = time.monotonic()
        last = self._pulled.get(key)
        if last is not None and now - last < PULL_RECORD_SECONDS:
            return
        if len(self._pulled) > 100000:
            self._pulled.clear()
        self._pulled[key] = now
        task = asyncio.get_running_loop().create_task(self._write_pull(repo_arn, digest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_pull(self, repo_arn: str, digest: str) -> None:
        try:
            await self.store.write(images.record_pull, repo_arn, digest, round(time.time(), 3))
        except Exception:
            log.warning("registry: recording a pull of %s failed", digest, exc_info=True)

    async def _put_manifest(self, req: Request, ctx: Ctx, name: str, ref: str) -> Response:
        await self._push_repo(ctx, name, "ecr:PutImage")  # checked again in the write transaction
        raw = await req.read(manifests.MAX_MANIFEST_BYTES)
        try:
            m = manifests.parse(raw, req.header("content-type"))
        except manifests.ManifestError as e:
            raise RegistryError(e.code, str(e)) from None
        tag = None
        if ":" in ref:
            if ref != m.digest:
                raise RegistryError("DIGEST_INVALID", f"the manifest's digest is {m.digest}, not {ref}",
                                    detail={"digest": ref})
        elif TAG_RE.fullmatch(ref):
            tag = ref
        else:
            raise RegistryError("TAG_INVALID", f"invalid tag {ref!r}")
        try:
            await self.store.write(ops.push_manifest, ctx, name, m, tag)
        except LayersNotFoundException as e:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", e.message) from None
        except ReferencedImagesNotFoundException as e:
            raise RegistryError("MANIFEST_UNKNOWN", e.message, status=400) from None
        except ImageTagAlreadyExistsException:
            raise RegistryError(
                "TAG_INVALID", f"The image tag '{tag}' already exists in the '{name}' repository and cannot "
                               "be overwritten because the repository is immutable.") from None
        return Response(201, [("location", f"/v2/{name}/manifests/{m.digest}"),
                              ("docker-content-digest", m.digest), ("content-length", "0")])

    async def _delete_manifest(self, ctx: Ctx, name: str, ref: str) -> Response:
        if not self._valid_ref(ref):
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
        failure = await self.store.write(ops.delete_manifest, ctx, name, ref)
        if failure is not None:
            if failure["failureCode"] == "ImageReferencedByManifestList":
                raise RegistryError("DENIED", failure["failureReason"])
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {ref}", detail={"reference": ref})
        return Response(202, [("content-length", "0")])
