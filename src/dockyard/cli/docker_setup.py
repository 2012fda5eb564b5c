"""Make sure a Docker engine is installed and answering, for ``dockyard up``.

Debian's ``docker.io`` is installed with apt-get when ``dockerd`` is missing
(root only), and ``dockerd`` is started in the background when the socket does
not answer. Progress goes to stderr, since installing can take a minute.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET = Path(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://"))


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def engine_answers(path: Path = SOCKET) -> bool:
    """GET /_ping on the engine's socket (no client library needed before it exists)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = s.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and b" 200" in status_line
    except OSError:
        return False


def _install() -> None:
    if os.geteuid() != 0:
        raise SystemExit("dockerd is not installed; install Debian's docker.io (apt-get install docker.io) "
                         "or run dockyard up as root to have it installed")
    say("installing Debian's docker.io (apt-get; this takes a minute)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"], check=True, env=env)


def ensure_engine(log_dir: Path, timeout: float = 60.0) -> None:
    """Return once the engine answers on its socket; install and start it when needed."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        _install()
    if os.geteuid() != 0:
        raise SystemExit(f"the Docker engine is not running ({SOCKET}); start it (dockerd) and try again")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "dockerd.log"
    say(f"starting dockerd (log: {log_path})")
    with open(log_path, "ab") as log:
        # Its own session: Ctrl-C on `dockyard up` must not stop the engine and the containers.
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers():
            say("Docker engine is up")
            return
        time.sleep(0.25)
    raise SystemExit(f"dockerd did not answer within {timeout:.0f} s; see {log_path}")
