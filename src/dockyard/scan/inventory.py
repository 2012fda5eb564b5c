"""What an image holds: OS packages (dpkg, apk) and Python distributions, read from its layers.

Layers are read in order as streams (``tarfile`` "r|*": gzip, bzip2, xz or plain tar; never a
whole layer in memory). Only the files that describe packages are kept, and OCI/AUFS whiteouts
(``.wh.<name>``, ``.wh..wh..opq``) in a layer remove what lower layers left at those paths.
"""

from __future__ import annotations

import email.parser
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MAX_FILE = 64 << 20  # a package database larger than this is not read

_DPKG_STATUS = "var/lib/dpkg/status"
_DPKG_STATUS_D = "var/lib/dpkg/status.d/"
_APK_INSTALLED = "lib/apk/db/installed"
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_PY_META = re.compile(r"(?:^|/)(?:site|dist)-packages/[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO|egg-info)$")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class InventoryError(Exception):
    """A layer could not be read (unknown compression, not a tar)."""


@dataclass(frozen=True, slots=True)
class Package:
    ecosystem: str  # the OSV ecosystem: "Debian:12", "Alpine:v3.19", "PyPI"
    name: str       # the name advisories use (Debian: the source package; PyPI: normalised)
    version: str
    installed_name: str = ""  # the binary package's name, when it differs from ``name``


@dataclass(slots=True)
class Inventory:
    os_id: str = ""
    os_version: str = ""
    packages: list[Package] = field(default_factory=list)

    @property
    def os_ecosystem(self) -> str | None:
        return os_ecosystem(self.os_id, self.os_version)


def wanted(path: str) -> bool:
    return (path in _OS_RELEASE or path in (_DPKG_STATUS, _APK_INSTALLED)
            or (path.startswith(_DPKG_STATUS_D) and "/" not in path[len(_DPKG_STATUS_D):])
            or _PY_META.search(path) is not None)


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _apply_layer(files: dict[str, bytes], stream: IO[bytes]) -> None:
    """Apply one layer (a tar stream) to ``files`` (path -> content of the wanted files)."""
    added: dict[str, bytes | None] = {}
    removed: list[str] = []
    opaque: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                path = _norm(m.name)
                parent, _, base = path.rpartition("/")
                if base == ".wh..wh..opq":
                    opaque.append(parent)
                    continue
                if base.startswith(".wh."):
                    removed.append(f"{parent}/{base[4:]}" if parent else base[4:])
                    continue
                if not wanted(path):
                    continue
                if m.isfile() and m.size <= MAX_FILE:
                    f = tar.extractfile(m)
                    added[path] = f.read() if f is not None else b""
                elif m.issym() or m.islnk():
                    target = m.linkname if m.islnk() else str(Path(parent) / m.linkname)
                    added[path] = b"\0link:" + _norm(_resolve(target)).encode()
                else:
                    added[path] = None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InventoryError(f"layer is not a readable tar: {e}") from e
    for d in opaque:
        prefix = d + "/" if d else ""
        for p in [p for p in files if p.startswith(prefix)]:
            del files[p]
    for r in removed:
        for p in [p for p in files if p == r or p.startswith(r + "/")]:
            del files[p]
    for p, content in added.items():
        if content is None:
            files.pop(p, None)
        else:
            files[p] = content


def _resolve(path: str) -> str:
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/".join(out)


def _open_layer(path: Path) -> IO[bytes]:
    f = open(path, "rb")  # noqa: SIM115 -- closed by the caller
    head = f.read(4)
    f.seek(0)
    if head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            f.close()
            raise InventoryError("zstd-compressed layers are not supported (zstandard is not installed)") from None
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)  # type: ignore[no-any-return]
    return f


def read_layers(paths: Iterable[Path]) -> dict[str, bytes]:
    """The wanted files of the image whose layers (bottom first) are at ``paths``."""
    files: dict[str, bytes] = {}
    for p in paths:
        stream = _open_layer(p)
        try:
            _apply_layer(files, stream)
        finally:
            stream.close()
    return files


def _content(files: dict[str, bytes], path: str, depth: int = 0) -> bytes | None:
    c = files.get(path)
    if c is not None and c.startswith(b"\0link:") and depth < 8:
        return _content(files, c[6:].decode(), depth + 1)
    return c


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and k and not k.startswith("#"):
            out[k] = v.strip().strip("\"'")
    return out


def os_ecosystem(os_id: str, version: str) -> str | None:
    """The OSV ecosystem of an OS release: "Debian:12", "Alpine:v3.19", "Ubuntu:22.04"."""
    if os_id == "debian":
        return f"Debian:{version.split('.')[0]}" if version else "Debian"
    if os_id == "alpine":
        parts = version.split(".")
        return f"Alpine:v{parts[0]}.{parts[1]}" if len(parts) >= 2 else "Alpine"
    if os_id == "ubuntu":
        return f"Ubuntu:{version}" if version else "Ubuntu"
    if os_id in ("wolfi", "chainguard"):
        return os_id.capitalize()
    return None


def parse_dpkg_status(text: str) -> list[tuple[str, str, str, str]]:
    """(package, version, source, source version) of each installed package in a dpkg status file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # a continuation line (Description, Conffiles)
            k, sep, v = line.partition(":")
            if sep:
                key = k.strip()
                fields[key] = v.strip()
        name, version = fields.get("Package"), fields.get("Version")
        status = fields.get("Status", "install ok installed")
        if not name or not version or not status.endswith(" installed"):
            continue
        src, src_version = name, version
        if fields.get("Source"):
            m = re.match(r"(\S+)(?:\s*\((.+)\))?", fields["Source"])
            if m:
                src = m.group(1)
                src_version = m.group(2) or version
        out.append((name, version, src, src_version))
    return out


def parse_apk_installed(text: str) -> list[tuple[str, str, str]]:
    """(package, version, origin) of each package in an apk installed database."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:].strip())
        if fields.get("P") and fields.get("V"):
            out.append((fields["P"], fields["V"], fields.get("o", fields["P"])))
    return out


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_python_metadata(text: str) -> tuple[str, str] | None:
    msg = email.parser.Parser().parsestr(text, headersonly=True)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        return None
    return str(name).strip(), str(version).strip()


def inventory(files: dict[str, bytes]) -> Inventory:
    """The packages the wanted files (``read_layers``) describe."""
    inv = Inventory()
    for p in _OS_RELEASE:
        c = _content(files, p)
        if c:
            rel = parse_os_release(c.decode("utf-8", "replace"))
            inv.os_id, inv.os_version = rel.get("ID", "").lower(), rel.get("VERSION_ID", "")
            break
    eco = inv.os_ecosystem
    seen: set[Package] = set()

    def add(pkg: Package) -> None:
        if pkg not in seen:
            seen.add(pkg)
            inv.packages.append(pkg)

    dpkg_files = [p for p in sorted(files) if p == _DPKG_STATUS or p.startswith(_DPKG_STATUS_D)]
    for p in dpkg_files:
        c = _content(files, p)
        if not c:
            continue
        for name, _version, src, src_version in parse_dpkg_status(c.decode("utf-8", "replace")):
            # Debian's advisories name source packages (and their versions).
            add(Package(eco or "Debian", src, src_version, name))
    c = _content(files, _APK_INSTALLED)
    if c:
        for name, version, origin in parse_apk_installed(c.decode("utf-8", "replace")):
            add(Package(eco or "Alpine", origin, version, name))
    for p in sorted(files):
        if _PY_META.search(p) is None:
            continue
        c = _content(files, p)
        if not c:
            continue
        meta = parse_python_metadata(c.decode("utf-8", "replace"))
        if meta is not None:
            add(Package("PyPI", pep503(meta[0]), meta[1], meta[0]))
    return inv


def scan_layers(paths: Iterable[Path]) -> Inventory:
    """``inventory(read_layers(paths))``: CPU- and IO-bound, run it in a thread."""
    return inventory(read_layers(paths))
