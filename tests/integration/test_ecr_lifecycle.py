"""ECR lifecycle policies against a real server: previews (Start/GetLifecyclePolicyPreview) and
the controller expiring images (controllers/ecr_lifecycle.py)."""

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess
from tests.integration.test_ecr_api import OCI, OCI_INDEX, code, make_image, push_blob, sha


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess(env={"DOCKYARD_ECR_LIFECYCLE_SECONDS": "1"}).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def ecr(srv):
    return srv.client("ecr")


@pytest.fixture
def repo(ecr):
    name = "lc/" + uuid.uuid4().hex[:10]
    ecr.create_repository(repositoryName=name)
    return name


def rule(prio, status, n, **sel):
    return {"rulePriority": prio, "selection": {"tagStatus": status, "countType": "imageCountMoreThan",
                                                "countNumber": n, **sel}, "action": {"type": "expire"}}


def policy(*rules):
    return json.dumps({"rules": list(rules)})


def push(ecr, repo, seed, tag=None, media_type=OCI):
    manifest, digest = make_image(ecr, repo, seed, media_type)
    kw = {"imageTag": tag} if tag else {}
    ecr.put_image(repositoryName=repo, imageManifest=manifest, **kw)
    time.sleep(0.01)  # distinct push times
    return digest


def digests(ecr, repo):
    return {d["imageDigest"] for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}


def wait_digests(ecr, repo, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = digests(ecr, repo)
        if got == want:
            return
        time.sleep(0.1)
    assert digests(ecr, repo) == want


def stays(ecr, repo, want, seconds=1.5):
    """``want`` is still the repository's content after the controller had time to act."""
    time.sleep(seconds)
    assert digests(ecr, repo) == want


def seed_repo(ecr, repo):
    """prod-1..3, dev-1..3 and three untagged images, oldest first."""
    d = {}
    for i in range(1, 4):
        d[f"prod-{i}"] = push(ecr, repo, f"p{i}", f"prod-{i}")
        d[f"dev-{i}"] = push(ecr, repo, f"d{i}", f"dev-{i}")
        d[f"u{i}"] = push(ecr, repo, f"u{i}")
    return d


POLICY = policy(rule(1, "tagged", 2, tagPrefixList=["prod"]),
                rule(2, "untagged", 1),
                rule(3, "any", 4))


def test_preview_then_apply(ecr, repo):
    d = seed_repo(ecr, repo)
    everything = set(d.values())
    # Preview a text that is not saved: nothing is deleted.
    r = ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=POLICY)
    assert r["status"] == "COMPLETE" and r["lifecyclePolicyText"] == POLICY
    p = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert p["status"] == "COMPLETE" and p["lifecyclePolicyText"] == POLICY
    got = {(x["imageDigest"], x["appliedRulePriority"]) for x in p["previewResults"]}
    # rule 1: prod-1 (keeps prod-3, prod-2); rule 2: u1, u2 (keeps u3); rule 3 counts all nine
    # newest first u3 dev-3 prod-3 u2 | ... and may expire only dev-1 and dev-2 (dev-3 is in the
    # newest four).
    assert got == {(d["prod-1"], 1), (d["u1"], 2), (d["u2"], 2), (d["dev-1"], 3), (d["dev-2"], 3)}
    assert p["summary"]["expiringImageTotalCount"] == 5
    for x in p["previewResults"]:
        assert x["action"] == {"type": "EXPIRE"}
        assert "imagePushedAt" in x
    tags = {x["imageDigest"]: x.get("imageTags") for x in p["previewResults"]}
    assert tags[d["prod-1"]] == ["prod-1"] and tags[d["u1"]] is None
    # The filter and the pages.
    tagged = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert {x["imageDigest"] for x in tagged["previewResults"]} == {d["prod-1"], d["dev-1"], d["dev-2"]}
    untagged = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert {x["imageDigest"] for x in untagged["previewResults"]} == {d["u1"], d["u2"]}
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.get_lifecycle_policy_preview(repositoryName=repo, maxResults=2, **kw)
        assert len(page["previewResults"]) <= 2
        seen += [x["imageDigest"] for x in page["previewResults"]]
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == sorted(x for x, _ in got)
    one = ecr.get_lifecycle_policy_preview(repositoryName=repo, imageIds=[{"imageTag": "dev-1"}])
    assert [x["imageDigest"] for x in one["previewResults"]] == [d["dev-1"]]
    stays(ecr, repo, everything, seconds=0.5)

    # Put the policy: the controller expires exactly what the preview said.
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=POLICY)
    expired = {x for x, _ in got}
    wait_digests(ecr, repo, everything - expired)
    left = ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"]
    assert sorted(i["imageTag"] for i in left) == ["dev-3", "prod-2", "prod-3"]

    # A preview of the saved policy now finds nothing more.
    ecr.start_lifecycle_policy_preview(repositoryName=repo)
    p = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert p["previewResults"] == [] and p["summary"]["expiringImageTotalCount"] == 0
    assert p["lifecyclePolicyText"] == POLICY


def test_pushes_are_expired_as_they_come(ecr, repo):
    ecr.put_lifecycle_policy(repositoryName=repo,
                             lifecyclePolicyText=policy(rule(1, "tagged", 2, tagPatternList=["build-*"])))
    builds = [push(ecr, repo, f"b{i}", f"build-{i}") for i in range(4)]
    release = push(ecr, repo, "rel", "release")
    wait_digests(ecr, repo, {builds[2], builds[3], release})
    newer = push(ecr, repo, "b9", "build-9")
    wait_digests(ecr, repo, {builds[3], newer, release})
    # Without the policy, nothing more goes.
    ecr.delete_lifecycle_policy(repositoryName=repo)
    extra = push(ecr, repo, "b10", "build-10")
    stays(ecr, repo, {builds[3], newer, release, extra})


def test_retag_makes_an_image_untagged_and_expirable(ecr, repo):
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy(rule(1, "untagged", 1)))
    a = push(ecr, repo, "a", "latest")
    b = push(ecr, repo, "b", "latest")  # a is untagged now: the only untagged one, kept
    stays(ecr, repo, {a, b}, seconds=0.5)
    c = push(ecr, repo, "c", "latest")  # b untagged too: the older of a and b goes
    wait_digests(ecr, repo, {b, c})


def test_index_children_stay_while_the_index_stays(ecr, repo):
    m1, d1 = make_image(ecr, repo, "amd", OCI)
    m2, d2 = make_image(ecr, repo, "arm", OCI)
    ecr.put_image(repositoryName=repo, imageManifest=m1)
    ecr.put_image(repositoryName=repo, imageManifest=m2)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI, "digest": d1, "size": len(m1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI, "digest": d2, "size": len(m2), "platform": {"architecture": "arm64", "os": "linux"}}]})
    ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")
    idx = next(i["imageDigest"] for i in ecr.list_images(repositoryName=repo)["imageIds"]
               if i.get("imageTag") == "multi")
    stray = push(ecr, repo, "stray")
    # Untagged, keep none... countNumber is at least 1: keep the newest untagged one (stray);
    # the children are older, but the index lists them.
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy(rule(1, "untagged", 1)))
    stays(ecr, repo, {d1, d2, idx, stray})
    # An `any` rule keeping one image: the index (older than stray) goes, and its children with it.
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy(rule(1, "any", 1)))
    wait_digests(ecr, repo, {stray})


def test_preview_errors(ecr, repo):
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert code(e) == "LifecyclePolicyPreviewNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName=repo)
    assert code(e) == "LifecyclePolicyNotFoundException"
    bad = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType":
                                                                  "imageCountMoreThan", "countNumber": 1},
                                 "action": {"type": "expire"}}]})
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=bad)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName=repo + "-x", lifecyclePolicyText=POLICY)
    assert code(e) == "RepositoryNotFoundException"
    # A repository deleted and created again has no preview.
    ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=POLICY)
    ecr.get_lifecycle_policy_preview(repositoryName=repo)
    ecr.delete_repository(repositoryName=repo, force=True)
    time.sleep(0.01)
    ecr.create_repository(repositoryName=repo)
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert code(e) == "LifecyclePolicyPreviewNotFoundException"


def test_image_with_a_referrer_stays_while_the_referrer_stays(ecr, repo):
    x_manifest, x = make_image(ecr, repo, "x", OCI)
    ecr.put_image(repositoryName=repo, imageManifest=x_manifest, imageTag="v1")
    time.sleep(0.01)
    cfg = b"{}"
    cdig, ldig = push_blob(ecr, repo, cfg), push_blob(ecr, repo, b"signature")
    sig_manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cdig, "size": len(cfg)},
        "layers": [{"mediaType": "application/octet-stream", "digest": ldig, "size": 9}],
        "subject": {"mediaType": OCI, "digest": x, "size": len(x_manifest)}})
    ecr.put_image(repositoryName=repo, imageManifest=sig_manifest)
    sig = sha(sig_manifest.encode())
    time.sleep(0.01)
    y = push(ecr, repo, "y", "v2")
    # Rule 1 would expire x (v1), but its signature references it and stays.
    ecr.put_lifecycle_policy(repositoryName=repo,
                             lifecyclePolicyText=policy(rule(1, "tagged", 1, tagPrefixList=["v"])))
    stays(ecr, repo, {x, sig, y})
    # With rule 2 expiring the signature too, both go, the signature first.
    text = policy(rule(1, "tagged", 1, tagPrefixList=["v"]), rule(2, "any", 1))
    ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text)
    p = ecr.get_lifecycle_policy_preview(repositoryName=repo)["previewResults"]
    assert [(r["imageDigest"], r["appliedRulePriority"]) for r in p] == [(sig, 2), (x, 1)]
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    wait_digests(ecr, repo, {y})
