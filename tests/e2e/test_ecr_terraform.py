"""Terraform's AWS provider manages an ECR repository and its lifecycle policy on a live server:
apply, a plan with no changes, destroy (tests/e2e/terraform/ecr/main.tf).

Terraform and the provider come from the machine as in test_terraform.py (skipped when missing,
a failure under CI=true); nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_terraform import Terraform
from tests.helpers.server import REGION, ServerProcess

pytestmark = [pytest.mark.terraform, pytest.mark.timeout(900)]

CONFIG = Path(__file__).parent / "terraform" / "ecr"


class EcrTerraform(Terraform):
    """test_terraform.py's runner on this test's configuration."""

    def __init__(self, work: Path, server: ServerProcess, name: str) -> None:
        super().__init__(work, server, name)
        for tf in work.glob("*.tf"):
            tf.unlink()
        for tf in CONFIG.glob("*.tf"):
            shutil.copy(tf, work / tf.name)


@pytest.fixture(scope="module")
def ecr(server: ServerProcess) -> Any:
    return server.client("ecr")


def test_repository_and_lifecycle_policy(server: ServerProcess, ecr: Any, name: str, tmp_path: Path) -> None:
    tf = EcrTerraform(tmp_path, server, name)
    tf.run("init", "-input=false", "-no-color")
    tf.run("apply", "-auto-approve", "-input=false", "-no-color")
    out = {k: v["value"] for k, v in json.loads(tf.run("output", "-json").stdout).items()}

    repo_name = f"{name}/app"
    (repo,) = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"]
    assert repo["repositoryArn"] == out["repository_arn"]
    assert repo["repositoryArn"] == f"arn:aws:ecr:{REGION}:{out['registry_id']}:repository/{repo_name}"
    assert repo["repositoryUri"] == out["repository_url"] == f"127.0.0.1:{server.port}/{repo_name}"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "team", "Value": "dockyard"}]
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName=repo_name)["lifecyclePolicyText"])
    assert [r["rulePriority"] for r in policy["rules"]] == [1, 2]
    assert policy["rules"][1]["selection"]["tagPrefixList"] == ["v"]

    # What the server answers reads back exactly as applied: nothing to change.
    plan = tf.run("plan", "-detailed-exitcode", "-input=false", "-no-color", ok=(0, 2))
    assert plan.returncode == 0, f"plan after apply wants changes:\n{plan.stdout}"

    tf.run("destroy", "-auto-approve", "-input=false", "-no-color")
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[repo_name])
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    assert not any(r["repositoryName"] == repo_name
                   for r in ecr.describe_repositories()["repositories"])
