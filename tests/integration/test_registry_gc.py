"""Registry garbage collection against a real server: unreferenced blobs go, referenced ones stay."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

from tests.helpers.server import ServerProcess
from tests.helpers.wait import wait_until
from tests.integration.test_registry_http import Registry, sha


def _blob_file(root: Path, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return root / "registry" / "blobs" / "sha256" / hexd[:2] / hexd


def test_gc_deletes_blobs_no_manifest_needs_and_keeps_the_rest() -> None:
    srv = ServerProcess(env={"DOCKYARD_REGISTRY_GC_SECONDS": "0.5",
                             "DOCKYARD_REGISTRY_GC_GRACE_SECONDS": "1.5"}).start()
    try:
        ecr = srv.client("ecr")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        reg = Registry(srv.endpoint, base64.b64decode(token).decode().partition(":")[2])
        repo = "gc-" + uuid.uuid4().hex[:6]
        ecr.create_repository(repositoryName=repo)
        kept_manifest, kept_digest = reg.push_image(repo, "kept")
        dropped_manifest, dropped_digest = reg.push_image(repo, "dropped")
        orphan = reg.push_blob(repo, b"a layer no manifest ever references " + uuid.uuid4().bytes)
        tiny = reg.push_blob(repo, b"x")  # a one-byte blob, unreferenced too
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "dropped"}])

        kept_blobs = [d["digest"] for d in [json.loads(kept_manifest)["config"], *json.loads(kept_manifest)["layers"]]]
        dropped_blobs = [d["digest"] for d in [json.loads(dropped_manifest)["config"],
                                               *json.loads(dropped_manifest)["layers"]]]
        for d in kept_blobs + dropped_blobs + [orphan, tiny]:
            assert _blob_file(srv.data_dir, d).exists()
        # Young blobs survive the first collections (grace 1.5 s)...
        time.sleep(0.8)
        assert _blob_file(srv.data_dir, orphan).exists()
        # ...then what nothing references goes, from disk and from the API.
        wait_until(lambda: not any(_blob_file(srv.data_dir, d).exists() for d in dropped_blobs + [orphan, tiny]),
                   10, "unreferenced blobs deleted")
        for d in kept_blobs:
            assert _blob_file(srv.data_dir, d).exists()
            assert reg("HEAD", f"/v2/{repo}/blobs/{d}").status_code == 200
        assert reg("HEAD", f"/v2/{repo}/blobs/{orphan}").status_code == 404
        got = reg("GET", f"/v2/{repo}/manifests/kept", headers={"Accept": "application/vnd.docker.distribution."
                                                                            "manifest.v2+json"})
        assert got.status_code == 200 and sha(got.content) == kept_digest
        avail = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[orphan, kept_blobs[1]])
        assert [la["layerDigest"] for la in avail["layers"]] == [kept_blobs[1]]
        assert dropped_digest != kept_digest
    finally:
        srv.cleanup()
