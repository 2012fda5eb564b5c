"""Repository policies decide push and pull, on /v2/ and through the ECR API, against a real server:
an explicit Deny refuses a same-account user, and another account's key needs an Allow."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers.agents import create_agent_key
from tests.helpers.server import ServerProcess
from tests.integration.test_registry_http import DOCKER, Registry, error_code

OTHER = "222233334444"


def password_of(client: Any) -> str:
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return str(base64.b64decode(token).decode().partition(":")[2])


def manifest_for(reg: Registry, repo: str) -> bytes:
    seed = uuid.uuid4().hex
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = (seed * 100).encode()
    cdig, ldig = reg.push_blob(repo, config), reg.push_blob(repo, layer)
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cdig,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ldig,
                    "size": len(layer)}],
    }).encode()


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def ecr(server: ServerProcess) -> Any:
    return server.client("ecr")


@pytest.fixture(scope="module")
def owner(ecr: Any) -> str:
    return str(ecr.describe_registry()["registryId"])


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Any:
    key, secret = create_agent_key(server, user="alice")
    return server.client("ecr", key=key, secret=secret)


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> Any:
    key, secret = create_agent_key(server, account_id=OTHER, user="bob")
    return server.client("ecr", key=key, secret=secret)


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def test_deny_put_image_for_alice(server: ServerProcess, ecr: Any, alice: Any, owner: str) -> None:
    name = f"deny-{uuid.uuid4().hex[:8]}"
    arn = ecr.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    alice_arn = f"arn:aws:iam::{owner}:user/alice"
    ecr.set_repository_policy(repositoryName=name, policyText=policy(
        {"Sid": "noalice", "Effect": "Deny", "Principal": {"AWS": alice_arn}, "Action": "ecr:PutImage"}))

    areg = Registry(server.endpoint, password_of(alice))
    manifest = manifest_for(areg, name)  # blob pushes are not denied
    r = areg("PUT", f"/v2/{name}/manifests/v1", data=manifest, headers={"Content-Type": DOCKER})
    assert r.status_code == 403, r.text
    assert error_code(r) == "DENIED"
    assert r.json()["errors"][0]["message"] == (
        f"User: {alice_arn} is not authorized to perform: ecr:PutImage on resource: {arn} "
        "with an explicit deny in a resource-based policy")

    with pytest.raises(ClientError) as e:
        alice.put_image(repositoryName=name, imageManifest=manifest.decode(), imageTag="v1")
    assert code_of(e) == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "explicit deny" in e.value.response["Error"]["Message"]

    # Pulling is not denied: alice reads what root pushes.
    rreg = Registry(server.endpoint, password_of(ecr))
    r = rreg("PUT", f"/v2/{name}/manifests/v1", data=manifest, headers={"Content-Type": DOCKER})
    assert r.status_code == 201, r.text
    r = areg("GET", f"/v2/{name}/manifests/v1", headers={"Accept": DOCKER})
    assert r.status_code == 200 and r.content == manifest
    assert alice.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"]

    # Without the policy alice pushes again.
    ecr.delete_repository_policy(repositoryName=name)
    r = areg("PUT", f"/v2/{name}/manifests/v2", data=manifest, headers={"Content-Type": DOCKER})
    assert r.status_code == 201, r.text


def test_deny_pull_and_delete_on_v2(server: ServerProcess, ecr: Any, alice: Any, owner: str) -> None:
    name = f"nopull-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=name)
    rreg = Registry(server.endpoint, password_of(ecr))
    manifest = manifest_for(rreg, name)
    assert rreg("PUT", f"/v2/{name}/manifests/v1", data=manifest,
                headers={"Content-Type": DOCKER}).status_code == 201
    layer = json.loads(manifest)["layers"][0]["digest"]
    ecr.set_repository_policy(repositoryName=name, policyText=policy(
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{owner}:user/alice"},
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:ListImages",
                    "ecr:BatchDeleteImage"]}))
    areg = Registry(server.endpoint, password_of(alice))
    for method, path in (("GET", f"/v2/{name}/manifests/v1"), ("GET", f"/v2/{name}/blobs/{layer}"),
                         ("GET", f"/v2/{name}/tags/list"), ("DELETE", f"/v2/{name}/manifests/v1")):
        r = areg(method, path)
        assert r.status_code == 403, (method, path, r.text)
        assert error_code(r) == "DENIED"
    assert areg("HEAD", f"/v2/{name}/blobs/{layer}").status_code == 200  # BatchCheckLayerAvailability
    with pytest.raises(ClientError) as e:
        alice.get_download_url_for_layer(repositoryName=name, layerDigest=layer)
    assert code_of(e) == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        alice.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert code_of(e) == "AccessDeniedException"
    # A mount from the repository alice may not pull from falls back to an upload.
    target = f"mnt-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=target)
    r = areg("POST", f"/v2/{target}/blobs/uploads/", params={"mount": layer, "from": name})
    assert r.status_code == 202, r.text
    r = rreg("POST", f"/v2/{target}/blobs/uploads/", params={"mount": layer, "from": name})
    assert r.status_code == 201, r.text


def test_cross_account_pull_needs_an_allow(server: ServerProcess, ecr: Any, bob: Any, owner: str) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    arn = ecr.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    rreg = Registry(server.endpoint, password_of(ecr))
    manifest = manifest_for(rreg, name)
    assert rreg("PUT", f"/v2/{name}/manifests/v1", data=manifest,
                headers={"Content-Type": DOCKER}).status_code == 201
    layer = json.loads(manifest)["layers"][0]["digest"]
    bob_arn = f"arn:aws:iam::{OTHER}:user/bob"

    with pytest.raises(ClientError) as e:
        bob.batch_get_image(registryId=owner, repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert code_of(e) == "AccessDeniedException"
    assert e.value.response["Error"]["Message"] == (
        f"User: {bob_arn} is not authorized to perform: ecr:BatchGetImage on resource: {arn} "
        "because no resource-based policy allows the ecr:BatchGetImage action")
    # Bob's own registry has no such repository.
    with pytest.raises(ClientError) as e:
        bob.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert code_of(e) == "RepositoryNotFoundException"

    ecr.set_repository_policy(repositoryName=name, policyText=policy(
        {"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": OTHER},
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}))
    r = bob.batch_get_image(registryId=owner, repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert [i["imageManifest"] for i in r["images"]] == [manifest.decode()]
    assert r["images"][0]["registryId"] == owner
    assert bob.get_download_url_for_layer(registryId=owner, repositoryName=name, layerDigest=layer)["layerDigest"] \
        == layer
    r = bob.batch_check_layer_availability(registryId=owner, repositoryName=name, layerDigests=[layer])
    assert r["layers"][0]["layerAvailability"] == "AVAILABLE"
    for call in (lambda: bob.list_images(registryId=owner, repositoryName=name),
                 lambda: bob.describe_images(registryId=owner, repositoryName=name),
                 lambda: bob.put_image(registryId=owner, repositoryName=name, imageManifest=manifest.decode(),
                                       imageTag="bob")):
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == "AccessDeniedException"

    ecr.set_repository_policy(repositoryName=name, policyText=policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}, "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": {"AWS": bob_arn}, "Action": "ecr:BatchGetImage"}))
    assert bob.list_images(registryId=owner, repositoryName=name)["imageIds"]
    details = bob.describe_images(registryId=owner, repositoryName=name)["imageDetails"]
    assert details[0]["registryId"] == owner
    with pytest.raises(ClientError) as e:
        bob.batch_get_image(registryId=owner, repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert "explicit deny" in e.value.response["Error"]["Message"]

    ecr.delete_repository_policy(repositoryName=name)
    with pytest.raises(ClientError) as e:
        bob.batch_get_image(registryId=owner, repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert code_of(e) == "AccessDeniedException"
