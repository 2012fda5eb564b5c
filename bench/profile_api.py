#!/usr/bin/env python
"""Where a Dockyard server's CPU goes under load: py-spy on the server while wrk drives one workload.

    .venv/bin/pip install py-spy        # once
    .venv/bin/python bench/profile_api.py --ops DescribeTaskDefinition,RegisterTaskDefinition

For each workload: a fresh Dockyard server with the api_mix fixtures, wrk -t2 -c16
on the same signed requests as bench/api_mix.py, and ``py-spy record`` on the
server for ``--duration`` seconds in the middle of the run. Prints the share of
samples per stage (each sample goes to the stage of the innermost frame that
identifies one), the top frames by self time and the top Dockyard frames by
inclusive time. The collapsed stacks are kept under bench/results/ for
flame graphs (e.g. ``flamegraph.pl`` or speedscope.app).
"""

from __future__ import annotations

import argparse
import collections
import linecache
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_mix import RequestFactory, preload, setup_dockyard  # noqa: E402
from lib import calls  # noqa: E402
from lib.calls import MIX, OPS, READS, WRITES  # noqa: E402
from lib.targets import DockyardTarget  # noqa: E402
from lib.wrk import run_wrk_timed, tmp_root  # noqa: E402

# (stage, regex on "function (file:line)") checked from the innermost frame outwards; first hit wins.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("sqlite", re.compile(r"sqlite3|dockyard/state/store\.py")),
    ("orjson", re.compile(r"orjson")),
    ("sigv4", re.compile(r"dockyard/api/sigv4\.py|hashlib|hmac")),
    ("validation", re.compile(r"dockyard/api/(compiled_)?validat|botocore/validate")),
    ("ecs operation", re.compile(r"dockyard/services/")),
    # the HTTP server's frames come before "app glue", which would otherwise take them
    ("http server + event loop", re.compile(r"dockyard/api/http1\.py|httptools|websockets/|asyncio|selectors|"
                                            r"<native>|threading\.py|queue\.py")),
    ("app glue", re.compile(r"dockyard/api/")),
]
_FRAME = re.compile(r"^(.*) \((.*?)(?::(\d+))?\)$")


def source(frame: str) -> str:
    """The source line a leaf frame is on (py-spy gives file:line)."""
    m = _FRAME.match(frame)
    if not m or not m.group(3):
        return ""
    return linecache.getline(m.group(2), int(m.group(3))).strip()


def waiting(frame: str) -> str | None:
    """What a leaf frame waits for, if it waits (only sampled with --idle), else None."""
    src = source(frame)
    if frame == "?":
        return "(native frames only: a thread outside Python, e.g. the commit thread in fsync)"
    if frame.startswith(("EpollSelector.select", "PollSelector.select", "SelectSelector.select")):
        return "(idle: event loop waiting for I/O)"
    if "_q.get(" in src:
        return "(idle: store writer waiting for work)"
    if "COMMIT" in src and "_write_loop" in frame:
        return "sqlite COMMIT of a group (fsync)"
    return None


def short(frame: str, line: bool = False) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    fn, path, lineno = m.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3.11/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{fn} ({path}{':' + lineno if line and lineno else ''})"


def _thread_name(frames: list[str]) -> str:
    t = next((f for f in frames if f.startswith("thread ")), "thread ?")
    _, _, name = t.partition("): ")
    return name or ("other" if t.startswith("thread (") else t)


def analyse(collapsed: Path, top: int) -> str:
    """Stage shares, top self frames and top Dockyard inclusive frames over all threads; then per thread."""
    stacks: list[tuple[str, list[str], int]] = []
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        raw = stack.split(";")
        frames = [f for f in raw if not f.startswith(("process ", "thread "))]
        stacks.append((_thread_name(raw), frames, int(count)))
    total = sum(n for _, _, n in stacks) or 1
    stage: collections.Counter[str] = collections.Counter()
    selfc: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    per_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for thread, frames, n in stacks:
        leaf = frames[-1] if frames else "?"
        per_thread[thread][leaf] += n
        w = waiting(leaf)
        if w is not None:
            stage[w] += n
            continue
        selfc[short(leaf)] += n
        for f in {short(f) for f in frames}:
            if "dockyard/" in f:
                incl[f] += n
        for f in reversed(frames):
            hit = next((s for s, rx in STAGES if rx.search(f)), None)
            if hit:
                stage[hit] += n
                break
        else:
            stage["other"] += n
    out = [f"  samples: {total}", "  by stage (innermost frame that names one):"]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in stage.most_common()]
    out.append(f"  top {top} frames by self time:")
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in selfc.most_common(top)]
    out.append(f"  top {top} Dockyard frames by inclusive time:")
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    for thread, c in sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values())):
        tn = sum(c.values())
        out.append(f"  thread {thread}: {100 * tn / total:.1f}% of samples; top leaf lines:")
        out += [f"    {100 * n / tn:5.1f}%  {short(f, line=True)}  {source(f)[:60]}"
                for f, n in c.most_common(min(top, 8))]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="DescribeTaskDefinition,RegisterTaskDefinition",
                    help=f"comma-separated: operations ({', '.join(MIX)}) or mix / reads / writes")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds sampled (wrk runs 3 s longer)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--native", action="store_true", help="include native frames (uvloop, httptools, SQLite)")
    ap.add_argument("--idle", action="store_true",
                    help="also sample waiting threads (wall-clock view: where a request waits, e.g. "
                         "the writer thread in COMMIT/fsync or on its queue)")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--big", action="store_true", help="preload 1,000 services and 10,000 tasks first")
    ap.add_argument("--gil", action="store_true",
                    help="only samples holding the GIL: the Python CPU work, without native waits")
    a = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    for workload in a.ops.split(","):
        cycle = {"mix": MIX, "reads": READS, "writes": WRITES}.get(workload, [workload])
        work = Path(tempfile.mkdtemp(prefix="dockyard-prof-"))
        reqdir = Path(tempfile.mkdtemp(prefix="dockyard-prof-req-", dir=tmp_root()))
        t = DockyardTarget("dockyard", work / "dy").start()
        try:
            fx = setup_dockyard(t, 2, calls.SETUP_TASKS)
            if a.big:
                preload(t, 1000, 10000)
            if fx.missing & set(cycle):
                print(f"{workload}: not implemented by Dockyard yet: {sorted(fx.missing & set(cycle))}")
                continue
            fac = RequestFactory(t)
            prefix = reqdir / "req"
            wrk_s = a.duration + 3
            fac.write(prefix, cycle, 2, int(25000 * wrk_s))
            tag = ("-big" if a.big else "") + ("-idle" if a.idle else "") + ("-gil" if a.gil else "")
            out = results / f"profile-{workload}{tag}-{time.strftime('%Y%m%d-%H%M%S')}.collapsed"
            cmd = [pyspy, "record", "--pid", str(t.pid), "--duration", str(int(a.duration)), "--rate",
                   str(a.rate), "--format", "raw", "--threads", "--subprocesses", "--output", str(out), "--nonblocking"]
            if a.native:
                cmd.append("--native")
            if a.idle:
                cmd.append("--idle")
            if a.gil:
                cmd.append("--gil")

            def sample(cmd: list[str]) -> None:
                time.sleep(1.5)
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)

            th = threading.Thread(target=sample, args=(cmd,))
            th.start()
            res = run_wrk_timed(t.endpoint + "/", prefix, duration=wrk_s, threads=2, connections=16,
                                check=any(OPS[o].check for o in cycle), server_pid=t.pid)
            th.join()
            print(f"\n== {workload}: {res.rps:.0f} req/s, p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms, "
                  f"server CPU {res.server_cpu_us_per_req:.0f} µs/req, non2xx {res.non2xx}, bad {res.bad}"
                  " (py-spy sampling during the run)")
            if out.exists():
                print(analyse(out, a.top))
                print(f"  collapsed stacks: {out}")
            else:
                print("  py-spy produced no output")
        finally:
            t.stop()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(reqdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
