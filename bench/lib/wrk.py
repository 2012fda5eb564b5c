"""Run wrk over a list of raw requests; measure the server's and wrk's CPU."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent.parent / "requests.lua"
_TICK = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and its live descendants (``dockyard server --api-workers`` runs child processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def proc_cpu_seconds(pid: int) -> float:
    """user+system CPU of a process and its live child processes, all threads included
    (/proc/<pid>/stat)."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def wait_idle(pid: int, timeout: float = 5.0, window: float = 0.1, busy: float = 0.05) -> float:
    """Wait until the process uses under ``busy`` of a CPU over ``window`` seconds (e.g. still answering
    requests a previous run left queued); returns the seconds waited."""
    import time

    t0 = time.monotonic()
    prev = proc_cpu_seconds(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(window)
        cur = proc_cpu_seconds(pid)
        if cur - prev < busy * window:
            break
        prev = cur
    return time.monotonic() - t0


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat), to see what else ran during a run."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def fsync_probe(directory: Path, n: int = 200) -> dict[str, float]:
    """Latency of a 2 KB append + fdatasync in ``directory`` (ms): what a durable commit waits for."""
    import time

    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    ts = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 2048)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            ts.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    ts.sort()
    return {"p50_ms": ts[len(ts) // 2], "p90_ms": ts[int(len(ts) * 0.9)], "p99_ms": ts[int(len(ts) * 0.99)],
            "max_ms": ts[-1]}


def tmp_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@dataclass
class WrkResult:
    rps: float
    requests: int
    non2xx: int
    bad: int
    wrapped: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    server_cpu_s: float
    server_cpu_us_per_req: float
    wrk_cpu_s: float
    other_cpu_s: float = 0.0  # CPU used on the machine during the run by neither the server nor wrk
    first_error: str = ""
    first_bad: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non2xx + self.bad + self.socket_errors + self.timeouts


def write_request_files(prefix: Path, per_thread: list[list[bytes]]) -> None:
    for t, reqs in enumerate(per_thread):
        with open(f"{prefix}.{t}", "wb") as f:
            for r in reqs:
                f.write(b"%d\n" % len(r))
                f.write(r)


def run_wrk(url: str, prefix: Path, *, duration: float, threads: int, connections: int,
            check: bool, server_pid: int | None, timeout_s: int = 10) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           f"--timeout={timeout_s}s", "-s", str(LUA), url, "--", str(prefix), "1" if check else "0"]
    if server_pid:
        wait_idle(server_pid)
    cpu0 = proc_cpu_seconds(server_pid) if server_pid else 0.0
    busy0 = machine_busy_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    cpu1 = proc_cpu_seconds(server_pid) if server_pid else 0.0
    busy1 = machine_busy_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()}\n{out.decode()}")
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("WRKRESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.decode()}\n{err.decode()}")
    d = json.loads(line[len("WRKRESULT "):])
    secs = d["duration_us"] / 1e6
    n = d["requests"]
    return WrkResult(
        rps=n / secs if secs else 0.0, requests=n, non2xx=d["non2xx"], bad=d["bad"], wrapped=d["wrapped"],
        socket_errors=d["connect_errors"] + d["read_errors"] + d["write_errors"], timeouts=d["timeouts"],
        p50_ms=d["p50_us"] / 1000, p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000,
        mean_ms=d["mean_us"] / 1000, max_ms=d["max_us"] / 1000,
        server_cpu_s=cpu1 - cpu0, server_cpu_us_per_req=(cpu1 - cpu0) / n * 1e6 if n else 0.0,
        wrk_cpu_s=0.0, other_cpu_s=busy1 - busy0, first_error=d["first_error"], first_bad=d["first_bad"],
        raw=d)


def run_wrk_timed(*args: Any, **kw: Any) -> WrkResult:
    """run_wrk plus wrk's own CPU time (from the children rusage delta)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = run_wrk(*args, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # communicate() reaped wrk, so its CPU time is in the RUSAGE_CHILDREN delta.
    res.wrk_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res.other_cpu_s = max(0.0, res.other_cpu_s - res.wrk_cpu_s - res.server_cpu_s)
    return res
