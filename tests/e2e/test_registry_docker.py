"""`docker login/push/pull` against Dockyard's /v2/ registry on a real Docker engine.

The credentials come from `aws ecr get-login-password` (the aws CLI against the server), the
image is the locally built busybox test image (tests/helpers/images.py); nothing is pulled from
anywhere but the server on 127.0.0.1, which Docker treats as an insecure (HTTP) registry by
default (127.0.0.0/8), so the daemon needs no configuration. DOCKER_CONFIG is a temporary
directory: the login does not touch the user's docker config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.images import busybox_image
from tests.helpers.server import ServerProcess

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

AWS = str(Path(sys.executable).parent / "aws")


class Env:
    def __init__(self) -> None:
        self.image = busybox_image()
        self.server = ServerProcess().start()
        self._config = tempfile.TemporaryDirectory(prefix="dockyard-docker-config-")
        key, secret = self.server.credentials()
        self.env = {**os.environ, "DOCKER_CONFIG": self._config.name, "AWS_ACCESS_KEY_ID": key,
                    "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.host = f"127.0.0.1:{self.server.port}"
        self.ecr = self.server.client("ecr")
        self.refs: list[str] = []

    def run(self, *cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, env=self.env, timeout=180,
                           check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("docker", *args, check=check)

    def login(self) -> None:
        password = self.run(AWS, "ecr", "get-login-password", "--endpoint-url", self.server.endpoint).stdout
        self.run("docker", "login", "--username", "AWS", "--password-stdin", self.host, stdin=password)

    def tag(self, repo: str, tag: str) -> str:
        ref = f"{self.host}/{repo}:{tag}"
        self.docker("tag", self.image, ref)
        self.refs.append(ref)
        return ref

    def cleanup(self) -> None:
        for ref in self.refs:
            self.docker("rmi", "--force", ref, check=False)
        self.server.cleanup()
        self._config.cleanup()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    try:
        e.login()
        yield e
    finally:
        e.cleanup()


def _repo_digest(env: Env, ref: str, repo: str) -> str:
    digests: Any = env.docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    import json

    for d in json.loads(digests):
        name, _, digest = d.partition("@")
        if name == f"{env.host}/{repo}":
            return digest
    raise AssertionError(f"no repo digest for {repo} in {digests}")


def test_login_push_pull(env: Env) -> None:
    repo = "dy/busybox-" + uuid.uuid4().hex[:8]
    env.ecr.create_repository(repositoryName=repo)
    ref = env.tag(repo, "v1")
    out = env.docker("push", ref).stdout
    details = env.ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(details) == 1 and details[0]["imageTags"] == ["v1"]
    pushed = details[0]["imageDigest"]
    assert f"digest: {pushed}" in out
    assert details[0]["imageSizeInBytes"] > 0
    # Pull it back after deleting the local tag.
    env.docker("rmi", ref)
    assert env.docker("image", "inspect", ref, check=False).returncode != 0
    env.docker("pull", ref)
    assert _repo_digest(env, ref, repo) == pushed
    # The pulled image runs (its layers arrived intact).
    r = env.docker("run", "--rm", "--network", "none", ref, "echo", "pulled-ok")
    assert "pulled-ok" in r.stdout
    # Pushing the same image to a second repository mounts or re-uploads its layers.
    repo2 = repo + "-copy"
    env.ecr.create_repository(repositoryName=repo2)
    ref2 = env.tag(repo2, "v1")
    env.docker("push", ref2)
    assert env.ecr.describe_images(repositoryName=repo2)["imageDetails"][0]["imageDigest"] == pushed


def test_push_to_missing_repository_fails(env: Env) -> None:
    repo = "dy/missing-" + uuid.uuid4().hex[:8]
    ref = env.tag(repo, "v1")
    r = env.docker("push", ref, check=False)
    assert r.returncode != 0
    assert "does not exist" in (r.stdout + r.stderr) or "name unknown" in (r.stdout + r.stderr).lower()


def test_push_without_login_is_refused(env: Env) -> None:
    repo = "dy/anon-" + uuid.uuid4().hex[:8]
    env.ecr.create_repository(repositoryName=repo)
    ref = env.tag(repo, "v1")
    with tempfile.TemporaryDirectory(prefix="dockyard-docker-anon-") as anon:
        r = subprocess.run(["docker", "push", ref], capture_output=True, text=True, timeout=120, check=False,
                           env={**env.env, "DOCKER_CONFIG": anon})
    assert r.returncode != 0
    assert "no basic auth credentials" in r.stderr or "unauthorized" in (r.stdout + r.stderr).lower()
