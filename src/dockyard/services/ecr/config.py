"""Where the registry is reached: ``repositoryUri`` is this host:port plus the repository name.

The server sets it at start from its listening address (``DOCKYARD_REGISTRY_HOST`` overrides
it, e.g. a name other hosts resolve); tests that run operations in-process may set it too.
"""

from __future__ import annotations

import os

_host = "127.0.0.1:7480"


def set_registry_host(host: str, port: int) -> None:
    global _host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    _host = os.environ.get("DOCKYARD_REGISTRY_HOST") or f"{shown}:{port}"


def registry_host() -> str:
    return _host
