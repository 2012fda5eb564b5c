"""The package inventory of synthetic images: dpkg, apk, Python metadata, whiteouts, compressions."""

import gzip
import io
import tarfile

import pytest

from dockyard.scan.inventory import InventoryError, Package, os_ecosystem, parse_dpkg_status, scan_layers

DPKG = """Package: libssl3
Status: install ok installed
Version: 3.0.11-1~deb12u1
Source: openssl
Description: the SSL library
 continuation line: not a field

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Source: zlib (1:1.2.13.dfsg-1)

Package: removed-one
Status: deinstall ok config-files
Version: 1.0

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
Source: bash (5.2.15-2)
"""

APK = """C:Q1abc=
P:busybox
V:1.36.1-r15
o:busybox
A:x86_64

P:ssl_client
V:1.36.1-r15
o:busybox

P:musl
V:1.2.4_git20230717-r4
"""


def layer(files: dict[str, bytes | None], *, compress: str = "gz", symlinks: dict[str, str] | None = None) -> bytes:
    """A layer tar: ``None`` content makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress == "gz" else raw


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nlong description\n".encode()


def scan(tmp_path, *layers):
    paths = []
    for i, data in enumerate(layers):
        p = tmp_path / f"layer{i}"
        p.write_bytes(data)
        paths.append(p)
    return scan_layers(paths)


def test_debian_image(tmp_path):
    inv = scan(tmp_path, layer({
        "./usr/lib/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
        "./var/lib/dpkg/status": DPKG.encode(),
        "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA": metadata("six", "1.16.0"),
    }, symlinks={"etc/os-release": "../usr/lib/os-release"}))
    assert (inv.os_id, inv.os_version, inv.os_ecosystem) == ("debian", "12", "Debian:12")
    assert inv.packages == [
        Package("Debian:12", "openssl", "3.0.11-1~deb12u1", "libssl3"),
        Package("Debian:12", "zlib", "1:1.2.13.dfsg-1", "zlib1g"),
        Package("Debian:12", "bash", "5.2.15-2", "bash"),
        Package("PyPI", "six", "1.16.0", "six"),
    ]


def test_alpine_image_plain_tar(tmp_path):
    inv = scan(tmp_path, layer({"etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n",
                                "lib/apk/db/installed": APK.encode()}, compress="none"))
    assert inv.os_ecosystem == "Alpine:v3.19"
    assert [(p.name, p.version, p.installed_name) for p in inv.packages] == [
        ("busybox", "1.36.1-r15", "busybox"), ("busybox", "1.36.1-r15", "ssl_client"),
        ("musl", "1.2.4_git20230717-r4", "musl")]


def test_whiteouts_and_layer_order(tmp_path):
    sp = "usr/local/lib/python3.12/site-packages"
    base = layer({
        "etc/os-release": b"ID=debian\nVERSION_ID=12\n",
        "var/lib/dpkg/status": DPKG.encode(),
        f"{sp}/requests-2.30.0.dist-info/METADATA": metadata("requests", "2.30.0"),
        f"{sp}/PyYAML-5.3.1.dist-info/METADATA": metadata("PyYAML", "5.3.1"),
        f"{sp}/old_pkg.egg-info/PKG-INFO": metadata("old_pkg", "0.1"),
        "opt/venv/lib/python3.12/site-packages/gone-1.0.dist-info/METADATA": metadata("gone", "1.0"),
    })
    upgrade = layer({
        # requests upgraded: the old dist-info whited out, a new one added.
        f"{sp}/.wh.requests-2.30.0.dist-info": b"",
        f"{sp}/requests-2.31.0.dist-info/METADATA": metadata("requests", "2.31.0"),
        # An opaque directory hides everything below it from lower layers.
        "opt/venv/.wh..wh..opq": b"",
        # The dpkg database rewritten: only bash left.
        "var/lib/dpkg/status": DPKG.split("\n\n")[-1].encode(),
    })
    top = layer({f"{sp}/.wh.old_pkg.egg-info": b""})
    inv = scan(tmp_path, base, upgrade, top)
    assert sorted((p.ecosystem, p.name, p.version) for p in inv.packages) == [
        ("Debian:12", "bash", "5.2.15-2"),
        ("PyPI", "pyyaml", "5.3.1"),
        ("PyPI", "requests", "2.31.0"),
    ]


def test_no_os_and_bad_layers(tmp_path):
    inv = scan(tmp_path, layer({"app/main": b"#!/bin/sh\n"}))
    assert inv.os_ecosystem is None and inv.packages == []
    with pytest.raises(InventoryError):
        scan(tmp_path, b"not a tar at all" * 100)


def test_dpkg_status_parsing_and_ecosystems():
    assert [p[0] for p in parse_dpkg_status(DPKG)] == ["libssl3", "zlib1g", "bash"]
    assert os_ecosystem("debian", "11") == "Debian:11"
    assert os_ecosystem("alpine", "3.20.0") == "Alpine:v3.20"
    assert os_ecosystem("ubuntu", "22.04") == "Ubuntu:22.04"
    assert os_ecosystem("fedora", "40") is None
