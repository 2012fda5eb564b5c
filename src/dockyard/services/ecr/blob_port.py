"""What the ECR layer-upload calls need from the blob store, and a stand-in until it is connected.

``BlobPort`` is the narrow interface InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload
use. The real content-addressed store (``dockyard.registry.blobs.BlobStore``) is connected with
``set_blob_port(...)`` at server start. Until then ``blob_port(tx)`` hands out ``DiskBlobPort``,
a TEMPORARY on-disk implementation under the server's data directory, so the API works end to end.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Protocol

from sqlalchemy import text

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


_port: BlobPort | None = None
_lock = threading.Lock()


def set_blob_port(port: BlobPort | None) -> None:
    """Connect the blob store the ECR API writes through (None: back to the temporary default)."""
    global _port
    _port = port


def blob_port(tx: Tx) -> BlobPort:
    """The connected BlobPort; the temporary DiskBlobPort when none has been set."""
    global _port
    if _port is None:
        with _lock:
            if _port is None:
                _port = DiskBlobPort(_default_root(tx))
    return _port


def _default_root(tx: Tx) -> Path:
    # TEMPORARY: the server does not tell the services its data directory; with SQLite it is the
    # directory of the database file. Goes away when the real BlobStore is connected.
    env = os.environ.get("DOCKYARD_ECR_BLOB_DIR")
    if env:
        return Path(env)
    if getattr(tx, "_dialect").name == "sqlite":  # noqa: B009 - temporary
        for row in tx.all(text("PRAGMA database_list")):
            if row[1] == "main" and row[2]:
                return Path(row[2]).parent / "ecr-blobs-tmp"
    return Path.home() / ".dockyard" / "ecr-blobs-tmp"


class DiskBlobPort:
    """TEMPORARY stand-in for the real BlobStore: uploads/<id> files, blobs/sha256/<hex> files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "uploads").mkdir(parents=True, exist_ok=True)
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def _upload(self, upload_id: str) -> Path:
        if "/" in upload_id or upload_id in ("", ".", ".."):
            raise UnknownUpload(upload_id)
        return self.root / "uploads" / upload_id

    def _blob(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.root / "blobs" / algo / hexd

    def start_upload(self, upload_id: str) -> None:
        self._upload(upload_id).write_bytes(b"")

    def append(self, upload_id: str, offset: int, data: bytes) -> int:
        path = self._upload(upload_id)
        if not path.exists():
            raise UnknownUpload(upload_id)
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.seek(offset)
            f.write(data)
            return f.tell()

    def commit(self, upload_id: str, digest: str) -> int:
        path = self._upload(upload_id)
        if not path.exists():
            raise UnknownUpload(upload_id)
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise DigestMismatch(actual)
        target = self._blob(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return size

    def exists(self, digest: str) -> bool:
        return digest.startswith("sha256:") and self._blob(digest).exists()
