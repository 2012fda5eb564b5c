"""The servers a benchmark run talks to: Dockyard, moto_server and the hello-world baseline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.helpers.server import ServerProcess, free_port, interrupt  # noqa: E402

REGION = "us-east-1"


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited early:\n{log.read_text()[-3000:]}")
        try:
            req = urllib.request.Request(url, method="GET")
            with urllib.request.urlopen(req, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start:\n{log.read_text()[-3000:]}")


class Target:
    """One server: where it listens, its pid (for CPU accounting), credentials and a boto3 client."""

    kind = ""

    def __init__(self, label: str) -> None:
        self.label = label
        self.port = 0
        self.pid = 0
        self.key = "testing"
        self.secret = "testing"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str = "ecs") -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            config=Config(retries={"max_attempts": 0}, max_pool_connections=16))

    def stop(self) -> None:
        raise NotImplementedError


class VariantServerProcess(ServerProcess):
    """ServerProcess started through bench/lib/server_variant.py (switch interval, uvloop)."""

    def __init__(self, variant: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.variant = variant

    def start(self, timeout: float = 30.0) -> ServerProcess:
        script = Path(__file__).resolve().parent / "server_variant.py"
        cmd = [sys.executable, str(script), *self.variant, "--", "server", "--port", str(self.port),
               "--data-dir", str(self.data_dir)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held for the process's life
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **self.env}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        _wait_http(self.endpoint + "/ping", self.proc, self.log_path, timeout)
        return self


# The write server creates tens of thousands of services in one cluster (CreateService runs for
# minutes at thousands per second); AWS's default quota is 5,000 per cluster. The quota check still
# runs on every CreateService, only against a higher limit.
SERVER_ENV = {"DOCKYARD_QUOTA_SERVICES_PER_CLUSTER": "100000000"}


class DockyardTarget(Target):
    kind = "dockyard"

    def __init__(self, label: str, data_dir: Path, variant: list[str] | None = None) -> None:
        super().__init__(label)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = VariantServerProcess(variant, data_dir=data_dir, env=SERVER_ENV) if variant else \
            ServerProcess(data_dir=data_dir, env=SERVER_ENV)
        self.data_dir = data_dir

    def start(self) -> DockyardTarget:
        self.server.start()
        assert self.server.proc is not None
        self.port = self.server.port
        self.pid = self.server.proc.pid
        self.key, self.secret = self.server.credentials()
        return self

    def stop(self) -> None:
        self.server.stop()


class _ProcTarget(Target):
    def __init__(self, label: str, workdir: Path) -> None:
        super().__init__(label)
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{label}.log"

    def _spawn(self, cmd: list[str], probe: str) -> None:
        self.port = free_port()
        cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held for the process's life
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        _wait_http(self.endpoint + probe, self.proc, self.log_path)

    def stop(self) -> None:
        interrupt(self.proc, timeout=10)
        self.proc = None


class MotoTarget(_ProcTarget):
    kind = "moto"

    def start(self) -> MotoTarget:
        exe = Path(sys.executable).parent / "moto_server"
        cmd = [str(exe), "-H", "127.0.0.1", "-p", "{port}"] if exe.exists() else \
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]
        self._spawn(cmd, "/moto-api/")
        return self


class HelloTarget(_ProcTarget):
    kind = "hello"

    def __init__(self, label: str, workdir: Path, extra: list[str] | None = None) -> None:
        super().__init__(label, workdir)
        self.extra = extra or []

    def start(self) -> HelloTarget:
        script = Path(__file__).resolve().parent / "hello_server.py"
        self._spawn([sys.executable, str(script), "--port", "{port}", *self.extra], "/")
        return self


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, check=False, capture_output=True, text=True).stdout.strip()
    except OSError as e:
        return f"unavailable: {e}"


def env_info() -> dict[str, Any]:
    import platform
    import sqlite3
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "kernel": platform.release(), "sqlite": sqlite3.sqlite_version}
    for pkg in ("botocore", "httptools", "moto", "orjson", "SQLAlchemy", "uvloop", "websockets"):
        try:
            info[pkg.lower()] = version(pkg)
        except PackageNotFoundError:
            info[pkg.lower()] = None
    info["git"] = _cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    info["src_dirty"] = bool(_cmd(["git", "-C", str(REPO), "status", "--porcelain", "src"]))
    info["wrk"] = _cmd(["wrk", "-v"]).split("\n")[0]
    return info
