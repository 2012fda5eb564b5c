"""The store functions the /v2/ routes run (repositories, uploads, layers, manifests).

They reuse the ECR services' functions, so a push through /v2/ has PutImage's effects.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from dockyard.registry.errors import RegistryError
from dockyard.registry.manifests import Manifest
from dockyard.services.context import Ctx
from dockyard.services.ecr import access, images, layers, repositories
from dockyard.services.ecr.common import Repo, find_repo
from dockyard.services.ecr.errors import RepositoryAlreadyExistsException
from dockyard.state.schema import ecr_repositories as rt
from dockyard.state.store import Tx, prepare

_NAMES = prepare(select(rt.c.name)
                 .where(rt.c.account_id == bindparam("acct"), rt.c.region == bindparam("r"),
                        rt.c.name > bindparam("after"))
                 .order_by(rt.c.name).limit(bindparam("n")))


def repo(tx: Tx, ctx: Ctx, name: str) -> Repo | None:
    return find_repo(tx, ctx, name)


def create_repo(tx: Tx, ctx: Ctx, name: str) -> Repo:
    """Create-on-push: a repository with CreateRepository's defaults (or the one made meanwhile)."""
    try:
        repositories.create_repository(tx, ctx, {"repositoryName": name})
    except RepositoryAlreadyExistsException:
        pass
    found = find_repo(tx, ctx, name)
    assert found is not None
    return found


def catalog(tx: Tx, ctx: Ctx, after: str, n: int) -> list[str]:
    return [r[0] for r in tx.all(_NAMES, acct=ctx.account_id, r=ctx.region, after=after, n=n)]


def start_upload(tx: Tx, repo_arn: str, upload_id: str, now: float) -> None:
    layers.start_upload(tx, repo_arn, upload_id, now)


def upload_size(tx: Tx, upload_id: str, size: int, now: float) -> None:
    layers.set_upload_size(tx, upload_id, size, now)


def end_upload(tx: Tx, upload_id: str) -> None:
    layers.end_upload(tx, upload_id)


def finish_upload(tx: Tx, repo_arn: str, upload_id: str | None, digest: str, size: int, now: float) -> None:
    """The blob is stored: the repository holds it, the session is over."""
    layers.add_layer(tx, repo_arn, digest, size, None, now)
    if upload_id is not None:
        layers.end_upload(tx, upload_id)
    tx.notify("ecr-layer", repo_arn)


def mount(tx: Tx, ctx: Ctx, source: str, repo_arn: str, digest: str, now: float) -> bool:
    """Add a blob the caller's ``source`` repository holds to this one; False when it does not, or
    when the caller may not pull from ``source`` (the client then uploads the blob itself)."""
    src = find_repo(tx, ctx, source)
    if src is not None and access.verdict(src, ctx, "ecr:GetDownloadUrlForLayer") is not None:
        src = None
    found = layers.layer(tx, src.arn, digest) if src is not None else None
    if found is None:
        return False
    layers.add_layer(tx, repo_arn, digest, found[0], found[1], now)
    tx.notify("ecr-layer", repo_arn)
    return True


def tags(tx: Tx, repo: Repo) -> list[str]:
    return images.tags_of_repo(tx, repo)


def require(tx: Tx, ctx: Ctx, name: str) -> Repo:
    """The repository, or NAME_UNKNOWN in ECR's words."""
    found = find_repo(tx, ctx, name)
    if found is None:
        raise RegistryError("NAME_UNKNOWN", f"The repository with name '{name}' does not exist in the "
                                            f"registry with id '{ctx.account_id}'")
    return found


def require_for(tx: Tx, ctx: Ctx, name: str, action: str) -> Repo:
    """The repository, NAME_UNKNOWN, or DENIED when its policy refuses the caller ``action``."""
    found = require(tx, ctx, name)
    msg = access.verdict(found, ctx, action)
    if msg is not None:
        raise RegistryError("DENIED", msg)
    return found


def push_manifest(tx: Tx, ctx: Ctx, name: str, m: Manifest, tag: str | None) -> None:
    """PutImage's effects for a /v2/ manifest PUT, read and written in one write transaction."""
    images.put_manifest(tx, require_for(tx, ctx, name, "ecr:PutImage"), ctx.account_id, m, tag, ctx.now,
                        exists_ok=True)


def delete_manifest(tx: Tx, ctx: Ctx, name: str, reference: str) -> dict[str, str] | None:
    """BatchDeleteImage's rules for one tag or digest; the failure, if any."""
    image_id = {"imageDigest": reference} if ":" in reference else {"imageTag": reference}
    _, failure = images.delete_image_id(tx, require_for(tx, ctx, name, "ecr:BatchDeleteImage"), image_id)
    return failure
