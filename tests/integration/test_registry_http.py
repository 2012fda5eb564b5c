"""The OCI Distribution API (/v2/) against a real server, over raw HTTP: auth, blob uploads
(monolithic, chunked, resumable, mounted), manifests (Docker schema 2, OCI, index), tags, catalog,
and that the registry and the ECR API see the same images and blobs."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dockyard.services.ecr.auth import make_password
from tests.helpers.server import ServerProcess

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ALL_TYPES = ", ".join([DOCKER, OCI, OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(password: str, user: str = "AWS") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Registry:
    """A requests session against the server's /v2/ with ECR credentials."""

    def __init__(self, endpoint: str, password: str | None) -> None:
        self.endpoint = endpoint
        self.s = requests.Session()
        if password is not None:
            self.s.headers.update(basic(password))

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("allow_redirects", False)
        return self.s.request(method, self.endpoint + path, timeout=30, **kw)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha(data)
        r = self("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
        assert r.status_code == 201, r.text
        return digest

    def push_image(self, repo: str, tag: str, media_type: str = DOCKER, seed: str | None = None) -> tuple[bytes, str]:
        seed = seed or uuid.uuid4().hex
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        layer = (seed * 500).encode()
        cdig, ldig = self.push_blob(repo, config), self.push_blob(repo, layer)
        docker = media_type == DOCKER
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker
                       else "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                        else "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig, "size": len(layer)}],
        }).encode()
        r = self("PUT", f"/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha(manifest)
        return manifest, sha(manifest)


def get_with_accepts(reg: Registry, path: str, accepts: list[str]) -> int:
    """GET with one Accept header per type (requests cannot repeat a header)."""
    host = reg.endpoint.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.putrequest("GET", path)
        conn.putheader("Authorization", str(reg.s.headers["Authorization"]))
        for a in accepts:
            conn.putheader("Accept", a)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def error_code(r: requests.Response) -> str:
    body = r.json()
    assert set(body["errors"][0]) == {"code", "message", "detail"}
    return str(body["errors"][0]["code"])


@pytest.fixture(scope="module")
def ecr(server: ServerProcess) -> Any:
    return server.client("ecr")


@pytest.fixture(scope="module")
def password(ecr: Any) -> str:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, pw = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return pw


@pytest.fixture(scope="module")
def account(password: str) -> str:
    body = password[len("dy1."):].split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["a"])


@pytest.fixture(scope="module")
def reg(server: ServerProcess, password: str) -> Registry:
    return Registry(server.endpoint, password)


@pytest.fixture
def repo(ecr: Any) -> Iterator[str]:
    name = "team/r-" + uuid.uuid4().hex[:8]
    ecr.create_repository(repositoryName=name)
    yield name


# -- auth -------------------------------------------------------------------------------------

def test_base_and_auth_refusals(server: ServerProcess, reg: Registry, password: str, account: str) -> None:
    r = reg("GET", "/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    anon = Registry(server.endpoint, None)
    for path in ("/v2/", "/v2/_catalog", "/v2/x/tags/list", "/v2/x/blobs/uploads/"):
        r = anon("GET" if "uploads" not in path else "POST", path)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Dockyard ECR"'
        assert error_code(r) == "UNAUTHORIZED"
    bad = [basic(password + "x"), basic(password, user="root"), basic("dy1.garbage"),
           {"Authorization": "Bearer " + password}]
    key, secret = server.credentials()
    bad.append(basic(make_password(key, secret, account, time.time() - 5)))  # expired
    bad.append(basic(make_password(key, "not-the-secret", account, time.time() + 600)))  # forged
    for headers in bad:
        r = requests.get(server.endpoint + "/v2/", headers=headers, timeout=10)
        assert r.status_code == 401
        assert error_code(r) == "UNAUTHORIZED"
    # A password made with the real secret and a future expiry is valid (the format is the server's).
    r = requests.get(server.endpoint + "/v2/", headers=basic(make_password(key, secret, account, time.time() + 60)),
                     timeout=10)
    assert r.status_code == 200


# -- blobs and uploads ------------------------------------------------------------------------

def test_monolithic_upload_and_blob_get(reg: Registry, repo: str) -> None:
    data = b"hello blob " * 1000
    digest = sha(data)
    r = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = reg("HEAD", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"
    r = reg("GET", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    # Range requests.
    r = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["Content-Length"] == "10"
    r = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == data[100:]
    r = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    # Unknown blob, a blob of another repository, a malformed digest, DELETE.
    missing = sha(b"nope")
    r = reg("GET", f"/v2/{repo}/blobs/{missing}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert reg("HEAD", f"/v2/{repo}/blobs/{missing}").status_code == 404
    assert reg("GET", f"/v2/{repo}/blobs/sha256:xyz").status_code == 400
    r = reg("DELETE", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


def test_chunked_resumable_upload(reg: Registry, repo: str) -> None:
    data = bytes(range(256)) * 40000  # ~10 MB: more than one BlobStore batch
    digest = sha(data)
    r = reg("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    uid = r.headers["Docker-Upload-UUID"]
    assert loc == f"/v2/{repo}/blobs/uploads/{uid}"
    assert r.headers["Range"] == "0-0"
    first, second = data[:3_000_000], data[3_000_000:7_000_000]
    r = reg("PATCH", loc, data=first, headers={"Content-Range": f"0-{len(first) - 1}",
                                               "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(first) - 1}"
    # Status of the resumable upload.
    r = reg("GET", loc)
    assert r.status_code == 204
    assert r.headers["Range"] == f"0-{len(first) - 1}"
    assert r.headers["Docker-Upload-UUID"] == uid
    # A chunk at the wrong offset: 416 with the current range.
    r = reg("PATCH", loc, data=b"xx", headers={"Content-Range": "5-6"})
    assert r.status_code == 416
    assert r.headers["Range"] == f"0-{len(first) - 1}"
    # A streamed (chunked transfer encoding) PATCH without Content-Range.
    r = reg("PATCH", loc, data=iter([second[i:i + 65536] for i in range(0, len(second), 65536)]))
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(first) + len(second) - 1}"
    # The last chunk with the PUT.
    r = reg("PUT", loc, params={"digest": digest}, data=data[7_000_000:])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    r = reg("GET", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    # The session is over.
    r = reg("GET", loc)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_upload_wrong_digest_and_cancel(reg: Registry, repo: str, ecr: Any) -> None:
    loc = reg("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert reg("PATCH", loc, data=b"abc").status_code == 202
    r = reg("PUT", loc, params={"digest": sha(b"abd")})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = reg("PUT", loc, params={"digest": sha(b"abc")})  # the failed upload is gone
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha(b"x")}, data=b"y")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert reg("HEAD", f"/v2/{repo}/blobs/{sha(b'y')}").status_code == 404
    # Cancel.
    loc = reg("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert reg("DELETE", loc).status_code == 204
    assert reg("GET", loc).status_code == 404
    # An upload of another repository is unknown here.
    other = "other-" + uuid.uuid4().hex[:6]
    ecr.create_repository(repositoryName=other)
    loc = reg("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    uid = loc.rsplit("/", 1)[1]
    r = reg("PATCH", f"/v2/{other}/blobs/uploads/{uid}", data=b"abc")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = reg("GET", f"/v2/{repo}/blobs/uploads/{uuid.uuid4().hex}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_cross_repository_mount(reg: Registry, repo: str, ecr: Any) -> None:
    data = b"mount me" * 100
    digest = reg.push_blob(repo, data)
    target = "mnt-" + uuid.uuid4().hex[:6]
    ecr.create_repository(repositoryName=target)
    assert reg("HEAD", f"/v2/{target}/blobs/{digest}").status_code == 404
    r = reg("POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest
    assert reg("GET", f"/v2/{target}/blobs/{digest}").content == data
    # Not in the source repository (or no such source): an ordinary upload starts.
    r = reg("POST", f"/v2/{target}/blobs/uploads/", params={"mount": sha(b"other"), "from": repo})
    assert r.status_code == 202 and "Docker-Upload-UUID" in r.headers
    r = reg("POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": "no-such-repo"})
    assert r.status_code == 202


# -- manifests --------------------------------------------------------------------------------

@pytest.mark.parametrize("media_type", [DOCKER, OCI])
def test_manifest_put_get_head(reg: Registry, repo: str, media_type: str) -> None:
    manifest, digest = reg.push_image(repo, "v1", media_type)
    for ref in ("v1", digest):
        r = reg("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_TYPES})
        assert r.status_code == 200
        assert r.content == manifest
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        r = reg("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_TYPES})
        assert r.status_code == 200 and r.content == b""
        assert r.headers["Content-Length"] == str(len(manifest))
        assert r.headers["Docker-Content-Digest"] == digest
    # Several Accept headers (as docker sends them) and none at all.
    assert get_with_accepts(reg, f"/v2/{repo}/manifests/v1", ["text/plain", media_type]) == 200
    assert reg("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": ""}).status_code == 200
    other = OCI if media_type == DOCKER else DOCKER
    r = reg("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": other})
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = reg("GET", f"/v2/{repo}/manifests/nope")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    # Pushing the same manifest again is fine; by digest too.
    r = reg("PUT", f"/v2/{repo}/manifests/v1", data=manifest, headers={"Content-Type": media_type})
    assert r.status_code == 201
    r = reg("PUT", f"/v2/{repo}/manifests/{digest}", data=manifest, headers={"Content-Type": media_type})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    r = reg("PUT", f"/v2/{repo}/manifests/{sha(b'x')}", data=manifest, headers={"Content-Type": media_type})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_manifest_refusals(reg: Registry, repo: str, ecr: Any) -> None:
    config = reg.push_blob(repo, b"{}")
    missing = sha(b"never pushed")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": config, "size": 2},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "digest": missing, "size": 5}]}).encode()
    r = reg("PUT", f"/v2/{repo}/manifests/v1", data=manifest, headers={"Content-Type": DOCKER})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = reg("PUT", f"/v2/{repo}/manifests/v1", data=b"{not json", headers={"Content-Type": DOCKER})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    r = reg("PUT", f"/v2/{repo}/manifests/v1", data=json.dumps({"schemaVersion": 1}).encode())
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    # An index whose child is not in the repository.
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI, "digest": missing, "size": 10}]}).encode()
    r = reg("PUT", f"/v2/{repo}/manifests/idx", data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_UNKNOWN"
    # Immutable tags.
    imm = "imm-" + uuid.uuid4().hex[:6]
    ecr.create_repository(repositoryName=imm, imageTagMutability="IMMUTABLE")
    reg.push_image(imm, "v1")
    manifest2, _ = reg.push_image(imm, "v2")
    r = reg("PUT", f"/v2/{imm}/manifests/v1", data=manifest2, headers={"Content-Type": DOCKER})
    assert r.status_code == 400 and error_code(r) == "TAG_INVALID"
    assert r.json()["errors"][0]["message"] == (
        f"The image tag 'v1' already exists in the '{imm}' repository and cannot be overwritten because the "
        "repository is immutable.")


def test_oci_index(reg: Registry, repo: str, ecr: Any) -> None:
    m1, d1 = reg.push_image(repo, "amd64", OCI)
    m2, d2 = reg.push_image(repo, "arm64", OCI)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI, "digest": d1, "size": len(m1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI, "digest": d2, "size": len(m2), "platform": {"architecture": "arm64", "os": "linux"}},
    ]}).encode()
    r = reg("PUT", f"/v2/{repo}/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    r = reg("GET", f"/v2/{repo}/manifests/multi", headers={"Accept": OCI_INDEX})
    assert r.status_code == 200 and r.content == index
    assert r.headers["Content-Type"] == OCI_INDEX
    # A child the index references cannot be deleted.
    r = reg("DELETE", f"/v2/{repo}/manifests/{d1}")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["images"]
    assert got[0]["imageManifest"] == index.decode()


def test_manifest_delete(reg: Registry, repo: str, ecr: Any) -> None:
    _, d1 = reg.push_image(repo, "a")
    r = reg("PUT", f"/v2/{repo}/manifests/b",
                data=reg("GET", f"/v2/{repo}/manifests/a").content, headers={"Content-Type": DOCKER})
    assert r.status_code == 201
    # Deleting a tag removes only the tag while the image has another (ECR's rules).
    assert reg("DELETE", f"/v2/{repo}/manifests/a").status_code == 202
    assert reg("GET", f"/v2/{repo}/manifests/a").status_code == 404
    assert reg("GET", f"/v2/{repo}/manifests/b").status_code == 200
    assert reg("DELETE", f"/v2/{repo}/manifests/{d1}").status_code == 202
    assert reg("GET", f"/v2/{repo}/manifests/{d1}").status_code == 404
    assert reg("GET", f"/v2/{repo}/manifests/b").status_code == 404
    r = reg("DELETE", f"/v2/{repo}/manifests/{d1}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert ecr.list_images(repositoryName=repo).get("imageIds", []) == []


# -- listings ---------------------------------------------------------------------------------

def test_tags_list_pagination(reg: Registry, repo: str) -> None:
    manifest, _ = reg.push_image(repo, "t0")
    for i in range(1, 5):
        assert reg("PUT", f"/v2/{repo}/manifests/t{i}", data=manifest,
                   headers={"Content-Type": DOCKER}).status_code == 201
    r = reg("GET", f"/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": ["t0", "t1", "t2", "t3", "t4"]}
    assert "Link" not in r.headers
    r = reg("GET", f"/v2/{repo}/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["t0", "t1"]
    assert r.headers["Link"] == f'</v2/{repo}/tags/list?n=2&last=t1>; rel="next"'
    r = reg("GET", f"/v2/{repo}/tags/list", params={"n": 2, "last": "t1"})
    assert r.json()["tags"] == ["t2", "t3"]
    r = reg("GET", f"/v2/{repo}/tags/list", params={"n": 2, "last": "t3"})
    assert r.json()["tags"] == ["t4"] and "Link" not in r.headers
    r = reg("GET", "/v2/no-such-repo/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog(reg: Registry, ecr: Any) -> None:
    prefix = "cat-" + uuid.uuid4().hex[:6]
    names = [f"{prefix}/{i}" for i in range(3)]
    for n in names:
        ecr.create_repository(repositoryName=n)
    everything: list[str] = []
    last = ""
    while True:
        r = reg("GET", "/v2/_catalog", params={"n": 2, "last": last})
        assert r.status_code == 200
        page = r.json()["repositories"]
        assert len(page) <= 2
        everything += page
        if "Link" not in r.headers:
            break
        last = page[-1]
        assert r.headers["Link"].startswith("</v2/_catalog?n=2&last=")
    assert everything == sorted(everything)
    assert set(names) <= set(everything)


def test_missing_repository_and_bad_names(reg: Registry, account: str) -> None:
    r = reg("POST", "/v2/does-not-exist/blobs/uploads/")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    assert r.json()["errors"][0]["message"] == (
        f"The repository with name 'does-not-exist' does not exist in the registry with id '{account}'")
    r = reg("PUT", "/v2/does-not-exist/manifests/v1", data=b"{}", headers={"Content-Type": DOCKER})
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    r = reg("GET", "/v2/Bad_Name/tags/list")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"


def test_create_on_push() -> None:
    srv = ServerProcess(env={"DOCKYARD_REGISTRY_CREATE_ON_PUSH": "1"}).start()
    try:
        ecr = srv.client("ecr")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        reg = Registry(srv.endpoint, base64.b64decode(token).decode().partition(":")[2])
        reg.push_image("auto/created", "v1")
        repos = ecr.describe_repositories(repositoryNames=["auto/created"])["repositories"]
        assert repos[0]["imageTagMutability"] == "MUTABLE"
        assert [i["imageTag"] for i in ecr.list_images(repositoryName="auto/created")["imageIds"]] == ["v1"]
    finally:
        srv.cleanup()


# -- the same images and blobs through the ECR API --------------------------------------------

def test_registry_push_shows_in_ecr_api(reg: Registry, repo: str, ecr: Any) -> None:
    before = time.time()
    manifest, digest = reg.push_image(repo, "v1")
    doc = json.loads(manifest)
    d = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(d) == 1
    assert d[0]["imageDigest"] == digest
    assert d[0]["imageTags"] == ["v1"]
    assert d[0]["imageSizeInBytes"] == sum(x["size"] for x in doc["layers"])
    assert d[0]["imageManifestMediaType"] == DOCKER
    assert before - 1 <= d[0]["imagePushedAt"].timestamp() <= time.time() + 1
    assert "lastRecordedPullTime" not in d[0]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    img = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]
    assert img["imageManifest"] == manifest.decode()
    layers = ecr.batch_check_layer_availability(repositoryName=repo,
                                                layerDigests=[doc["layers"][0]["digest"]])["layers"]
    assert layers[0]["layerAvailability"] == "AVAILABLE"
    # A pull records the pull time.
    assert reg("GET", f"/v2/{repo}/manifests/v1").status_code == 200
    deadline = time.time() + 5
    while time.time() < deadline:
        d = ecr.describe_images(repositoryName=repo)["imageDetails"]
        if "lastRecordedPullTime" in d[0]:
            break
        time.sleep(0.05)
    assert "lastRecordedPullTime" in d[0]


def test_ecr_api_layer_downloadable_through_registry(reg: Registry, repo: str, ecr: Any) -> None:
    data = b"layer via the ECR API " * 5000
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    half = len(data) // 2
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=half - 1,
                          layerPartBlob=data[:half])
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=half, partLastByte=len(data) - 1,
                          layerPartBlob=data[half:])
    digest = sha(data)
    ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    r = reg("GET", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    # And a blob pushed through /v2/ can be used by PutImage.
    config = reg.push_blob(repo, b'{"os":"linux"}')
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": config, "size": 14},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "digest": digest, "size": len(data)}]})
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="api")
    r = reg("GET", f"/v2/{repo}/manifests/api", headers={"Accept": DOCKER})
    assert r.status_code == 200 and r.content == manifest.encode()


def test_a_token_from_another_region_sees_that_region_s_repositories(server):
    """Repositories are per region: a token issued in eu-west-1 reaches eu-west-1's repository."""
    rq = requests
    eu = server.client("ecr", region="eu-west-1")
    name = "regional-" + uuid.uuid4().hex[:6]
    eu.create_repository(repositoryName=name)
    token = eu.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    base = server.endpoint
    got = rq.get(f"{base}/v2/{name}/tags/list", auth=(user, password), timeout=10)
    assert got.status_code == 200 and got.json()["name"] == name
    us_token = server.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    us_user, _, us_password = base64.b64decode(us_token).decode().partition(":")
    missing = rq.get(f"{base}/v2/{name}/tags/list", auth=(us_user, us_password), timeout=10)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"
