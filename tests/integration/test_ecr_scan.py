"""ECR basic scanning against a real server: advisories loaded with the CLI, an image pushed
through the ECR API, StartImageScan / DescribeImageScanFindings / DescribeImages, scanOnPush."""

import gzip
import io
import json
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess
from tests.integration.test_ecr_api import DOCKER, OCI_INDEX, code, push_blob, sha

FIXTURES = Path(__file__).parents[1] / "fixtures" / "advisories"

DPKG = b"""Package: libssl3
Status: install ok installed
Version: 3.0.11-1~deb12u1
Source: openssl

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Source: zlib
"""


@pytest.fixture(scope="module")
def server():
    s = ServerProcess().start()
    out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "advisories", "--data-dir", str(s.data_dir),
                          "load", str(FIXTURES)], capture_output=True, text=True, check=True)
    assert "loaded 6 advisories" in out.stdout
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def ecr(server):
    return server.client("ecr")


def layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue())


def push_image(ecr, repo, files: dict[str, bytes], tag="v1") -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    data = layer(files)
    cdig, ldig = push_blob(ecr, repo, config), push_blob(ecr, repo, data)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cdig,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ldig,
                    "size": len(data)}],
    })
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    return sha(manifest.encode())


DEBIAN = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\n', "var/lib/dpkg/status": DPKG}


def wait_complete(ecr, repo, digest, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": digest})
        except ClientError as e:
            if e.response["Error"]["Code"] != "ScanNotFoundException" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if r["imageScanStatus"]["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def new_repo(ecr, scan_on_push=False):
    name = "scan/" + uuid.uuid4().hex[:10]
    ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": scan_on_push})
    return name


def test_start_image_scan_and_findings(ecr):
    repo = new_repo(ecr)
    digest = push_image(ecr, repo, DEBIAN)
    with pytest.raises(ClientError) as e:
        ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})
    assert code(e) == "ScanNotFoundException"
    assert "imageScanStatus" not in ecr.describe_images(repositoryName=repo)["imageDetails"][0]

    r = ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    assert r["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert r["imageScanStatus"]["status"] == "IN_PROGRESS"
    got = wait_complete(ecr, repo, digest)
    assert got["imageScanStatus"]["status"] == "COMPLETE"
    findings = got["imageScanFindings"]
    assert [(f["name"], f["severity"]) for f in findings["findings"]] == [("CVE-2099-0001", "CRITICAL")]
    f = findings["findings"][0]
    attrs = {a["key"]: a["value"] for a in f["attributes"]}
    assert attrs["package_name"] == "openssl" and attrs["package_version"] == "3.0.11-1~deb12u1"
    assert f["uri"].endswith("DSA-9001-1") and "openssl" in f["description"]
    assert findings["findingSeverityCounts"] == {"CRITICAL": 1}
    assert findings["imageScanCompletedAt"] and findings["vulnerabilitySourceUpdatedAt"]

    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"] == {"CRITICAL": 1}

    # Once a day per image, as ECR's basic scanning.
    with pytest.raises(ClientError) as e:
        ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": digest})
    assert code(e) == "LimitExceededException"


def test_scan_on_push_and_pagination(ecr):
    repo = new_repo(ecr, scan_on_push=True)
    files = {
        "etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n",
        "lib/apk/db/installed": b"P:busybox\nV:1.36.1-r15\no:busybox\n\nP:musl\nV:1.2.4-r2\n",
        "usr/lib/python3.11/site-packages/requests-2.30.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\n",
    }
    digest = push_image(ecr, repo, files)
    got = wait_complete(ecr, repo, digest)
    assert got["imageScanStatus"]["status"] == "COMPLETE"
    assert [(f["name"], f["severity"]) for f in got["imageScanFindings"]["findings"]] == [
        ("CVE-2099-0003", "MEDIUM"), ("CVE-2099-0004", "MEDIUM")]
    p1 = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": digest}, maxResults=1)
    assert [f["name"] for f in p1["imageScanFindings"]["findings"]] == ["CVE-2099-0003"]
    p2 = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": digest}, maxResults=1,
                                          nextToken=p1["nextToken"])
    assert [f["name"] for f in p2["imageScanFindings"]["findings"]] == ["CVE-2099-0004"]
    assert "nextToken" not in p2
    assert p2["imageScanFindings"]["findingSeverityCounts"] == {"MEDIUM": 2}


def test_scan_errors(ecr):
    repo = new_repo(ecr)
    with pytest.raises(ClientError) as e:
        ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "nope"})
    assert code(e) == "ImageNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.start_image_scan(repositoryName=repo + "-x", imageId={"imageTag": "nope"})
    assert code(e) == "RepositoryNotFoundException"
    digest = push_image(ecr, repo, {"app/hello": b"hi"})
    raw = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])["images"][0]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER, "digest": digest, "size": len(raw["imageManifest"].encode()),
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")
    with pytest.raises(ClientError) as e:
        ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "multi"})
    assert code(e) == "UnsupportedImageTypeException"
    # No OS and no packages: ECR's UNSUPPORTED_IMAGE.
    ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    got = wait_complete(ecr, repo, digest)
    assert got["imageScanStatus"]["status"] == "UNSUPPORTED_IMAGE"
    assert "imageScanFindings" not in got
