"""What the ECR layer-upload calls need from the blob store, and the adapter over the registry's.

``BlobPort`` is the narrow interface InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload
(and PutImage's blob check) use. The server connects ``BlobStorePort`` over the same
``dockyard.registry.blobs.BlobStore`` the /v2/ routes use, so a layer uploaded through either API
is the same blob. The ECR calls are sync functions inside the store's write transaction, so the
adapter does small sync file I/O on the BlobStore's upload files (parts are at most 20 MiB) and
keeps its on-disk layout and upload-id rules: ECR's dashed uuid maps to the store's hex id.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Protocol

from sqlalchemy import text

from dockyard.registry.blobs import BlobStore, UploadUnknown
from dockyard.registry.blobs import DigestMismatch as BlobDigestMismatch
from dockyard.state.store import Tx


class DigestMismatch(Exception):
    """The bytes received do not hash to the digest the client claimed."""

    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


class UnknownUpload(Exception):
    """The port holds no upload session of that id (expired, or never started here)."""


class BlobPort(Protocol):
    def start_upload(self, upload_id: str) -> None:
        """Open an empty upload session."""

    def append(self, upload_id: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` (dropping anything past it: a retried part is harmless);
        return the session's new size."""

    def commit(self, upload_id: str, digest: str) -> int:
        """Verify the session's bytes hash to ``digest``, store them under it, end the session;
        return the blob's size. DigestMismatch when they do not (the session is kept)."""

    def exists(self, digest: str) -> bool:
        """Whether a committed blob with this digest is stored."""

    def touch(self, digest: str) -> int | None:
        """Mark the blob as just used (see BlobStore.gc) and return its size; None if not stored."""


_port: BlobPort | None = None
_lock = threading.Lock()


def set_blob_port(port: BlobPort | None) -> None:
    """Connect the blob store the ECR API writes through (None: back to the default)."""
    global _port
    _port = port


def blob_port(tx: Tx) -> BlobPort:
    """The connected BlobPort; without a server (in-process tests) one over a BlobStore next to
    the SQLite database."""
    global _port
    if _port is None:
        with _lock:
            if _port is None:
                _port = BlobStorePort(BlobStore(_default_root(tx)))
    return _port


def _default_root(tx: Tx) -> Path:
    # The server always sets the port; this is for operations run in-process without one.
    env = os.environ.get("DOCKYARD_ECR_BLOB_DIR")
    if env:
        return Path(env)
    if getattr(tx, "_dialect").name == "sqlite":  # noqa: B009
        for row in tx.all(text("PRAGMA database_list")):
            if row[1] == "main" and row[2]:
                return Path(row[2]).parent / "registry"
    return Path.home() / ".dockyard" / "registry"


def store_upload_id(upload_id: str) -> str:
    """The BlobStore's id (32 hex) for an ECR upload id (a dashed uuid; a hex one is accepted too)."""
    try:
        return uuid.UUID(upload_id).hex
    except (ValueError, AttributeError, TypeError):
        raise UnknownUpload(upload_id) from None


class BlobStorePort:
    """The ECR API's sync view of a BlobStore (the /v2/ routes use the store's async API)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def start_upload(self, upload_id: str) -> None:
        self.store.open_upload(store_upload_id(upload_id))

    def append(self, upload_id: str, offset: int, data: bytes) -> int:
        try:
            return self.store.write_at(store_upload_id(upload_id), offset, data)
        except UploadUnknown:
            raise UnknownUpload(upload_id) from None

    def commit(self, upload_id: str, digest: str) -> int:
        try:
            return self.store.commit_now(store_upload_id(upload_id), digest)
        except UploadUnknown:
            raise UnknownUpload(upload_id) from None
        except BlobDigestMismatch as e:
            raise DigestMismatch(e.actual) from None

    def exists(self, digest: str) -> bool:
        return self.store.exists(digest)

    def touch(self, digest: str) -> int | None:
        return self.store.touch(digest)
