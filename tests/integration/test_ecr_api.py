"""The ECR control-plane API through boto3 against a real server: repositories, policies,
lifecycle policies, authorization tokens, layer uploads and images."""

import base64
import hashlib
import json
import uuid

import pytest
from botocore.exceptions import ClientError

ACCT_RE = r"[0-9]{12}"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def ecr(server):
    return server.client("ecr")


@pytest.fixture
def repo(ecr):
    name = "t/" + uuid.uuid4().hex[:10]
    ecr.create_repository(repositoryName=name)
    return name


def push_blob(ecr, repo, data: bytes, parts: int = 1) -> str:
    up = ecr.initiate_layer_upload(repositoryName=repo)
    uid = up["uploadId"]
    step = max(1, -(-len(data) // parts))
    for first in range(0, len(data), step):
        chunk = data[first:first + step]
        r = ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=first,
                                  partLastByte=first + len(chunk) - 1, layerPartBlob=chunk)
        assert r["lastByteReceived"] == first + len(chunk) - 1
    digest = sha(data)
    r = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    assert r["layerDigest"] == digest
    return digest


def make_image(ecr, repo, seed: str = "x", media_type: str = DOCKER) -> tuple[str, str]:
    """Push a config and a layer; return (manifest text, digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = (seed * 1000).encode()
    cdig, ldig = push_blob(ecr, repo, config), push_blob(ecr, repo, layer)
    cfg_type = ("application/vnd.docker.container.image.v1+json" if media_type == DOCKER
                else "application/vnd.oci.image.config.v1+json")
    layer_type = ("application/vnd.docker.image.rootfs.diff.tar.gzip" if media_type == DOCKER
                  else "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": cfg_type, "digest": cdig, "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": ldig, "size": len(layer)}],
    })
    return manifest, sha(manifest.encode())


# -- repositories ------------------------------------------------------------

def test_create_describe_delete_repository(ecr, server):
    name = "app-" + uuid.uuid4().hex[:8]
    r = ecr.create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "a"}])["repository"]
    acct = r["registryId"]
    assert r["repositoryName"] == name
    assert r["repositoryArn"] == f"arn:aws:ecr:us-east-1:{acct}:repository/{name}"
    assert r["repositoryUri"] == f"127.0.0.1:{server.port}/{name}"
    assert r["imageTagMutability"] == "MUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": False}
    assert r["encryptionConfiguration"] == {"encryptionType": "AES256"}
    got = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert got == [r]
    assert ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"] == [{"Key": "team", "Value": "a"}]
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name)
    assert code(e) == "RepositoryAlreadyExistsException"
    assert message(e) == f"The repository with name '{name}' already exists in the registry with id '{acct}'"
    d = ecr.delete_repository(repositoryName=name)["repository"]
    assert d["repositoryArn"] == r["repositoryArn"]
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert code(e) == "RepositoryNotFoundException"
    assert message(e) == f"The repository with name '{name}' does not exist in the registry with id '{acct}'"
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=name)
    assert code(e) == "RepositoryNotFoundException"
    # Created again: no tags carried over.
    r2 = ecr.create_repository(repositoryName=name)["repository"]
    assert ecr.list_tags_for_resource(resourceArn=r2["repositoryArn"])["tags"] == []


def test_create_repository_options(ecr):
    name = "opt-" + uuid.uuid4().hex[:8]
    r = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE",
                              imageScanningConfiguration={"scanOnPush": True},
                              encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "k1"})["repository"]
    assert r["imageTagMutability"] == "IMMUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    assert r["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": "k1"}
    name2 = "ex-" + uuid.uuid4().hex[:8]
    r = ecr.create_repository(repositoryName=name2, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                              imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}]
                              )["repository"]
    assert r["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest*"}]


@pytest.mark.parametrize("bad", ["A", "Upper", "-lead", "trail-", "a//b", "a..b", "x" * 257, "a b"])
def test_create_repository_bad_names(ecr, bad):
    if len(bad) < 2:  # botocore itself refuses what is shorter than the model's min
        with pytest.raises(Exception):  # noqa: B017
            ecr.create_repository(repositoryName=bad)
        return
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=bad)
    assert code(e) == "InvalidParameterException"


def test_create_repository_invalid_options_change_nothing(ecr):
    name = "bad-" + uuid.uuid4().hex[:8]
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, tags=[{"Key": "aws:x", "Value": "1"}])
    assert code(e) == "InvalidTagParameterException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    assert code(e) == "TooManyTagsException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, encryptionConfiguration={"encryptionType": "AES256",
                                                                            "kmsKey": "k"})
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert code(e) == "RepositoryNotFoundException"


def test_describe_repositories_pagination(ecr):
    prefix = "page-" + uuid.uuid4().hex[:6]
    names = [f"{prefix}/r{i}" for i in range(5)]
    for n in names:
        ecr.create_repository(repositoryName=n)
    seen = []
    token = None
    while True:
        kw = {"maxResults": 2}
        if token:
            kw["nextToken"] = token
        page = ecr.describe_repositories(**kw)
        assert len(page["repositories"]) <= 2
        seen += [r["repositoryName"] for r in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
    assert [s for s in seen if s.startswith(prefix)] == names
    assert seen == sorted(seen)
    all_names = [r["repositoryName"] for r in
                 ecr.get_paginator("describe_repositories").paginate().build_full_result()["repositories"]]
    assert all_names == seen
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=names[:1], maxResults=1)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(maxResults=1001)
    assert code(e) == "InvalidParameterException"


def test_other_registry_is_not_found(ecr, repo):
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(registryId="000000000000", repositoryNames=[repo])
    assert code(e) == "RepositoryNotFoundException"
    assert "'000000000000'" in message(e)


def test_delete_repository_not_empty_and_force(ecr, repo):
    manifest, _digest = make_image(ecr, repo)
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=repo)
    assert code(e) == "RepositoryNotEmptyException"
    assert "cannot be deleted because it still contains images" in message(e)
    assert ecr.describe_images(repositoryName=repo)["imageDetails"]
    ecr.delete_repository(repositoryName=repo, force=True)
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo)
    assert code(e) == "RepositoryNotFoundException"
    # A repository of the same name starts empty.
    ecr.create_repository(repositoryName=repo)
    assert ecr.list_images(repositoryName=repo).get("imageIds", []) == []
    r = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(b"x" * 1000)])
    assert r["layers"] == [] and r["failures"][0]["failureCode"] == "MissingLayerDigest"


def test_put_image_tag_mutability_and_scanning(ecr, repo):
    r = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert r["imageTagMutability"] == "IMMUTABLE" and r["repositoryName"] == repo
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    r = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    got = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert got["imageScanningConfiguration"] == {"scanOnPush": True}
    with pytest.raises(ClientError) as e:
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE_WITH_EXCLUSION")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.put_image_tag_mutability(repositoryName=repo + "-nope", imageTagMutability="MUTABLE")
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.put_image_scanning_configuration(repositoryName=repo + "-nope",
                                             imageScanningConfiguration={"scanOnPush": True})
    assert code(e) == "RepositoryNotFoundException"


def test_tags(ecr, repo):
    arn = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryArn"]
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "9"}])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "a", "Value": "9"},
                                                                   {"Key": "b", "Value": "2"}]
    ecr.untag_resource(resourceArn=arn, tagKeys=["a", "zzz"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert code(e) == "TooManyTagsException"
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "aws:reserved", "Value": "v"}])
    assert code(e) == "InvalidTagParameterException"
    with pytest.raises(ClientError) as e:
        ecr.list_tags_for_resource(resourceArn="arn:aws:ecs:us-east-1:123456789012:cluster/x")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.list_tags_for_resource(resourceArn=arn + "-missing")
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.untag_resource(resourceArn=arn + "-missing", tagKeys=["a"])
    assert code(e) == "RepositoryNotFoundException"


def test_describe_registry(ecr):
    r = ecr.describe_registry()
    assert len(r["registryId"]) == 12
    assert r["replicationConfiguration"] == {"rules": []}


# -- policies ----------------------------------------------------------------

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})


def test_repository_policy(ecr, repo):
    acct = ecr.describe_registry()["registryId"]
    with pytest.raises(ClientError) as e:
        ecr.get_repository_policy(repositoryName=repo)
    assert code(e) == "RepositoryPolicyNotFoundException"
    assert message(e) == (f"Repository policy does not exist for the repository with name '{repo}' "
                          f"in the registry with id '{acct}'")
    r = ecr.set_repository_policy(repositoryName=repo, policyText=POLICY)
    assert r["policyText"] == POLICY and r["registryId"] == acct
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == POLICY
    for bad in ["not json", "[]", json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*",
                                                             "Action": "ecr:*"}]})]:
        with pytest.raises(ClientError) as e:
            ecr.set_repository_policy(repositoryName=repo, policyText=bad)
        assert code(e) == "InvalidParameterException"
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == POLICY
    assert ecr.delete_repository_policy(repositoryName=repo)["policyText"] == POLICY
    with pytest.raises(ClientError) as e:
        ecr.delete_repository_policy(repositoryName=repo)
    assert code(e) == "RepositoryPolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.set_repository_policy(repositoryName=repo + "-x", policyText=POLICY)
    assert code(e) == "RepositoryNotFoundException"


def lifecycle(*rules):
    return json.dumps({"rules": list(rules)})


RULE_UNTAGGED = {"rulePriority": 1, "description": "old untagged",
                 "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                               "countNumber": 14},
                 "action": {"type": "expire"}}
RULE_TAGGED = {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
                                                "countType": "imageCountMoreThan", "countNumber": 10},
               "action": {"type": "expire"}}
RULE_ANY = {"rulePriority": 3, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                             "countNumber": 100}, "action": {"type": "expire"}}


def test_lifecycle_policy(ecr, repo):
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert code(e) == "LifecyclePolicyNotFoundException"
    text = lifecycle(RULE_UNTAGGED, RULE_TAGGED, RULE_ANY)
    r = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    assert r["lifecyclePolicyText"] == text and r["repositoryName"] == repo
    assert ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == text
    assert ecr.delete_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == text
    with pytest.raises(ClientError) as e:
        ecr.delete_lifecycle_policy(repositoryName=repo)
    assert code(e) == "LifecyclePolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName=repo + "-x", lifecyclePolicyText=text)
    assert code(e) == "RepositoryNotFoundException"


def _sel(**changes):
    rule = json.loads(json.dumps(RULE_TAGGED))
    rule["selection"].update(changes)
    return {k: v for k, v in rule.items()}


@pytest.mark.parametrize("rules", [
    [],
    [_sel(tagStatus="sometimes")],
    [_sel(tagPrefixList=None)],                                   # tagged without a list
    [_sel(tagPatternList=["v*"])],                                # both lists
    [_sel(countType="sinceImagePushed")],                         # no countUnit
    [_sel(countUnit="days")],                                     # countUnit with imageCountMoreThan
    [_sel(countNumber=0)],
    [{**RULE_TAGGED, "action": {"type": "delete"}}],
    [RULE_TAGGED, {**RULE_UNTAGGED, "rulePriority": 2}],          # duplicate priority
    [{**RULE_ANY, "rulePriority": 1}, RULE_TAGGED],              # any not last
    [{"rulePriority": 1, "action": {"type": "expire"}}],          # no selection
    [{**RULE_UNTAGGED, "selection": {**RULE_UNTAGGED["selection"], "tagPrefixList": ["v"]}}],
])
def test_lifecycle_policy_invalid(ecr, repo, rules):
    for r in rules:
        sel = r.get("selection", {})
        for k in [k for k, v in sel.items() if v is None]:
            del sel[k]
    text = json.dumps({"rules": rules, "pad": "x" * 100})
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    assert code(e) == "InvalidParameterException"
    assert "Lifecycle policy validation failure" in message(e)
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert code(e) == "LifecyclePolicyNotFoundException"


# -- authorization -----------------------------------------------------------

def test_get_authorization_token(ecr, server):
    data = ecr.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    d = data[0]
    user, _, password = base64.b64decode(d["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    assert d["proxyEndpoint"] == f"http://127.0.0.1:{server.port}"
    import time
    assert 12 * 3600 - 60 < d["expiresAt"].timestamp() - time.time() <= 12 * 3600 + 1
    # The password verifies against the store, and only while it is intact.
    from dockyard.services.ecr.auth import verify_password
    from dockyard.state.store import Store
    store = Store(f"sqlite:///{server.data_dir / 'dockyard.db'}")
    ident = store.read(verify_password, password, time.time())
    assert ident is not None and ident.access_key_id == server.credentials()[0]
    assert store.read(verify_password, password[:-2] + "AA", time.time()) is None
    assert store.read(verify_password, password, time.time() + 13 * 3600) is None
    assert store.read(verify_password, "garbage", time.time()) is None


# -- layers ------------------------------------------------------------------

def test_layer_upload_and_availability(ecr, repo, server):
    data = b"layer-bytes-" * 5000
    digest = push_blob(ecr, repo, data, parts=3)
    r = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest, sha(b"nope"), "bad"])
    assert r["layers"] == [{"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": len(data)}]
    codes = {f["layerDigest"]: f["failureCode"] for f in r["failures"]}
    assert codes == {sha(b"nope"): "MissingLayerDigest", "bad": "InvalidLayerDigest"}
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert url["downloadUrl"] == f"http://127.0.0.1:{server.port}/v2/{repo}/blobs/{digest}"
    assert url["layerDigest"] == digest
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha(b"nope"))
    assert code(e) == "LayersNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest="nope")
    assert code(e) == "InvalidParameterException"
    # Uploading the same layer again into the same repository: ECR says it exists.
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=len(data) - 1,
                          layerPartBlob=data)
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    assert code(e) == "LayerAlreadyExistsException"
    # Layers are per repository.
    other = repo + "-other"
    ecr.create_repository(repositoryName=other)
    assert ecr.batch_check_layer_availability(repositoryName=other, layerDigests=[digest])["layers"] == []


def test_layer_upload_errors(ecr, repo):
    missing = str(uuid.uuid4())
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId=missing, partFirstByte=0, partLastByte=0,
                              layerPartBlob=b"x")
    assert code(e) == "UploadNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=missing, layerDigests=[sha(b"x")])
    assert code(e) == "UploadNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.initiate_layer_upload(repositoryName=repo + "-x")
    assert code(e) == "RepositoryNotFoundException"
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha(b"")])
    assert code(e) == "EmptyUploadException"
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=0, partLastByte=2, layerPartBlob=b"abc")
    # A part that does not start right after the last byte received, or whose range is not its size.
    for first, last, blob in [(5, 7, b"def"), (0, 2, b"abc"), (3, 9, b"def")]:
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=first, partLastByte=last,
                                  layerPartBlob=blob)
        assert code(e) == "InvalidLayerPartException"
        assert e.value.response["lastValidByteReceived"] == 2
    # Another repository cannot use this upload.
    other = repo + "-o"
    ecr.create_repository(repositoryName=other)
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=other, uploadId=uid, partFirstByte=3, partLastByte=5,
                              layerPartBlob=b"def")
    assert code(e) == "UploadNotFoundException"
    ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=3, partLastByte=5, layerPartBlob=b"def")
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha(b"abcX")])
    assert code(e) == "InvalidLayerException"
    assert sha(b"abcdef") in message(e)
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=["md5:abc"])
    assert code(e) == "InvalidLayerException"
    # The upload survives the failures and completes with the right digest.
    ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha(b"abcdef")])
    assert ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(b"abcdef")])["layers"]
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha(b"abcdef")])
    assert code(e) == "UploadNotFoundException"


# -- images ------------------------------------------------------------------

def test_put_and_get_image(ecr, repo):
    manifest, digest = make_image(ecr, repo)
    r = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")["image"]
    assert r["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert r["imageManifest"] == manifest and r["imageManifestMediaType"] == DOCKER
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageDigest": digest},
                                                             {"imageTag": "nope"}])
    assert [i["imageId"] for i in got["images"]] == [{"imageDigest": digest, "imageTag": "v1"},
                                                     {"imageDigest": digest}]
    assert all(i["imageManifest"] == manifest for i in got["images"])
    assert got["failures"] == [{"imageId": {"imageTag": "nope"}, "failureCode": "ImageNotFound",
                                "failureReason": "Requested image not found"}]
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[
        {"imageTag": "v1", "imageDigest": sha(b"other")}, {"imageDigest": "bad"}, {"imageTag": "bad tag!"},
        {"imageDigest": sha(b"other")}])
    assert [f["failureCode"] for f in got["failures"]] == [
        "ImageTagDoesNotMatchDigest", "InvalidImageDigest", "InvalidImageTag", "ImageNotFound"]
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[OCI])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageNotFound"
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[DOCKER])
    assert len(got["images"]) == 1
    # Same manifest, same tag: already exists. Another tag for it: fine.
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert code(e) == "ImageAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest)
    assert code(e) == "ImageAlreadyExistsException"
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="latest", imageDigest=digest)
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(detail) == 1
    d = detail[0]
    assert d["imageDigest"] == digest and sorted(d["imageTags"]) == ["latest", "v1"]
    assert d["imageSizeInBytes"] == 1000  # the layers, as ECR counts
    assert d["imageManifestMediaType"] == DOCKER
    assert d["artifactMediaType"] == "application/vnd.docker.container.image.v1+json"
    assert d["imagePushedAt"].timestamp() > 0


def test_put_image_errors_change_nothing(ecr, repo):
    manifest, _digest = make_image(ecr, repo)
    doc = json.loads(manifest)
    doc["layers"].append({"mediaType": "x", "digest": sha(b"missing"), "size": 7})
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps(doc), imageTag="v1")
    assert code(e) == "LayersNotFoundException"
    assert sha(b"missing") in message(e)
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest="{not json", imageTag="v1")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps({"schemaVersion": 1}), imageTag="v1")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1", imageDigest=sha(b"other"))
    assert code(e) == "ImageDigestDoesNotMatchException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="bad tag")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageManifestMediaType=OCI)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo + "-x", imageManifest=manifest)
    assert code(e) == "RepositoryNotFoundException"
    assert ecr.list_images(repositoryName=repo).get("imageIds", []) == []


def test_immutable_tags(ecr, repo):
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    m1, d1 = make_image(ecr, repo, "a")
    m2, _d2 = make_image(ecr, repo, "b")
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="v1")
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="v1")
    assert code(e) == "ImageTagAlreadyExistsException"
    assert message(e).startswith(f"The image tag 'v1' already exists in the '{repo}' repository")
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]["imageId"][
        "imageDigest"] == d1
    # With exclusions, matching tags stay mutable.
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                 imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}])
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="dev-1")
    ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="dev-1")
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="v1")
    assert code(e) == "ImageTagAlreadyExistsException"


def test_mutable_tag_moves_and_old_image_stays_untagged(ecr, repo):
    m1, d1 = make_image(ecr, repo, "a")
    m2, d2 = make_image(ecr, repo, "b")
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="latest")
    ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="latest")
    ids = ecr.list_images(repositoryName=repo)["imageIds"]
    assert sorted(ids, key=lambda i: i["imageDigest"]) == sorted(
        [{"imageDigest": d1}, {"imageDigest": d2, "imageTag": "latest"}], key=lambda i: i["imageDigest"])
    assert ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"] == [{"imageDigest": d1}]
    assert ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"] == [
        {"imageDigest": d2, "imageTag": "latest"}]
    det = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in det] == [d1] and "imageTags" not in det[0]


def test_list_and_describe_images_pagination(ecr, repo):
    manifests = [make_image(ecr, repo, f"s{i}") for i in range(4)]
    for i, (m, _) in enumerate(manifests):
        ecr.put_image(repositoryName=repo, imageManifest=m, imageTag=f"t{i}")
    ecr.put_image(repositoryName=repo, imageManifest=manifests[0][0], imageTag="extra")
    ids = ecr.get_paginator("list_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 2}) \
        .build_full_result()["imageIds"]
    assert len(ids) == 5 and len({(i["imageDigest"], i["imageTag"]) for i in ids}) == 5
    page = ecr.list_images(repositoryName=repo, maxResults=2)
    assert len(page["imageIds"]) == 2 and page["nextToken"]
    dets = ecr.get_paginator("describe_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 3}) \
        .build_full_result()["imageDetails"]
    assert sorted(d["imageDigest"] for d in dets) == sorted(d for _, d in manifests)
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "missing"}])
    assert code(e) == "ImageNotFoundException"
    assert message(e) == (f"The image with imageId {{imageDigest:'null', imageTag:'missing'}} does not exist "
                          f"within the repository with name '{repo}' in the registry with id "
                          f"'{ecr.describe_registry()['registryId']}'")
    d = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "t1"}])["imageDetails"]
    assert d[0]["imageTags"] == ["t1"]
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo + "-x")
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo + "-x")
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo, nextToken="%%%")
    assert code(e) == "InvalidParameterException"


def test_batch_delete_image(ecr, repo):
    m1, d1 = make_image(ecr, repo, "a")
    m2, d2 = make_image(ecr, repo, "b")
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="a1")
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="a2")
    ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="b1")
    # By tag: only that tag goes while the image has others; with its last tag the image goes.
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a1"}])
    assert r["imageIds"] == [{"imageDigest": d1, "imageTag": "a1"}] and r["failures"] == []
    assert ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": d1}])["imageDetails"][0][
        "imageTags"] == ["a2"]
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a2"}])
    assert r["imageIds"] == [{"imageDigest": d1, "imageTag": "a2"}]
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": d1}])
    assert code(e) == "ImageNotFoundException"
    # By digest: the image and all its tags.
    ecr.put_image(repositoryName=repo, imageManifest=m2, imageTag="b2")
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": d2}, {"imageTag": "gone"},
                                                              {"imageDigest": "bad"},
                                                              {"imageDigest": d1, "imageTag": "x"}])
    assert sorted(i["imageTag"] for i in r["imageIds"]) == ["b1", "b2"]
    assert [f["failureCode"] for f in r["failures"]] == ["ImageNotFound", "InvalidImageDigest", "ImageNotFound"]
    assert ecr.list_images(repositoryName=repo).get("imageIds", []) == []
    with pytest.raises(ClientError) as e:
        ecr.batch_delete_image(repositoryName=repo + "-x", imageIds=[{"imageTag": "a"}])
    assert code(e) == "RepositoryNotFoundException"
    # Layers stay in the repository after their images are deleted (garbage collection is later).
    ecr.put_image(repositoryName=repo, imageManifest=m1, imageTag="again")


def test_image_index(ecr, repo):
    m1, d1 = make_image(ecr, repo, "amd", OCI)
    m2, d2 = make_image(ecr, repo, "arm", OCI)
    ecr.put_image(repositoryName=repo, imageManifest=m1)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI, "digest": d1, "size": len(m1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI, "digest": d2, "size": len(m2), "platform": {"architecture": "arm64", "os": "linux"}}]})
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")
    assert code(e) == "ReferencedImagesNotFoundException"
    ecr.put_image(repositoryName=repo, imageManifest=m2)
    r = ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")["image"]
    assert r["imageManifestMediaType"] == OCI_INDEX
    # A child of an index cannot be deleted while the index is there.
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": d1}])
    assert r["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": d1}])
    assert r["failures"] == []
