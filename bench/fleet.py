#!/usr/bin/env python
"""End-to-end RunTask throughput with 200 fake-runtime agents, and moto's RunTask in the same run.

    .venv/bin/python bench/fleet.py                  # 200 agents, 8,000 tasks, 16 client threads
    .venv/bin/python bench/fleet.py --agents 50 --tasks 1000

Dockyard: a real `dockyard server` and, in a second process, 200 real agents (the
agent channel, the task engine) on fake runtimes (bench/lib/fake_fleet.py). Client
threads (bench/lib/rawclient.py: botocore's signer, no boto3 response parsing, which
would take a core from the system under test) send RunTask (count 10) as fast as they
are answered; the clock runs from the
first RunTask until DescribeClusters reports every task RUNNING, i.e. each task has been
placed, pushed to its agent, started on the (fake) host and reported back durably.
Baseline: moto_server answering the same RunTask calls on as many container instances
(moto marks tasks RUNNING in the RunTask answer itself; no agent is involved).
Target from the issue: >= 1,000 tasks/s from RunTask to RUNNING. A benchmark prints; it
does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from lib.calls import Fixtures, register_moto_instances  # noqa: E402
from lib.rawclient import RawEcs  # noqa: E402
from lib.targets import MotoTarget  # noqa: E402

from tests.helpers.server import ServerProcess  # noqa: E402

TARGET_TASKS_PER_S = 1000.0
IMAGE = "127.0.0.1:5999/bench/app:1"
FAMILY = "fleet"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def task_definition() -> dict[str, Any]:
    return {"family": FAMILY, "containerDefinitions": [
        {"name": "app", "image": IMAGE, "essential": True, "cpu": 16, "memory": 32, "command": ["serve"]}]}


def fire(client_factory: Any, cluster: str, total: int, threads: int) -> tuple[float, int]:
    """RunTask count=10 from ``threads`` clients until ``total`` tasks are placed; (start time, placed)."""
    calls = total // 10
    clients = [client_factory() for _ in range(threads)]

    def worker(i: int) -> int:
        n = 0
        c = clients[i]
        for _ in range(i, calls, threads):
            r = c.run_task(cluster=cluster, taskDefinition=f"{FAMILY}:1", count=10, launchType="EC2")
            n += len(r["tasks"])
            if r.get("failures"):
                log(f"  failures: {r['failures'][:1]}")
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        placed = sum(ex.map(worker, range(threads)))
    return t0, placed


def dockyard_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = ServerProcess(data_dir=tmp / "server").start()
    fleet = None
    try:
        ecs = server.client("ecs")
        ecs.create_cluster(clusterName="fleet")
        ecs.register_task_definition(**task_definition())
        out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir",
                              str(server.data_dir), "create", "--user", "fleet"], check=True,
                             capture_output=True, text=True).stdout
        kv = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
        env = {**os.environ, **kv}
        fleet = subprocess.Popen([sys.executable, str(HERE / "lib" / "fake_fleet.py"), "--server", server.endpoint,
                                  "--cluster", "fleet", "--agents", str(args.agents), "--image", IMAGE,
                                  "--data-dir", str(tmp / "fleet")],
                                 stdout=subprocess.PIPE, stderr=open(tmp / "fleet.log", "ab"),  # noqa: SIM115
                                 env=env, text=True)
        assert fleet.stdout is not None
        t_up = time.perf_counter()
        line = fleet.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"fleet did not start: {(tmp / 'fleet.log').read_text()[-2000:]}")
        log(f"  {args.agents} agents registered and connected in {time.perf_counter() - t_up:.1f} s")
        t0, placed = fire(lambda: RawEcs(server.endpoint, *server.credentials()), "fleet", args.tasks, args.threads)
        t_placed = time.perf_counter()
        deadline = time.perf_counter() + 120
        running = 0
        while time.perf_counter() < deadline:
            c = ecs.describe_clusters(clusters=["fleet"])["clusters"][0]
            running = c["runningTasksCount"]
            if running >= placed:
                break
            time.sleep(0.02)
        t1 = time.perf_counter()
        return {"placed": placed, "running": running, "seconds": t1 - t0, "placing_seconds": t_placed - t0,
                "tasks_per_s": running / (t1 - t0)}
    finally:
        if fleet is not None:
            fleet.terminate()
            try:
                fleet.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fleet.kill()
        server.stop()


def moto_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    moto = MotoTarget("moto", tmp / "moto").start()
    try:
        c = moto.client("ecs")
        fx = Fixtures(c, "moto", log)
        c.create_cluster(clusterName="fleet")
        c.register_task_definition(**task_definition())
        # moto's instances are 4096 CPU / 7482 MiB: enough of them for every task.
        register_moto_instances(fx, moto.endpoint, max(args.agents, args.tasks // 200 + 1), cluster="fleet")
        t0, placed = fire(lambda: RawEcs(moto.endpoint, "testing", "testing"), "fleet", args.tasks, args.threads)
        t1 = time.perf_counter()
        return {"placed": placed, "seconds": t1 - t0, "tasks_per_s": placed / (t1 - t0)}
    finally:
        moto.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--no-moto", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-fleet-"))
    log("dockyard ...")
    d = dockyard_run(args, tmp)
    m = None if args.no_moto else (log("moto ...") or moto_run(args, tmp))
    print(f"RunTask -> RUNNING with {args.agents} fake-runtime agents, {args.tasks} tasks, {args.threads} clients")
    print(f"  dockyard: {d['running']}/{d['placed']} RUNNING in {d['seconds']:.2f} s "
          f"(RunTask calls done after {d['placing_seconds']:.2f} s): {d['tasks_per_s']:.0f} tasks/s "
          f"(target >= {TARGET_TASKS_PER_S:.0f}: {'PASS' if d['tasks_per_s'] >= TARGET_TASKS_PER_S else 'MISS'})")
    if m:
        print(f"  moto (state only, no agents): {m['placed']} tasks in {m['seconds']:.2f} s: "
              f"{m['tasks_per_s']:.0f} tasks/s")
        print(f"  ratio dockyard end-to-end / moto RunTask: {d['tasks_per_s'] / m['tasks_per_s']:.1f}x")
    out = HERE / "results" / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"dockyard": d, "moto": m, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
