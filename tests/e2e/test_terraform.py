"""Terraform's AWS provider against a live server: apply, a plan with no changes, destroy.

Terraform and the provider come from the machine (terraform on PATH, the provider in
a local filesystem mirror found at run time); nothing is downloaded. Skipped when
either is missing, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess

pytestmark = [pytest.mark.terraform, pytest.mark.timeout(900)]

CONFIG = Path(__file__).with_name("terraform")
PROVIDER = "registry.terraform.io/hashicorp/aws"


def _mirror_roots() -> list[Path]:
    home = Path.home()
    roots: list[str | Path] = [
        os.environ.get("DOCKYARD_TF_PROVIDER_MIRROR", ""),
        home / ".terraform.d" / "plugins", home / ".local" / "share" / "terraform" / "plugins",
        "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins"]
    # Mirrors laid down by machine images, e.g. /opt/<something>/registry.terraform.io/...
    roots += sorted(glob.glob("/opt/*")) + sorted(glob.glob("/opt/*/*")) + sorted(glob.glob("/srv/*"))
    return [Path(r) for r in roots if r]


def find_provider_mirror() -> Path | None:
    """A filesystem mirror holding hashicorp/aws, unpacked or packed layout."""
    for root in _mirror_roots():
        base = root / PROVIDER
        if glob.glob(str(base / "*" / "*" / "terraform-provider-aws*")) or \
                glob.glob(str(base / "terraform-provider-aws_*.zip")):
            return root
    return None


def require_terraform() -> tuple[str, Path]:
    terraform = shutil.which("terraform")
    mirror = find_provider_mirror()
    if terraform is None or mirror is None:
        msg = ("terraform is not on PATH" if terraform is None else
               f"no filesystem mirror of {PROVIDER} found (set DOCKYARD_TF_PROVIDER_MIRROR)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return terraform, mirror


def provider_calls(log: Path) -> list[str]:
    """``Operation status [error type]`` for each answer in the provider's debug log."""
    if not log.exists():
        return []
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\dT)", log.read_text(errors="replace"))
    calls = []
    for e in entries:
        if "HTTP Response Received" not in e:
            continue
        op = re.search(r"rpc\.method=(\w+)", e)
        status = re.search(r"http\.status_code=(\d+)", e)
        err = re.search(r"x_amzn_errortype=([\w:.]+)", e)
        calls.append(" ".join(m.group(1) for m in (op, status, err) if m))
    return calls


class Terraform:
    def __init__(self, work: Path, server: ServerProcess, name: str) -> None:
        exe, mirror = require_terraform()
        self.exe = exe
        self.work = work
        for tf in CONFIG.glob("*.tf"):
            shutil.copy(tf, work / tf.name)
        cli_config = work / "terraform.rc"
        cli_config.write_text(
            "provider_installation {\n"
            f"  filesystem_mirror {{\n    path    = {json.dumps(str(mirror))}\n"
            f"    include = [{json.dumps(PROVIDER)}]\n  }}\n"
            "}\n")
        key, secret = server.credentials()
        self.log = work / "terraform.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),  # no ~/.aws, no ~/.terraformrc of the machine
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # The provider's HTTP requests and answers, for reading after a failure.
            "TF_LOG_PROVIDER": "DEBUG",
            "TF_LOG_PATH": str(self.log),
            "TF_VAR_endpoint": server.endpoint,
            "TF_VAR_access_key": key,
            "TF_VAR_secret_key": secret,
            "TF_VAR_name": name,
        }

    def run(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 300) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.exe, *args], cwd=self.work, env=self.env, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode not in ok:
            calls = "\n  ".join(provider_calls(self.log)[-40:])
            pytest.fail(f"terraform {' '.join(args)} exited {r.returncode}:\n{r.stdout[-6000:]}\n"
                        f"{r.stderr[-6000:]}\nECS calls (last 40; full log {self.log}):\n  {calls}",
                        pytrace=False)
        return r


def test_apply_plan_destroy(server: ServerProcess, ecs: Any, name: str, tmp_path: Path) -> None:
    tf = Terraform(tmp_path, server, name)
    tf.run("init", "-input=false", "-no-color")
    tf.run("apply", "-auto-approve", "-input=false", "-no-color")
    out = {k: v["value"] for k, v in json.loads(tf.run("output", "-json").stdout).items()}

    (cluster,) = ecs.describe_clusters(clusters=[out["cluster_arn"]], include=["TAGS", "SETTINGS"])["clusters"]
    assert cluster["clusterName"] == name and cluster["status"] == "ACTIVE"
    assert cluster["tags"] == [{"key": "team", "value": "dockyard"}]
    td = ecs.describe_task_definition(taskDefinition=out["task_definition_arn"])["taskDefinition"]
    assert (td["family"], td["status"]) == (f"{name}-web", "ACTIVE")
    assert td["containerDefinitions"][0]["image"] == "127.0.0.1:5000/busybox:latest"
    (svc,) = ecs.describe_services(cluster=name, services=[out["service_arn"]])["services"]
    assert (svc["status"], svc["desiredCount"], svc["launchType"]) == ("ACTIVE", 0, "EC2")
    assert svc["taskDefinition"] == out["task_definition_arn"]

    # What the server answers reads back exactly as applied: nothing to change.
    plan = tf.run("plan", "-detailed-exitcode", "-input=false", "-no-color", ok=(0, 2))
    assert plan.returncode == 0, f"plan after apply wants changes:\n{plan.stdout}"

    tf.run("destroy", "-auto-approve", "-input=false", "-no-color")
    assert out["cluster_arn"] not in ecs.list_clusters()["clusterArns"]
    gone = ecs.describe_clusters(clusters=[out["cluster_arn"]])["clusters"]
    assert [c["status"] for c in gone] in ([], ["INACTIVE"])
    assert ecs.describe_task_definition(taskDefinition=out["task_definition_arn"])["taskDefinition"]["status"] \
        == "INACTIVE"
    try:
        services = ecs.describe_services(cluster=out["cluster_arn"], services=[out["service_arn"]])["services"]
    except ClientError as e:  # the cluster itself is gone
        assert e.response["Error"]["Code"] == "ClusterNotFoundException"
        services = []
    assert [s["status"] for s in services] in ([], ["INACTIVE"])
