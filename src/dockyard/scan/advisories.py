"""The offline advisory database: OSV JSON records loaded into the store.

``load_path`` reads a file holding one advisory or a JSON array of them, a directory of such
files, or a .zip of them (osv.dev publishes ``<ecosystem>/all.zip``). Each advisory is kept whole
(``advisories.doc``) and indexed by the (ecosystem, package) pairs it names
(``advisory_packages``); loading an advisory again replaces it.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, insert, select

from dockyard.scan.inventory import pep503
from dockyard.state.schema import advisories as at
from dockyard.state.schema import advisory_packages as apt
from dockyard.state.store import Tx, prepare

Advisory = dict[str, Any]

_DEL_PKGS = prepare(delete(apt).where(apt.c.advisory_id == bindparam("i")))
_DEL_ADV = prepare(delete(at).where(at.c.id == bindparam("i")))
_ADD_ADV = prepare(insert(at))
_ADD_PKG = prepare(insert(apt))
_FOR_PACKAGE = prepare(select(at.c.doc).select_from(apt.join(at, at.c.id == apt.c.advisory_id))
                       .where(apt.c.ecosystem == bindparam("e"), apt.c.name == bindparam("n")))
_UPDATED_AT = prepare(select(func.max(at.c.loaded_at)))


class AdvisoryError(Exception):
    """A file that is not OSV JSON."""


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """How a package is indexed: PyPI names PEP 503-normalised, others as given."""
    return ecosystem, pep503(name) if ecosystem == "PyPI" else name


def _records(data: bytes, origin: str) -> Iterator[Advisory]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise AdvisoryError(f"{origin}: not JSON: {e}") from None
    for rec in doc if isinstance(doc, list) else [doc]:
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
            raise AdvisoryError(f"{origin}: not an OSV record (no id)")
        yield rec


def read_path(path: Path) -> Iterator[Advisory]:
    """Every OSV record in a JSON file, a directory (recursively) or a .zip."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in (".json", ".zip"):
                yield from read_path(p)
    elif path.suffix == ".zip" or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir() and info.filename.endswith(".json"):
                    yield from _records(z.read(info), f"{path}:{info.filename}")
    else:
        yield from _records(path.read_bytes(), str(path))


def store_advisory(tx: Tx, rec: Advisory, now: float) -> None:
    aid = rec["id"]
    tx.run(_DEL_PKGS, i=aid)
    tx.run(_DEL_ADV, i=aid)
    tx.insert(_ADD_ADV, id=aid, modified=str(rec.get("modified") or ""), loaded_at=now, doc=orjson.dumps(rec))
    keys = set()
    for aff in rec.get("affected") or []:
        pkg = aff.get("package") or {}
        if pkg.get("ecosystem") and pkg.get("name"):
            keys.add(package_key(str(pkg["ecosystem"]), str(pkg["name"])))
    for eco, name in sorted(keys):
        tx.insert(_ADD_PKG, ecosystem=eco[:64], name=name[:255], advisory_id=aid)


def load(tx: Tx, records: Iterable[Advisory], now: float | None = None) -> int:
    """Store the records (replacing advisories of the same id); returns how many."""
    now = time.time() if now is None else now
    n = 0
    for rec in records:
        store_advisory(tx, rec, now)
        n += 1
    return n


def for_package(tx: Tx, ecosystem: str, name: str) -> list[Advisory]:
    eco, n = package_key(ecosystem, name)
    return [orjson.loads(bytes(r[0])) for r in tx.all(_FOR_PACKAGE, e=eco, n=n)]


def for_packages(tx: Tx, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Advisory]]:
    """The advisories naming each (ecosystem, name) pair (only pairs with advisories are keys)."""
    out: dict[tuple[str, str], list[Advisory]] = {}
    for eco, name in dict.fromkeys(pairs):
        found = for_package(tx, eco, name)
        if found:
            out[(eco, name)] = found
    return out


def updated_at(tx: Tx) -> float | None:
    row = tx.one(_UPDATED_AT)
    return float(row[0]) if row and row[0] is not None else None
