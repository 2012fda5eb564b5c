"""Run a real ``dockyard server`` process for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REGION = "us-east-1"
BANNER = b"Dockyard is serving"  # the first line `dockyard server` prints once it serves


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interrupt(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGINT ``proc`` if it still runs and wait for it to exit; SIGKILL after ``timeout`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServerProcess:
    """A dockyard server on 127.0.0.1 with its own data directory."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None,
                 database_url: str | None = None, env: dict[str, str] | None = None,
                 api_workers: int | None = None) -> None:
        self._tmp = None
        self.api_workers = api_workers  # None: the server's default
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dockyard-test-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database_url = database_url
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The server's command line (a subclass may run the server through a wrapper script)."""
        cmd = [sys.executable, "-m", "dockyard.cli.main", "server", "--port", str(self.port),
               "--data-dir", str(self.data_dir)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.api_workers is not None:
            cmd += ["--api-workers", str(self.api_workers)]
        return cmd

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start ``command()`` and wait until it has printed its banner and answers /ping."""
        cmd = self.command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            # This start's banner first: after a kill -9 the old server's API worker still
            # answers /ping on the port for a moment, and the new server binds only once it left.
            with open(self.log_path, "rb") as f:
                f.seek(logged)
                if BANNER not in f.read():
                    time.sleep(0.05)
                    continue
            try:
                with urllib.request.urlopen(self.endpoint + "/ping", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def credentials(self) -> tuple[str, str]:
        kv = {}
        for line in (self.data_dir / "credentials").read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                kv[k.strip()] = v.strip()
        return kv["aws_access_key_id"], kv["aws_secret_access_key"]

    def client(self, service: str = "ecs", **kw: Any) -> Any:
        import boto3
        from botocore.config import Config

        from tests.helpers import shapes

        key, secret = kw.pop("key", None), kw.pop("secret", None)
        if key is None or secret is None:
            # Either may be given alone (tests of bad keys); the other is the root key's.
            root_key, root_secret = self.credentials()
            key, secret = key or root_key, secret or root_secret
        client = boto3.client(service, endpoint_url=self.endpoint, region_name=kw.pop("region", REGION),
                              aws_access_key_id=key, aws_secret_access_key=secret,
                              config=Config(retries={"max_attempts": 0}, **kw))
        return shapes.install(client)

    def stop(self) -> None:
        interrupt(self.proc, timeout=15)
        self.proc = None

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
