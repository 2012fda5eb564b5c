"""ECR clients other than boto3 against a live server: the aws CLI through a typical ECR session
(with a docker push in the middle), and skopeo copying an image into and out of the /v2/ registry.

The image is the locally built busybox test image (tests/helpers/images.py); nothing is pulled
from anywhere but the server on 127.0.0.1. DOCKER_CONFIG is a temporary directory. skopeo comes
from the machine (scripts/up installs it with the test packages): skipped when missing, except
under CI=true, where that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_awscli import aws_executable
from tests.helpers.images import busybox_image
from tests.helpers.server import REGION, ServerProcess

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

LIFECYCLE = {"rules": [{"rulePriority": 1, "description": "keep the last 5 images",
                        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
                        "action": {"type": "expire"}}]}


class Clients:
    """The aws CLI and docker/skopeo, with the server's root key and nothing of the machine's config."""

    def __init__(self, server: ServerProcess, home: Path) -> None:
        key, secret = server.credentials()
        self.server = server
        self.aws_exe = aws_executable()
        self.host = f"127.0.0.1:{server.port}"
        self.docker_config = home / "docker"
        self.docker_config.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "DOCKER_CONFIG": str(self.docker_config),
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
        }
        self.refs: list[str] = []

    def run(self, *cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, env=self.env, timeout=180,
                           check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def aws_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.aws_exe, "ecr", *args, "--endpoint-url", self.server.endpoint, "--output", "json",
                        check=False)

    def aws(self, *args: str) -> Any:
        r = self.aws_run(*args)
        assert r.returncode == 0, f"aws ecr {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def password(self) -> str:
        r = self.aws_run("get-login-password")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def cleanup(self) -> None:
        for ref in self.refs:
            subprocess.run(["docker", "rmi", "--force", ref], capture_output=True, timeout=60, check=False)


@pytest.fixture
def clients(server: ServerProcess, tmp_path: Path) -> Iterator[Clients]:
    c = Clients(server, tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_aws_cli_ecr_session(clients: Clients) -> None:
    image = busybox_image()
    repo = "dy/cli-" + uuid.uuid4().hex[:8]
    created = clients.aws("create-repository", "--repository-name", repo, "--image-tag-mutability", "MUTABLE",
                          "--image-scanning-configuration", "scanOnPush=true",
                          "--tags", "Key=team,Value=dockyard")["repository"]
    assert created["repositoryName"] == repo
    assert created["repositoryUri"] == f"{clients.host}/{repo}"
    assert created["imageTagMutability"] == "MUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    account = created["registryId"]
    assert created["repositoryArn"] == f"arn:aws:ecr:{REGION}:{account}:repository/{repo}"

    (described,) = clients.aws("describe-repositories", "--repository-names", repo)["repositories"]
    assert described["repositoryArn"] == created["repositoryArn"]
    assert described["repositoryUri"] == created["repositoryUri"]
    listed = clients.aws("list-tags-for-resource", "--resource-arn", created["repositoryArn"])["tags"]
    assert listed == [{"Key": "team", "Value": "dockyard"}]

    put = clients.aws("put-lifecycle-policy", "--repository-name", repo,
                      "--lifecycle-policy-text", json.dumps(LIFECYCLE))
    assert put["repositoryName"] == repo and put["registryId"] == account
    got = clients.aws("get-lifecycle-policy", "--repository-name", repo)
    assert json.loads(got["lifecyclePolicyText"]) == LIFECYCLE
    assert got["repositoryName"] == repo

    mut = clients.aws("put-image-tag-mutability", "--repository-name", repo, "--image-tag-mutability", "IMMUTABLE")
    assert mut["imageTagMutability"] == "IMMUTABLE"
    (described,) = clients.aws("describe-repositories", "--repository-names", repo)["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE"

    # docker login with get-login-password, then a push.
    clients.run("docker", "login", "--username", "AWS", "--password-stdin", clients.host, stdin=clients.password())
    ref = f"{created['repositoryUri']}:v1"
    clients.refs.append(ref)
    clients.run("docker", "tag", image, ref)
    pushed = clients.run("docker", "push", ref).stdout

    ids = clients.aws("list-images", "--repository-name", repo)["imageIds"]
    assert len(ids) == 1 and ids[0]["imageTag"] == "v1"
    digest = ids[0]["imageDigest"]
    assert f"digest: {digest}" in pushed
    (detail,) = clients.aws("describe-images", "--repository-name", repo)["imageDetails"]
    assert detail["imageDigest"] == digest and detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] > 0 and detail["repositoryName"] == repo
    (detail,) = clients.aws("describe-images", "--repository-name", repo,
                            "--image-ids", "imageTag=v1")["imageDetails"]
    assert detail["imageDigest"] == digest
    # IMMUTABLE: pushing v1 again with other content is refused.
    r = clients.aws_run("put-image", "--repository-name", repo, "--image-tag", "v1", "--image-manifest",
                        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                               "digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}))
    assert r.returncode != 0

    deleted = clients.aws("batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert deleted["failures"] == []
    assert deleted["imageIds"][0]["imageDigest"] == digest
    # (The server leaves imageIds out of an empty page, its model's list having min 1.)
    assert clients.aws("list-images", "--repository-name", repo).get("imageIds", []) == []

    # delete-repository --force removes a repository with images in it.
    clients.run("docker", "tag", image, f"{created['repositoryUri']}:v2")
    clients.refs.append(f"{created['repositoryUri']}:v2")
    clients.run("docker", "push", f"{created['repositoryUri']}:v2")
    assert len(clients.aws("list-images", "--repository-name", repo)["imageIds"]) == 1
    r = clients.aws_run("delete-repository", "--repository-name", repo)
    assert r.returncode in (254, 255) and "RepositoryNotEmptyException" in r.stderr, r.stderr
    gone = clients.aws("delete-repository", "--repository-name", repo, "--force")["repository"]
    assert gone["repositoryName"] == repo

    # An error: the repository is gone.
    r = clients.aws_run("describe-repositories", "--repository-names", repo)
    assert r.returncode in (254, 255), (r.returncode, r.stderr)  # aws CLI v2: 254, v1 (the venv's): 255
    assert "RepositoryNotFoundException" in r.stderr
    assert f"The repository with name '{repo}' does not exist in the registry with id '{account}'" in r.stderr


def require_skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        msg = "skopeo is not installed (scripts/up installs it with the test packages)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def test_skopeo_copy_into_and_out_of_dockyard(clients: Clients) -> None:
    skopeo = require_skopeo()
    image = busybox_image()
    repo = "dy/skopeo-" + uuid.uuid4().hex[:8]
    clients.aws("create-repository", "--repository-name", repo)
    creds = "AWS:" + clients.password()
    with tempfile.TemporaryDirectory(prefix="dockyard-skopeo-") as tmp:
        src, back = Path(tmp) / "src", Path(tmp) / "back"
        clients.run(skopeo, "copy", "--insecure-policy", f"docker-daemon:{image}", f"dir:{src}")
        dest = f"docker://{clients.host}/{repo}:v1"
        clients.run(skopeo, "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-creds", creds,
                    f"dir:{src}", dest)
        (detail,) = clients.aws("describe-images", "--repository-name", repo)["imageDetails"]
        assert detail["imageTags"] == ["v1"]
        digest = detail["imageDigest"]

        # Without credentials the registry refuses.
        r = clients.run(skopeo, "inspect", "--tls-verify=false", "--no-creds", dest, check=False)
        assert r.returncode != 0
        assert "unauthorized" in r.stderr.lower() or "authentication required" in r.stderr.lower(), r.stderr

        info = json.loads(clients.run(skopeo, "inspect", "--tls-verify=false", "--creds", creds, dest).stdout)
        assert info["Digest"] == digest
        assert info["Name"] == f"{clients.host}/{repo}"

        clients.run(skopeo, "copy", "--insecure-policy", "--src-tls-verify=false", "--src-creds", creds,
                    dest, f"dir:{back}")
        # What comes back is what the registry holds (skopeo compressed the daemon's layers on
        # the way in): the manifest with the pushed digest, the same config, every blob intact.
        manifest = (back / "manifest.json").read_bytes()
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
        doc = json.loads(manifest)
        blobs = [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]
        for b in blobs:
            assert "sha256:" + hashlib.sha256((back / b.removeprefix("sha256:")).read_bytes()).hexdigest() == b
        config = doc["config"]["digest"].removeprefix("sha256:")
        assert (back / config).read_bytes() == (src / config).read_bytes()
        # Copying it back in again changes nothing: same digest, same single image.
        clients.run(skopeo, "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-creds", creds,
                    f"dir:{back}", f"docker://{clients.host}/{repo}:v2")
        (detail,) = clients.aws("describe-images", "--repository-name", repo)["imageDetails"]
        assert detail["imageDigest"] == digest and sorted(detail["imageTags"]) == ["v1", "v2"]
        # By digest too.
        clients.run(skopeo, "copy", "--insecure-policy", "--src-tls-verify=false", "--src-creds", creds,
                    f"docker://{clients.host}/{repo}@{digest}", f"dir:{Path(tmp) / 'by-digest'}")
    clients.aws("delete-repository", "--repository-name", repo, "--force")
