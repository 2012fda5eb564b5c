"""Locally built test images (scripts/build-test-images); nothing is ever pulled.

``busybox_image()`` builds, once per session (and only when the content changed,
the tag being a content hash), ``127.0.0.1:5999/dockyard-test/busybox:<hash>``:
FROM scratch with Debian's static busybox and its applets in /bin. Without a
Docker engine or busybox-static the calling test skips, or fails when CI=true.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-test-images"


def _unavailable(msg: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def require_docker() -> None:
    """Skip (fail under CI=true) when no Docker engine answers."""
    if shutil.which("docker") is None:
        _unavailable("the docker CLI is not installed (scripts/up installs docker.io)")
    r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                       text=True, timeout=30, check=False)
    if r.returncode != 0:
        _unavailable(f"no Docker engine answers: {r.stderr.strip()[:300]}")


@functools.cache
def _build() -> str:
    r = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"scripts/build-test-images failed: {r.stderr.strip()[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def busybox_image() -> str:
    """The reference of the busybox test image, built when missing."""
    require_docker()
    if not Path(os.environ.get("BUSYBOX", "/bin/busybox")).exists():
        _unavailable("/bin/busybox not found (scripts/test installs busybox-static)")
    return _build()
