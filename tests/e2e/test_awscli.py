"""The aws CLI (the awscli package in the venv) through a typical ECS session, end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import REGION, ServerProcess


def aws_executable() -> str:
    """The venv's aws CLI (beside this interpreter), else one on PATH; skip/fail when absent."""
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if found is None:
        msg = "the aws CLI is not installed (scripts/test installs the awscli package into .venv)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


class Aws:
    """Runs ``aws ecs ...`` against one server with its root key and nothing from ~/.aws."""

    def __init__(self, server: ServerProcess, home: Path) -> None:
        key, secret = server.credentials()
        self.exe = aws_executable()
        self.endpoint = server.endpoint
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, "ecs", *args, "--endpoint-url", self.endpoint, "--output", "json"],
                              env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def __call__(self, *args: str) -> Any:
        r = self.run(*args)
        assert r.returncode == 0, f"aws ecs {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else {}


@pytest.fixture
def aws(server: ServerProcess, tmp_path: Path) -> Aws:
    return Aws(server, tmp_path)


def test_cluster_session(aws: Aws, name: str) -> None:
    created = aws("create-cluster", "--cluster-name", name, "--tags", "key=team,value=a",
                  "--settings", "name=containerInsights,value=enabled")["cluster"]
    assert created["clusterName"] == name
    assert created["status"] == "ACTIVE"
    assert created["clusterArn"] == f"arn:aws:ecs:{REGION}:{created['clusterArn'].split(':')[4]}:cluster/{name}"

    assert created["clusterArn"] in aws("list-clusters")["clusterArns"]
    described = aws("describe-clusters", "--clusters", name, "--include", "TAGS", "SETTINGS")
    assert described["failures"] == []
    (c,) = described["clusters"]
    assert c["tags"] == [{"key": "team", "value": "a"}]
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert c["activeServicesCount"] == 0 and c["runningTasksCount"] == 0

    assert aws("delete-cluster", "--cluster", name)["cluster"]["status"] == "INACTIVE"
    assert created["clusterArn"] not in aws("list-clusters")["clusterArns"]

    # Errors come back as the CLI shows AWS's: a failing exit (255 in aws CLI v1, 254 in v2) and
    # the error code on stderr.
    r = aws.run("delete-cluster", "--cluster", name)
    assert r.returncode in (254, 255)
    assert "ClusterNotFoundException" in r.stderr


def test_task_definition_and_service_session(aws: Aws, name: str, tmp_path: Path) -> None:
    cluster_arn = aws("create-cluster", "--cluster-name", name)["cluster"]["clusterArn"]
    family = f"{name}-web"
    image = "127.0.0.1:5000/busybox:latest"
    spec: dict[str, Any] = {
        "family": family,
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "essential": True,
            "memory": 64,
            "cpu": 128,
            "command": ["httpd", "-f", "-p", "8080"],
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "environment": [{"name": "GREETING", "value": "hello"}],
        }],
        "tags": [{"key": "team", "value": "a"}],
    }
    spec_file = tmp_path / "taskdef.json"
    spec_file.write_text(json.dumps(spec))

    # -- task definitions
    td = aws("register-task-definition", "--cli-input-json", f"file://{spec_file}")["taskDefinition"]
    assert td["family"] == family and td["revision"] == 1 and td["status"] == "ACTIVE"
    assert td["taskDefinitionArn"].endswith(f":task-definition/{family}:1")
    web = td["containerDefinitions"][0]
    assert (web["name"], web["image"], web["memory"], web["cpu"]) == ("web", image, 64, 128)
    assert web["portMappings"] == [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]
    assert web["environment"] == [{"name": "GREETING", "value": "hello"}]

    listed = aws("list-task-definitions", "--family-prefix", family)["taskDefinitionArns"]
    assert listed == [td["taskDefinitionArn"]]
    assert family in aws("list-task-definition-families", "--family-prefix", family)["families"]
    got = aws("describe-task-definition", "--task-definition", f"{family}:1", "--include", "TAGS")
    assert got["taskDefinition"]["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert got["tags"] == [{"key": "team", "value": "a"}]

    # -- services
    svc = aws("create-service", "--cluster", name, "--service-name", "web", "--task-definition", family,
              "--desired-count", "0", "--launch-type", "EC2")["service"]
    assert svc["serviceName"] == "web" and svc["status"] == "ACTIVE"
    assert svc["clusterArn"] == cluster_arn
    assert svc["desiredCount"] == 0 and svc["launchType"] == "EC2"
    assert svc["taskDefinition"] == td["taskDefinitionArn"]
    assert svc["serviceArn"].endswith(f":service/{name}/web")

    assert aws("list-services", "--cluster", name)["serviceArns"] == [svc["serviceArn"]]
    (d,) = aws("describe-services", "--cluster", name, "--services", "web")["services"]
    assert (d["serviceArn"], d["status"], d["desiredCount"]) == (svc["serviceArn"], "ACTIVE", 0)
    assert [dep["status"] for dep in d["deployments"]] == ["PRIMARY"]

    td2 = aws("register-task-definition", "--cli-input-json", f"file://{spec_file}")["taskDefinition"]
    assert td2["revision"] == 2
    updated = aws("update-service", "--cluster", name, "--service", "web", "--task-definition", f"{family}:2",
                  "--desired-count", "0")["service"]
    assert updated["taskDefinition"] == td2["taskDefinitionArn"]
    assert updated["deployments"][0]["status"] == "PRIMARY"
    assert updated["deployments"][0]["taskDefinition"] == td2["taskDefinitionArn"]

    deleted = aws("delete-service", "--cluster", name, "--service", "web", "--force")["service"]
    assert deleted["status"] in ("DRAINING", "INACTIVE")
    # With no tasks left to stop the service goes INACTIVE, and then the cluster can go.
    deadline = time.monotonic() + 30
    while True:
        r = aws("describe-services", "--cluster", name, "--services", "web")
        status = r["services"][0]["status"] if r["services"] else "gone"
        if status in ("INACTIVE", "gone") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status in ("INACTIVE", "gone")
    assert aws("list-services", "--cluster", name)["serviceArns"] == []

    for rev in (1, 2):
        out = aws("deregister-task-definition", "--task-definition", f"{family}:{rev}")["taskDefinition"]
        assert out["status"] == "INACTIVE"
    assert aws("list-task-definitions", "--family-prefix", family)["taskDefinitionArns"] == []

    assert aws("delete-cluster", "--cluster", name)["cluster"]["status"] == "INACTIVE"
