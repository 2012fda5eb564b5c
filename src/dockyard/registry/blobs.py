"""The registry's blob store: content-addressed files on disk, shared by every repository.

Layout under ``root``::

    blobs/sha256/<first 2 hex>/<64 hex>   a committed blob, named by the sha256 of its bytes
    uploads/<upload id>                   the bytes received so far for one upload session

The store is global: a blob pushed to two repositories is stored once, and which repository may
see it is the database's business (``ecr_layers``), not this module's. Only sha256 digests.

Writes. An upload's bytes go straight to its file as they arrive and are hashed as they go, so a
1 GB layer never sits in memory: chunks are gathered into batches of ``BATCH_BYTES`` and each batch
is written (``os.writev``, no join copy) in one worker thread while another hashes it (both
release the GIL), so a batch costs max(write, hash) rather than their sum, and meanwhile the
event loop gathers the next batch. One batch is in flight per upload, so memory stays under two
batches per upload whatever the blob's size. A thread hop per 4 MiB costs nothing next to the
write; a hop per 64 KiB network chunk would. Appends of at most ``SYNC_BYTES`` (a config blob, a
tiny PATCH) are written and hashed inline: a thread hop costs more than the write. The threads
are the store's own pool, so blob I/O does not queue behind the default executor's other work.

The running sha256 of an upload lives in memory (a hashlib object cannot be saved). The upload's
file is the truth: the hasher has consumed the first ``hashed`` bytes of the file, and whenever it
is behind (a process restart, a write that failed half way) it catches up by reading the missing
bytes back from disk, streaming, once. A resumed upload after a restart therefore costs one read
of what was already received.

Commit verifies the digest, fsyncs the file, renames it into place and fsyncs the directory
before returning: a committed blob survives a crash. A blob that already exists is not written
again (the upload is dropped).

Reads stream the file in ``READ_CHUNK`` pieces from an fd opened up front, so the blob cannot
vanish mid-stream (a delete only unlinks the name), reading the next piece in a worker thread
while the caller sends the current one.

Garbage collection is mark (the caller, from the database) and sweep (here), safe while pushes
run; see :meth:`BlobStore.gc` for the contract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import stat as stat_mod
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SHA256_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
UPLOAD_ID_RE = re.compile(r"^[a-f0-9]{32}$")

BATCH_BYTES = 4 * 1024 * 1024     # bytes gathered before one write + hash in a worker thread
SYNC_BYTES = 64 * 1024            # appends and reads up to this size are done inline
READ_CHUNK = 1024 * 1024          # the pieces open_range yields
IOV_MAX = 1024                    # os.writev's limit on buffers per call (Linux)
UPLOAD_EXPIRY_SECONDS = 24 * 3600.0


class BlobError(Exception):
    """Base of the blob store's errors."""


class BlobUnknown(BlobError, KeyError):
    """No blob with this digest (OCI ``BLOB_UNKNOWN``)."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest

    def __str__(self) -> str:
        return f"blob unknown: {self.digest}"


class DigestInvalid(BlobError, ValueError):
    """The digest is malformed or not sha256 (OCI ``DIGEST_INVALID``)."""


class DigestMismatch(DigestInvalid):
    """The uploaded bytes do not hash to the digest given at commit (OCI ``DIGEST_INVALID``)."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch: expected {expected}, uploaded content is {actual}")
        self.expected = expected
        self.actual = actual


class UploadUnknown(BlobError, KeyError):
    """No upload session with this id (OCI ``BLOB_UPLOAD_UNKNOWN``)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(upload_id)
        self.upload_id = upload_id

    def __str__(self) -> str:
        return f"blob upload unknown: {self.upload_id}"


class RangeError(BlobError):
    """The offset or range does not fit: ``size`` is the upload's (or blob's) current size.

    An upload answers 416 with ``Range: 0-<size-1>``; a read answers 416 with
    ``Content-Range: bytes */<size>``.
    """

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(message or f"range not satisfiable (current size {size})")
        self.size = size


Chunks = AsyncIterable[bytes] | bytes | bytearray | memoryview


@dataclass(eq=False)
class _Session:
    """An upload's in-memory state: a hasher that has consumed the file's first ``hashed`` bytes."""

    hasher: Any = field(default_factory=hashlib.sha256)
    hashed: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _hex(digest: str) -> str:
    m = SHA256_RE.match(digest) if isinstance(digest, str) else None
    if m is None:
        raise DigestInvalid(f"invalid or unsupported digest {digest!r} (only sha256:<64 hex>)")
    return m.group(1)


def _write_all(fd: int, chunks: list[Any]) -> None:
    """Write every chunk at the fd's position (O_APPEND), in as few syscalls as it takes."""
    for i in range(0, len(chunks), IOV_MAX):
        group = chunks[i:i + IOV_MAX]
        n = os.writev(fd, group)
        total = sum(len(c) for c in group)
        if n == total:
            continue
        # A short write (a signal, a full disk): finish the group one buffer at a time.
        for c in group:
            view = memoryview(c).cast("B")
            if n >= len(view):
                n -= len(view)
                continue
            view = view[n:]
            n = 0
            while view:
                view = view[os.write(fd, view):]


def _write_and_hash(fd: int, chunks: list[Any], sess: _Session) -> None:
    # Write first: if it fails the hasher has not consumed bytes the file may not hold, and the
    # next append or the commit catches up from whatever did reach the file.
    _write_all(fd, chunks)
    _hash(chunks, sess)


def _hash(chunks: list[Any], sess: _Session) -> None:
    for c in chunks:
        sess.hasher.update(c)
        sess.hashed += len(c)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Content-addressed blobs and resumable upload sessions under ``root`` (see the module doc)."""

    def __init__(self, root: Path, *, io_threads: int = 8) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.upload_dir = self.root / "uploads"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, _Session] = {}
        # Serialises "is it there / how old is it" with placing, touching and sweeping a blob, so
        # a blob committed or touched while gc runs cannot be swept on a stale view.
        self._place_lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(io_threads, thread_name_prefix="dockyard-blobs")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- paths ------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (or would); e.g. for an ASGI ``pathsend``."""
        h = _hex(digest)
        return self.blob_dir / h[:2] / h

    def _upload_path(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not UPLOAD_ID_RE.match(upload_id):
            raise UploadUnknown(str(upload_id))
        return self.upload_dir / upload_id

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the store's threads; a cancelled caller still waits for it to finish
        (the thread holds the upload's fd and hasher), then sees the cancellation."""
        fut = asyncio.wrap_future(self._executor.submit(fn, *args))
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(fut)
                break
            except asyncio.CancelledError:
                if fut.done():
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def _write_batch(self, fd: int, chunks: list[Any], sess: _Session) -> None:
        """Write a batch and hash it at once, in two threads: a batch costs max(write, hash),
        not their sum. One batch per upload at a time, so the hasher still sees bytes in order.
        If the write fails the hasher is ahead of the file; the next sync sees that and rehashes."""
        waiters = [asyncio.wrap_future(self._executor.submit(_write_all, fd, chunks)),
                   asyncio.wrap_future(self._executor.submit(_hash, chunks, sess))]
        both = asyncio.gather(*waiters, return_exceptions=True)
        cancelled = False
        while True:
            try:
                results = await asyncio.shield(both)
                break
            except asyncio.CancelledError:
                if both.done():
                    raise
                cancelled = True
        chunks.clear()  # let go of the batch now, not when the executor drops its work items
        for r in results:
            if isinstance(r, BaseException):
                raise r
        if cancelled:
            raise asyncio.CancelledError

    # -- uploads ----------------------------------------------------------------------------

    def new_upload(self) -> str:
        """Start an upload session; its id is a uuid4 in hex."""
        upload_id = uuid.uuid4().hex
        fd = os.open(self.upload_dir / upload_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        self._sessions[upload_id] = _Session()
        return upload_id

    # Synchronous variants for the ECR API's layer-upload calls, which run inside the store's
    # write transaction with parts of a few MB; the /v2/ routes stream with the async API.

    def open_upload(self, upload_id: str) -> None:
        """Start an upload session under an id the caller chose (32 hex)."""
        fd = os.open(self._upload_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        self._sessions[upload_id] = _Session()

    def write_at(self, upload_id: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``, dropping anything past it (a retried part is harmless);
        returns the new size. UploadUnknown when there is no such session, or while an async
        append is streaming into it."""
        sess = self._sessions.get(upload_id)
        if sess is not None and sess.lock.locked():
            raise UploadUnknown(upload_id)
        try:
            fd = os.open(self._upload_path(upload_id), os.O_RDWR)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None
        try:
            if os.fstat(fd).st_size != offset:
                os.ftruncate(fd, offset)
            view = memoryview(data)
            pos = offset
            while view:
                n = os.pwrite(fd, view, pos)
                view, pos = view[n:], pos + n
        finally:
            os.close(fd)
        # Keep the running hash when the part extends what it has seen; otherwise it is rebuilt
        # from the file at commit (a retried, overlapping part).
        if sess is not None and sess.hashed == offset:
            sess.hasher.update(data)
            sess.hashed += len(data)
        elif sess is not None:
            self._sessions.pop(upload_id, None)
        return pos

    def commit_now(self, upload_id: str, digest: str) -> int:
        """``commit`` without new chunks, synchronously; on DigestMismatch the session is kept
        (ECR lets the client retry CompleteLayerUpload)."""
        path = self._upload_path(upload_id)
        sess = self._session(upload_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None
        try:
            size = os.fstat(fd).st_size
            self._catch_up(fd, sess, size)
            actual = "sha256:" + sess.hasher.hexdigest()
            if actual != digest:
                raise DigestMismatch(digest, actual)  # also what a malformed digest gets
            self._place(fd, path, self.path(digest), size)
        finally:
            os.close(fd)
        self._sessions.pop(upload_id, None)
        return size

    def size(self, upload_id: str) -> int:
        """Bytes received so far; UploadUnknown when there is no such session."""
        try:
            return os.stat(self._upload_path(upload_id)).st_size
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None

    def _session(self, upload_id: str) -> _Session:
        sess = self._sessions.get(upload_id)
        if sess is None:  # after a restart: the file is there, the hasher is not
            sess = self._sessions[upload_id] = _Session()
        return sess

    def _open_upload(self, upload_id: str) -> int:
        try:
            return os.open(self._upload_path(upload_id), os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._sessions.pop(upload_id, None)
            raise UploadUnknown(upload_id) from None

    def _catch_up(self, fd: int, sess: _Session, size: int) -> None:
        """Bring the hasher to the file's end, reading back what it has not seen (once)."""
        if sess.hashed > size:  # the file is shorter than what was hashed: start over
            sess.hasher, sess.hashed = hashlib.sha256(), 0
        while sess.hashed < size:
            data = os.pread(fd, min(READ_CHUNK, size - sess.hashed), sess.hashed)
            if not data:
                break
            sess.hasher.update(data)
            sess.hashed += len(data)

    async def _sync_hasher(self, fd: int, sess: _Session) -> int:
        size = os.fstat(fd).st_size
        if sess.hashed != size:
            await self._run(self._catch_up, fd, sess, size)
        return size

    async def _append_locked(self, fd: int, sess: _Session, chunks: Chunks, offset: int | None) -> int:
        size = await self._sync_hasher(fd, sess)
        if offset is not None and offset != size:
            raise RangeError(size, f"upload offset {offset} does not match the bytes received ({size})")
        if isinstance(chunks, bytes | bytearray | memoryview):
            if len(chunks) == 0:
                return size
            if len(chunks) <= SYNC_BYTES:
                _write_and_hash(fd, [chunks], sess)
            else:
                await self._write_batch(fd, [chunks], sess)
            return sess.hashed
        batch: list[Any] = []
        batched = 0
        in_flight: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                batch.append(chunk)
                batched += len(chunk)
                if batched >= BATCH_BYTES:
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.ensure_future(self._write_batch(fd, batch, sess))
                    batch, batched = [], 0
        finally:
            # Whatever arrived is a valid prefix of the client's stream: keep it even when the
            # stream broke off, so the client can resume from the size it is told.
            if in_flight is not None:
                await in_flight
            if batch:
                if batched <= SYNC_BYTES:
                    _write_and_hash(fd, batch, sess)
                else:
                    await self._write_batch(fd, batch, sess)
        return sess.hashed

    async def append(self, upload_id: str, chunks: Chunks, offset: int | None = None) -> int:
        """Append to an upload, streaming; return the upload's new size.

        ``chunks`` is bytes or an async iterable of bytes (not mutated after being yielded).
        ``offset``, when given, must equal the bytes received so far, else RangeError (OCI's 416
        for a PATCH whose Content-Range does not start where the upload ends). Appends to one
        upload are serialised. When the stream breaks off, what arrived is kept.
        """
        path = self._upload_path(upload_id)
        sess = self._session(upload_id)
        async with sess.lock:
            fd = self._open_upload(upload_id)
            try:
                return await self._append_locked(fd, sess, chunks, offset)
            finally:
                os.close(fd)
                if not path.exists():  # cancelled (or swept) while we wrote
                    self._sessions.pop(upload_id, None)

    async def commit(self, upload_id: str, digest: str, chunks: Chunks | None = None) -> int:
        """Finish an upload as the blob ``digest``; return the blob's size.

        Appends ``chunks`` first when given. If the bytes do not hash to ``digest`` the upload is
        dropped and DigestMismatch raised (nothing is stored; the distribution registry does the
        same). The blob is fsync'd and renamed into place, and its directory fsync'd, before this
        returns. If the blob already exists the upload is dropped and the existing blob kept (its
        mtime refreshed, see gc). DigestInvalid (malformed digest) leaves the upload as it was.
        """
        target = self.path(digest)  # DigestInvalid before anything happens
        path = self._upload_path(upload_id)
        sess = self._session(upload_id)
        async with sess.lock:
            fd = self._open_upload(upload_id)
            try:
                if chunks is not None:
                    await self._append_locked(fd, sess, chunks, None)
                size = await self._sync_hasher(fd, sess)
                actual = "sha256:" + sess.hasher.hexdigest()
                if actual != digest:
                    self._drop_upload(upload_id)
                    raise DigestMismatch(digest, actual)
                await self._run(self._place, fd, path, target, size)
            finally:
                os.close(fd)
            self._sessions.pop(upload_id, None)
            return size

    def _place(self, fd: int, upload: Path, target: Path, size: int) -> None:
        os.fsync(fd)
        shard = target.parent
        created = False
        if not shard.is_dir():
            shard.mkdir(exist_ok=True)
            created = True
        with self._place_lock:
            try:
                st = os.stat(target)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_size == size:
                os.utime(target)  # young again: a sweep that marked before this must keep it
                try:
                    os.unlink(upload)
                except FileNotFoundError:
                    pass
                return
            os.utime(fd)  # mtime = commit time, not the (maybe old) time of the last write
            try:
                os.rename(upload, target)
            except FileNotFoundError:
                raise UploadUnknown(upload.name) from None
        if created:
            _fsync_dir(shard.parent)
        _fsync_dir(shard)

    def _drop_upload(self, upload_id: str) -> None:
        self._sessions.pop(upload_id, None)
        try:
            os.unlink(self._upload_path(upload_id))
        except FileNotFoundError:
            pass

    def cancel(self, upload_id: str) -> None:
        """Drop an upload session and its bytes; UploadUnknown if there is none."""
        path = self._upload_path(upload_id)
        self._sessions.pop(upload_id, None)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None

    async def put_bytes(self, data: bytes) -> str:
        """Store a (small) blob from memory; return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.touch(digest) == len(data):
            return digest
        upload_id = self.new_upload()
        try:
            await self.commit(upload_id, digest, data)
        except BaseException:
            self._drop_upload(upload_id)
            raise
        return digest

    # -- blobs ------------------------------------------------------------------------------

    def stat(self, digest: str) -> int | None:
        """The blob's size, or None when it is not stored."""
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    def exists(self, digest: str) -> bool:
        return self.stat(digest) is not None

    def touch(self, digest: str) -> int | None:
        """Mark the blob as just used (mtime = now) and return its size, None if not stored.

        A manifest PUT calls this for every blob it references, before committing the manifest
        to the database, and refuses the manifest (MANIFEST_BLOB_UNKNOWN) on None: see gc.
        """
        path = self.path(digest)
        with self._place_lock:
            try:
                os.utime(path)
                return os.stat(path).st_size
            except FileNotFoundError:
                return None

    def delete(self, digest: str) -> bool:
        """Remove the blob; False when it was not stored. Readers already streaming it finish."""
        path = self.path(digest)
        with self._place_lock:
            try:
                os.unlink(path)
                return True
            except FileNotFoundError:
                return False

    def open_range(self, digest: str, start: int = 0, end: int | None = None,
                   chunk_size: int = READ_CHUNK) -> BlobReader:
        """Stream bytes ``[start, end)`` of a blob (``end`` None: to the end), ``chunk_size`` at a time.

        Opens the blob now: BlobUnknown and RangeError (start past the end, end before start)
        are raised here, before the caller commits to a response, and a delete after this
        does not cut the stream. ``end`` past the blob's size is clamped. The reader is an async
        iterator of bytes; iterate it to the end or ``await reader.aclose()`` (or ``async with``).
        """
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobUnknown(digest) from None
        try:
            size = os.fstat(fd).st_size
            stop = size if end is None else min(end, size)
            if start < 0 or start > size or stop < start:
                raise RangeError(size, f"range {start}-{end} not satisfiable for a blob of {size} bytes")
        except BaseException:
            os.close(fd)
            raise
        return BlobReader(self._executor, fd, size, start, stop, chunk_size)

    def digests(self) -> Iterable[str]:
        """Every stored blob's digest (a directory walk)."""
        for shard in sorted(os.scandir(self.blob_dir), key=lambda e: e.name):
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                if HEX64_RE.match(entry.name) and entry.name.startswith(shard.name):
                    yield "sha256:" + entry.name

    # -- garbage collection -----------------------------------------------------------------

    def gc(self, referenced: Callable[[], set[str]] | set[str] | frozenset[str], grace_seconds: float,
           upload_expiry_seconds: float = UPLOAD_EXPIRY_SECONDS) -> list[str]:
        """Delete blobs nobody references and abandoned uploads; return the blobs' digests.

        Blocking (a directory walk): run it in a thread, ``await asyncio.to_thread(store.gc, ...)``.

        Mark: ``referenced`` is the set of digests the database still needs (every manifest's
        config and layers, and whatever else the caller wants kept), or a function returning it,
        called once at the start. Sweep: a blob is deleted when it is not in that set and its
        mtime is more than ``grace_seconds`` old, checked again at the moment of deletion under
        the same lock that commit and touch take. Uploads whose file has not been written for
        ``upload_expiry_seconds`` are dropped.

        Why this is safe while pushes run. A blob's mtime is the last time it was committed or
        touched (commit sets it, also when the blob already existed). Take a blob B and a
        manifest M referencing it:

        * If M was in the database when the mark ran, B is in the set and kept.
        * Otherwise M's PUT ran (or is running) concurrently, and its contract is: call
          :meth:`touch` on every blob M references, refuse M if one is missing, and only then
          commit M to the database. If the touch came after the sweep's check of B, it found B
          gone and M is refused (the client pushes B again). If it came before, B's mtime is at
          most (the gc's duration + the manifest PUT's duration) old when the sweep checks it, so
          with ``grace_seconds`` above that bound (use minutes to hours) B is kept, and the next
          gc's mark sees M.
        * A blob committed during a push but whose manifest is not yet pushed is younger than the
          grace, so it is kept until the push has had time to finish.

        Cross-repository mounts and anything else that makes an unreferenced blob reachable
        again should touch it too. Within one process the lock closes the check-then-delete
        window; across processes sharing a root, the grace argument alone applies.
        """
        keep = referenced() if callable(referenced) else referenced
        deleted: list[str] = []
        for digest in list(self.digests()):
            if digest in keep:
                continue
            path = self.path(digest)
            with self._place_lock:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if time.time() - st.st_mtime < grace_seconds:
                    continue
                os.unlink(path)
            deleted.append(digest)
        for entry in os.scandir(self.upload_dir):
            if not UPLOAD_ID_RE.match(entry.name):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if not stat_mod.S_ISREG(st.st_mode) or time.time() - st.st_mtime < upload_expiry_seconds:
                continue
            sess = self._sessions.get(entry.name)
            if sess is not None and sess.lock.locked():  # being written right now
                continue
            self._drop_upload(entry.name)
        return deleted

    def uploads(self) -> list[str]:
        """The ids of the upload sessions on disk."""
        return [e.name for e in os.scandir(self.upload_dir) if UPLOAD_ID_RE.match(e.name)]


class BlobReader(AsyncIterator[bytes]):
    """Bytes ``[start, end)`` of an open blob, read ahead one chunk in a worker thread."""

    def __init__(self, executor: concurrent.futures.Executor, fd: int, size: int, start: int, end: int,
                 chunk_size: int) -> None:
        self.size = size          # the whole blob's size
        self.start = start
        self.end = end
        self._executor = executor
        self._fd = fd
        self._pos = start
        self._chunk = max(1, chunk_size)
        self._pending: concurrent.futures.Future[bytes] | None = None

    @property
    def length(self) -> int:
        return self.end - self.start

    def _submit(self) -> concurrent.futures.Future[bytes]:
        n = min(self._chunk, self.end - self._pos)
        off = self._pos
        self._pos += n
        if n <= SYNC_BYTES:  # cheaper inline than a thread hop
            done: concurrent.futures.Future[bytes] = concurrent.futures.Future()
            try:
                done.set_result(os.pread(self._fd, n, off))
            except OSError as e:
                done.set_exception(e)
            return done
        return self._executor.submit(os.pread, self._fd, n, off)

    def __aiter__(self) -> BlobReader:
        return self

    async def __anext__(self) -> bytes:
        if self._fd < 0:
            raise StopAsyncIteration
        fut = self._pending
        self._pending = None
        if fut is None:
            if self._pos >= self.end:
                self._close()
                raise StopAsyncIteration
            fut = self._submit()
        try:
            data = fut.result() if fut.done() else await asyncio.wrap_future(fut)
        except BaseException:
            self._pending = fut if not fut.done() else None
            self._close()
            raise
        if not data:
            self._close()
            raise OSError(f"blob truncated while reading (at {self._pos} of {self.end})")
        if self._pos < self.end:
            self._pending = self._submit()
        return data

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: os.close(fd))  # never close under a running pread
        else:
            os.close(fd)

    async def aclose(self) -> None:
        self._close()

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    def __del__(self) -> None:
        self._close()

    async def read_all(self) -> bytes:
        """Everything in the range at once (small blobs: configs, manifests)."""
        return b"".join([chunk async for chunk in self])
