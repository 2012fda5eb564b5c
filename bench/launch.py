#!/usr/bin/env python
"""RunTask -> RUNNING (seen through DescribeTasks) vs a bare `docker run -d`, in the same run.

    .venv/bin/python bench/launch.py               # 15 rounds
    .venv/bin/python bench/launch.py --rounds 5 --pull-behavior prefer-cached

A real `dockyard server` and a real `dockyard agent` (Docker driver) run as separate
processes, as they would on a host. Each round, in alternating order:

* bare:     wall time of `docker run -d IMAGE sleep 3600` (the CLI returns once the
            container is started), then `docker rm -f`;
* dockyard: RunTask of a task definition with the same image and command, then
            DescribeTasks every 5 ms until lastStatus is RUNNING;
            the time from sending RunTask to the first RUNNING answer. Then the
            container is removed (`docker rm -f`), which the agent reports as an
            essential exit.

The image is the locally built FROM-scratch busybox under 127.0.0.1:5999 (nothing
listens there, so the default pull behaviour's registry check fails fast on loopback,
as it would for an image only in the local cache). Prints min / median / p90 of each and
the ratio of medians; the issue's target is <= 1.3x. A benchmark prints; it does not assert.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from lib.docker_agent import bare_run, shut_down, start_agent, summary, wait_connected  # noqa: E402

from tests.helpers.images import busybox_image  # noqa: E402
from tests.helpers.server import ServerProcess  # noqa: E402

TARGET = 1.3
POLL_SECONDS = 0.005
LABEL = "io.dockyard.bench=launch"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dockyard_run(ecs: Any, cluster: str, td: str) -> float:
    t0 = time.perf_counter()
    resp = ecs.run_task(cluster=cluster, taskDefinition=td, count=1)
    if not resp["tasks"]:
        raise RuntimeError(f"RunTask placed nothing: {resp['failures']}")
    arn = resp["tasks"][0]["taskArn"]
    deadline = t0 + 30
    while True:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == "RUNNING":
            dt = time.perf_counter() - t0
            break
        if task["lastStatus"] == "STOPPED" or time.perf_counter() > deadline:
            raise RuntimeError(f"task did not reach RUNNING: {task.get('stoppedReason')}")
        # A client asking flat out would take a core from the engine it is timing (2 cores here).
        time.sleep(POLL_SECONDS)
    runtime_id = task["containers"][0].get("runtimeId")
    if runtime_id:
        subprocess.run(["docker", "rm", "-f", runtime_id], check=True, capture_output=True)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--pull-behavior", default="default",
                    choices=["default", "always", "once", "prefer-cached"])
    args = ap.parse_args()

    image = busybox_image()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-launch-"))
    server = ServerProcess(data_dir=tmp / "server").start()
    agent = None
    instance = ""
    try:
        ecs = server.client("ecs")
        cluster = "bench"
        ecs.create_cluster(clusterName=cluster)
        agent = start_agent(server, tmp, cluster, args.pull_behavior)
        instance = wait_connected(ecs, cluster)
        td = ecs.register_task_definition(
            family="launch", containerDefinitions=[{"name": "main", "image": image, "essential": True,
                                                    "command": ["sleep", "3600"], "memory": 32}],
        )["taskDefinition"]["taskDefinitionArn"]
        # Warm both paths once (page cache, the agent's first pull check).
        bare_run(image, LABEL)
        dockyard_run(ecs, cluster, td)
        bare: list[float] = []
        dock: list[float] = []
        for i in range(args.rounds):
            order = [("bare", lambda: bare.append(bare_run(image, LABEL))),
                     ("dockyard", lambda: dock.append(dockyard_run(ecs, cluster, td)))]
            if i % 2:
                order.reverse()
            for _, fn in order:
                fn()
                time.sleep(0.2)  # let the engine settle (container removal) before the next start
        b, d = summary(bare), summary(dock)
        ratio = d["median_ms"] / b["median_ms"]
        print(f"launch to RUNNING, {args.rounds} rounds, pull behaviour {args.pull_behavior}")
        print(f"{'':10} {'min ms':>8} {'median':>8} {'p90':>8}")
        print(f"{'bare':10} {b['min_ms']:8.1f} {b['median_ms']:8.1f} {b['p90_ms']:8.1f}")
        print(f"{'dockyard':10} {d['min_ms']:8.1f} {d['median_ms']:8.1f} {d['p90_ms']:8.1f}")
        print(f"ratio dockyard / bare (medians): {ratio:.2f}x  (target <= {TARGET}x: "
              f"{'PASS' if ratio <= TARGET else 'MISS'})")
        out = HERE / "results" / f"launch-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"bare": b, "dockyard": d, "ratio": ratio, "rounds": args.rounds,
                                   "pull_behavior": args.pull_behavior, "bare_s": bare, "dockyard_s": dock},
                                  indent=2))
        return 0
    finally:
        # What this run started: bare containers by our label, the agent's by the cluster label.
        shut_down(agent, server, [LABEL, f"io.dockyard.container-instance={instance}"])


if __name__ == "__main__":
    sys.exit(main())
