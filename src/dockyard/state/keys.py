"""Access keys: the identities SigV4 verifies against, one account per key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, delete, insert, select

from dockyard.api.sigv4 import Credential
from dockyard.state import arns, ids
from dockyard.state.schema import access_keys as t
from dockyard.state.store import Store, Tx, prepare

_BY_ID = prepare(select(t.c.secret_access_key, t.c.account_id, t.c.principal_arn)
                 .where(t.c.access_key_id == bindparam("k"), t.c.status == "Active"))
_INSERT = prepare(insert(t))
_LIST = prepare(select(t.c.access_key_id, t.c.account_id, t.c.user_name, t.c.status, t.c.created_at)
                .order_by(t.c.created_at))
_DELETE = prepare(delete(t).where(t.c.access_key_id == bindparam("k")))
_ANY_ROOT = prepare(select(t.c.access_key_id, t.c.account_id).where(t.c.user_name == "root").limit(1))


@dataclass(frozen=True)
class NewKey:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_name: str


def lookup(tx: Tx, key_id: str) -> Credential | None:
    row = tx.one(_BY_ID, k=key_id)
    if row is None:
        return None
    return Credential(key_id, row[0], row[1], row[2])


def create(tx: Tx, user_name: str, account_id: str | None = None) -> NewKey:
    """A new key; the account is the root key's unless one is given."""
    if account_id is None:
        root = tx.one(_ANY_ROOT)
        account_id = root[1] if root else ids.account_id()
    key = NewKey(ids.access_key_id(), ids.secret_access_key(), account_id, user_name)
    tx.insert(_INSERT, access_key_id=key.access_key_id, secret_access_key=key.secret_access_key,
              account_id=account_id, user_name=user_name,
              principal_arn=arns.iam_user(account_id, user_name), status="Active",
              created_at=time.time())
    return key


def list_keys(tx: Tx) -> list[tuple[str, str, str, str, float]]:
    return [tuple(r) for r in tx.all(_LIST)]  # type: ignore[misc]


def delete_key(tx: Tx, key_id: str) -> bool:
    return tx.run(_DELETE, k=key_id) > 0


def root_key(tx: Tx) -> tuple[str, str] | None:
    row = tx.one(_ANY_ROOT)
    return (row[0], row[1]) if row else None


def write_credentials_file(path: Path, key: NewKey, profile: str = "default") -> None:
    """AWS shared-credentials format, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"[{profile}]\naws_access_key_id = {key.access_key_id}\n"
            f"aws_secret_access_key = {key.secret_access_key}\n")
    path.write_text(text)
    path.chmod(0o600)


def ensure_root(store: Store, data_dir: Path) -> NewKey | None:
    """On first start: create the root key pair and write it to ``data_dir/credentials``."""
    with store.transaction() as tx:
        if root_key(tx) is not None:
            return None
        key = create(tx, "root")
    write_credentials_file(data_dir / "credentials", key)
    return key
