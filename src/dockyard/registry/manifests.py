"""Image manifests: what a pushed manifest is and what it references.

Docker schema 2 manifests and manifest lists, OCI image manifests and image
indexes (multi-arch), each identified by the sha256 of its exact bytes. The
registry keeps the bytes as pushed and answers them byte for byte; this module
only reads them: the media type, the config, the layers, the child manifests
of an index and the ``subject`` of an artifact. Schema 1 is refused (Docker
and ECR have deprecated it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # ECR's limit on a manifest

DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


class ManifestError(ValueError):
    """The manifest cannot be accepted; ``code`` is the OCI error code."""

    def __init__(self, message: str, code: str = "MANIFEST_INVALID") -> None:
        super().__init__(message)
        self.code = code


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def valid_digest(digest: str) -> bool:
    """A well-formed digest this registry can verify (sha256 only)."""
    return bool(SHA256_RE.match(digest))


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str | None
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    raw: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()   # an index's children
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def size(self) -> int:
        """ECR's imageSizeInBytes: the layers' compressed sizes (an index: its own bytes)."""
        if self.is_index:
            return len(self.raw)
        return sum(d.size for d in self.layers)

    def blob_digests(self) -> list[str]:
        """Blobs this manifest needs in the repository (config and layers), in order."""
        out = [self.config.digest] if self.config is not None else []
        out += [d.digest for d in self.layers]
        return out

    def references(self) -> list[str]:
        """Everything it references: blobs, child manifests and its subject."""
        out = self.blob_digests() + [d.digest for d in self.manifests]
        if self.subject is not None:
            out.append(self.subject.digest)
        return out


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise ManifestError(f"{what} is not a descriptor object")
    digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ManifestError(f"{what} has an invalid digest", "DIGEST_INVALID")
    if not valid_digest(digest):
        raise ManifestError(f"{what}: unsupported digest algorithm", "DIGEST_INVALID")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{what} has an invalid size")
    if media_type is not None and not isinstance(media_type, str):
        raise ManifestError(f"{what} has an invalid mediaType")
    platform = d.get("platform")
    annotations = d.get("annotations")
    return Descriptor(media_type, digest, size, platform if isinstance(platform, dict) else None,
                      annotations if isinstance(annotations, dict) else None)


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    header = (content_type or "").split(";")[0].strip() or None
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType is not a string")
    if declared and header and header in MANIFEST_TYPES and declared != header:
        raise ManifestError(f"the manifest's mediaType {declared} does not match Content-Type {header}")
    media_type = declared or (header if header in MANIFEST_TYPES else None)
    if media_type is None:  # OCI allows mediaType to be left out: tell by the shape
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        if doc.get("schemaVersion") == 1:
            raise ManifestError("Docker image manifest schema 1 is not supported", "MANIFEST_INVALID")
        raise ManifestError(f"unsupported manifest media type {media_type}")
    return media_type


def parse(raw: bytes, content_type: str | None = None) -> Manifest:
    """Read a pushed manifest; ManifestError when it is not one this registry accepts."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError("the manifest is larger than 4 MiB", "SIZE_INVALID")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ManifestError("the manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError("the manifest is not a JSON object")
    if doc.get("schemaVersion") != 2:
        if doc.get("schemaVersion") == 1:
            raise ManifestError("Docker image manifest schema 1 is not supported")
        raise ManifestError("schemaVersion must be 2")
    media_type = _media_type(doc, content_type)
    digest = digest_of(raw)
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    given = doc.get("annotations")
    annotations: dict[str, str] = given if isinstance(given, dict) else {}
    if media_type in INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestError("an image index needs a manifests list")
        return Manifest(digest, media_type, raw,
                        manifests=tuple(_descriptor(m, f"manifests[{i}]") for i, m in enumerate(children)),
                        subject=subject, artifact_type=artifact_type, annotations=annotations)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("an image manifest needs a layers list")
    if "config" not in doc:
        raise ManifestError("an image manifest needs a config")
    config = _descriptor(doc["config"], "config")
    return Manifest(digest, media_type, raw, config=config,
                    layers=tuple(_descriptor(m, f"layers[{i}]") for i, m in enumerate(layers)),
                    subject=subject, artifact_type=artifact_type or config.media_type, annotations=annotations)
