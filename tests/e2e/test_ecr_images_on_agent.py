"""An ECS service runs an image pushed to Dockyard's own ECR registry, on a real Docker agent.

The locally built busybox test image (tests/helpers/images.py) is pushed with the docker CLI
(temporary DOCKER_CONFIG, ``aws ecr get-login-password | docker login``) to a repository on the
server; the pushed tag is then removed from the engine (the original busybox image stays), so
the agent, running with the default pull behaviour (always pull), has to pull it from the
server with credentials of its own: a token from ECR GetAuthorizationToken for the agent's key,
given to the engine as X-Registry-Auth (agent/pull.py). The task reaching RUNNING, and the
container's image carrying the pushed manifest digest, show that it did. Nothing is pulled from
anywhere but the server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.agent import protocol
from tests.helpers.docker_env import DockerAgentEnv, agent_command, docker, inspect, wait_until
from tests.helpers.images import busybox_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

AWS = str(Path(sys.executable).parent / "aws")
HEARTBEAT = 1.0


class Env(DockerAgentEnv):
    """A server, an agent pulling with ECS's default behaviour, and a docker CLI logged in to the server."""

    def __init__(self, image: str) -> None:
        super().__init__(image, prefix="dockyard-ecr-agent-", cluster_prefix="ecr-agent-", heartbeat=HEARTBEAT,
                         server_env={"DOCKYARD_SERVICE_STABLE_SECONDS": "0.5"})
        self._docker_config = tempfile.TemporaryDirectory(prefix="dockyard-docker-config-")
        key, secret = self.server.credentials()
        self.cli_env = {**os.environ, "DOCKER_CONFIG": self._docker_config.name, "AWS_ACCESS_KEY_ID": key,
                        "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""}
        self.host = f"127.0.0.1:{self.server.port}"
        self.ecr = self.server.client("ecr")
        self.refs: list[str] = []

    def start_agent(self) -> str:
        """DockerAgentEnv.start_agent with ``--pull-behavior default`` (always pull, cache on failure)."""
        cmd = agent_command(self.server.endpoint, self.cluster, self.agent_dir, pull_behavior="default")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_PROFILE", "AWS_SHARED"))}
        env.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret, AWS_EC2_METADATA_DISABLED="true",
                   **{protocol.HEARTBEAT_ENV: str(self.heartbeat)})
        with open(self.agent_log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        arn = wait_until(self._connected_instance, timeout=30, what="the agent to connect")
        assert arn is not None
        self.instance_arn = arn
        return arn

    def run(self, *cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, env=self.cli_env, timeout=180,
                           check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def push(self, repo: str, tag: str) -> tuple[str, str]:
        """Push the busybox image as ``repo:tag``; (repositoryUri:tag, pushed manifest digest)."""
        uri = self.ecr.create_repository(repositoryName=repo)["repository"]["repositoryUri"]
        assert uri == f"{self.host}/{repo}"
        password = self.run(AWS, "ecr", "get-login-password", "--endpoint-url", self.server.endpoint).stdout
        self.run("docker", "login", "--username", "AWS", "--password-stdin", self.host, stdin=password)
        ref = f"{uri}:{tag}"
        self.refs.append(ref)
        self.run("docker", "tag", self.image, ref)
        self.run("docker", "push", ref)
        (detail,) = self.ecr.describe_images(repositoryName=repo)["imageDetails"]
        return ref, detail["imageDigest"]

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            for ref in self.refs:
                docker("rmi", "--force", ref)
            self._docker_config.cleanup()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Env(busybox_image()).agent_running() as e:
        yield e


def _image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).strip()


def test_service_runs_an_image_pulled_from_dockyard(env: Env) -> None:
    repo = "dy/agent-" + uuid.uuid4().hex[:8]
    ref, pushed = env.push(repo, "v1")
    original = _image_id(env.image)
    assert original
    # Only the pushed tag goes: the agent must pull it from the server.
    env.run("docker", "rmi", ref)
    assert _image_id(ref) == ""
    assert _image_id(env.image) == original

    td = env.ecs.register_task_definition(family="ecr-" + uuid.uuid4().hex[:8], containerDefinitions=[
        {"name": "main", "image": ref, "memory": 32, "essential": True, "command": ["sleep", "3600"],
         "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
    name = "ecr-" + uuid.uuid4().hex[:6]
    env.ecs.create_service(cluster=env.cluster, serviceName=name, taskDefinition=td, desiredCount=1,
                           launchType="EC2")
    try:
        def running() -> dict[str, Any] | None:
            arns = env.ecs.list_tasks(cluster=env.cluster, serviceName=name)["taskArns"]
            if not arns:
                return None
            (t,) = env.ecs.describe_tasks(cluster=env.cluster, tasks=arns)["tasks"]
            if t["lastStatus"] == "STOPPED":
                raise AssertionError(f"the task stopped: {t.get('stoppedReason')} {t['containers']}\n{env.log()}")
            return t if t["lastStatus"] == "RUNNING" else None

        try:
            task = wait_until(running, 60, "the service's task to be RUNNING")
        except AssertionError as e:
            svc = env.ecs.describe_services(cluster=env.cluster, services=[name])["services"][0]
            arns = env.ecs.list_tasks(cluster=env.cluster, serviceName=name, desiredStatus="STOPPED")["taskArns"]
            tasks = env.ecs.describe_tasks(cluster=env.cluster, tasks=arns)["tasks"] if arns else []
            raise AssertionError(f"{e}\nevents: {[ev['message'] for ev in svc['events'][:5]]}\n"
                                 f"tasks: {[(t['lastStatus'], t.get('stoppedReason')) for t in tasks]}\n"
                                 f"{env.log()}") from None
        assert task["pullStartedAt"] and task["pullStoppedAt"], task
        (c,) = task["containers"]
        assert c["image"] == ref
        (cid,) = env.docker_ids(task["taskArn"], all_=False)
        assert cid == c["runtimeId"]
        container = inspect(cid)
        assert container["State"]["Running"] is True
        assert container["Config"]["Image"] == ref
        # The container runs the image the engine pulled from the server: same content as the
        # original busybox (same image id), now carrying the pushed manifest digest.
        assert container["Image"] == original
        assert _image_id(ref) == original
        repo_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref))
        assert f"{env.host}/{repo}@{pushed}" in repo_digests, repo_digests
        # What the agent reports as the container's image digest is the image the container runs.
        assert c.get("imageDigest") in (pushed, original), c
        # The agent asked for a token with its own key; the ECR API saw a pull of the manifest.
        (detail,) = env.ecr.describe_images(repositoryName=repo)["imageDetails"]
        assert detail["imageDigest"] == pushed
    finally:
        env.ecs.update_service(cluster=env.cluster, service=name, desiredCount=0)
        env.ecs.delete_service(cluster=env.cluster, service=name, force=True)
