"""Registry garbage collection: blobs no image needs any more leave the disk.

Every ``DOCKYARD_REGISTRY_GC_SECONDS`` (default 3600), on the server's loop:

1. a write drops the ``ecr_layers`` rows (a repository's hold on a blob) that no manifest of
   that repository references and that are older than the grace period (an upload whose
   manifest is still to come is younger), and upload sessions idle past the upload expiry;
2. the mark: every digest some repository still holds;
3. the sweep, in a thread: ``BlobStore.gc`` deletes files outside the mark that are older
   than the grace (``DOCKYARD_REGISTRY_GC_GRACE_SECONDS``, default 3600). A manifest PUT
   touches its blobs before it commits (the store's contract), so a push running beside
   the sweep either keeps its blobs or is refused and pushes them again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from sqlalchemy import and_, bindparam, delete, exists, select

from dockyard.registry.blobs import BlobStore
from dockyard.state.schema import ecr_image_refs as refs
from dockyard.state.schema import ecr_layers as lt
from dockyard.state.schema import ecr_uploads as ut
from dockyard.state.store import Store, Tx, prepare

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3600.0
DEFAULT_GRACE = 3600.0
UPLOAD_EXPIRY = 24 * 3600.0

_UNREFERENCED = prepare(delete(lt).where(
    lt.c.created_at < bindparam("before"),
    ~exists(select(refs.c.ref_digest).where(and_(refs.c.repository_arn == lt.c.repository_arn,
                                                 refs.c.ref_digest == lt.c.digest)))))
_STALE_UPLOADS = prepare(delete(ut).where(ut.c.updated_at < bindparam("before")))
_HELD = prepare(select(lt.c.digest).distinct())


def prune(tx: Tx, layers_before: float, uploads_before: float) -> tuple[int, int]:
    """Drop holds no manifest needs and stale upload sessions; returns (layers, uploads) dropped."""
    return tx.run(_UNREFERENCED, before=layers_before), tx.run(_STALE_UPLOADS, before=uploads_before)


def held(tx: Tx) -> set[str]:
    return {r[0] for r in tx.all(_HELD)}


async def collect(store: Store, blobs: BlobStore, grace: float, upload_expiry: float = UPLOAD_EXPIRY) -> list[str]:
    """One collection; returns the digests of the blobs deleted."""
    now = time.time()
    await store.write(prune, now - grace, now - upload_expiry)
    keep = store.read(held)
    return await asyncio.to_thread(blobs.gc, keep, grace, upload_expiry)


async def run(store: Store, blobs: BlobStore) -> None:
    interval = float(os.environ.get("DOCKYARD_REGISTRY_GC_SECONDS", DEFAULT_INTERVAL))
    grace = float(os.environ.get("DOCKYARD_REGISTRY_GC_GRACE_SECONDS", DEFAULT_GRACE))
    while True:
        await asyncio.sleep(interval)
        try:
            gone = await collect(store, blobs, grace)
            if gone:
                log.info("registry gc: %d unreferenced blobs deleted", len(gone))
        except Exception:
            log.exception("registry gc failed; trying again later")
