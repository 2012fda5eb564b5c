"""A private PostgreSQL server for tests.

Debian's server binaries (``/usr/lib/postgresql/<major>/bin``; scripts/test installs
the ``postgresql`` package) run a throw-away cluster in a temporary directory on a
free 127.0.0.1 port, with its socket in that directory too, so nothing on the
machine (a system cluster on 5432, /var/run/postgresql) is touched. PostgreSQL
refuses to run as root, so as root every command runs as the ``postgres`` OS user
through runuser. Nothing is installed here: without the binaries the tests skip,
or fail when CI=true.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.server import free_port

SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL bin directory with initdb and pg_ctl, else one on PATH."""
    def major(p: str) -> int:
        try:
            return int(Path(p).parent.parent.name.split(".")[0])
        except ValueError:
            return 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major, reverse=True):
        d = Path(initdb).parent
        if (d / "pg_ctl").exists() and (d / "postgres").exists():
            return d
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    return None


def require_bin_dir() -> Path:
    d = find_bin_dir()
    if d is None:
        msg = ("PostgreSQL server binaries (initdb, pg_ctl) not found; "
               "scripts/test installs them (Debian package postgresql)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


class PostgresServer:
    """One throw-away PostgreSQL cluster; ``create_database()`` hands out fresh databases."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
        self.data = self.tmp / "data"
        self.log = self.tmp / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SUPERUSER)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", SUPERUSER, "--"]

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        r = subprocess.run([*self._as_user, *cmd], cwd=self.tmp, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}{log}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        # A free port can be taken between our probe and the server's bind: try a few.
        for attempt in range(3):
            self.port = free_port()
            # fsync off: these clusters hold test data only, and start-up/teardown stay fast.
            opts = f"-h 127.0.0.1 -p {self.port} -k {self.tmp} -F -c max_connections=200"
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-w", "-t", "60", "-o", opts, "start")
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "d" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.port and (self.data / "postmaster.pid").exists():
            try:
                # immediate: the data is thrown away next, so skip the shutdown checkpoint.
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                          "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started private PostgreSQL server, stopped and deleted on exit (skips/fails if absent)."""
    server = PostgresServer(require_bin_dir())
    try:
        yield server.start()
    finally:
        server.stop()
