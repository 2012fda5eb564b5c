#!/usr/bin/env python
"""Service self-healing: a killed task's replacement RUNNING vs a bare `docker run -d` and
the engine's own `--restart=always`, in the same run.

    .venv/bin/python bench/heal.py                # 10 rounds
    .venv/bin/python bench/heal.py --rounds 5 --pull-behavior prefer-cached

A real `dockyard server` (with DOCKYARD_SERVICE_STABLE_SECONDS=0) and a real `dockyard agent`
(Docker driver) run as separate processes, as they would on a host. The image is the locally
built FROM-scratch busybox under 127.0.0.1:5999 (nothing listens there, so the default pull
behaviour's registry check fails fast on loopback, as in bench/launch.py). One ECS service of
desiredCount 1 runs the busybox image with `sleep 3600`. Each round, in rotating order:

* heal:     `docker kill` (the engine's API) of the service's container, then ListTasks /
            DescribeTasks every 5 ms until a *new* task of the service is RUNNING: the time
            from the kill to the first RUNNING answer. The agent has to see the exit, report
            the task STOPPED, the service controller to start a replacement, the agent to
            create and start its container and report it RUNNING;
* bare:     wall time of `docker run -d IMAGE sleep 3600` (the CLI returns once the
            container is started), then `docker rm -f` (as bench/launch.py);
* restart:  a fresh `docker run -d --restart=always` container whose process is then
            SIGKILLed from the host (a `docker kill` counts as a manual stop, which the engine
            does not restart); the time until the engine reports it running again (inspect
            through the engine's API every 5 ms). The engine waits 100 ms before the first
            restart of a container (restartmanager's back-off floor), so this is >= 100 ms.

Polling sleeps 5 ms between requests: a client asking flat out would take a core from the
engine it is timing (2 cores here). Prints min / median / p90 of each and the ratio of the
heal median to the bare one; the target is <= 1.5x and < 1 s. A benchmark prints; it does
not assert. Every container it created is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
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

TARGET_RATIO = 1.5
TARGET_SECONDS = 1.0
POLL_SECONDS = 0.005
LABEL = "io.dockyard.bench=heal"
SERVICE = "heal"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the engine's API over its socket (a CLI call costs ~30 ms; this ~1 ms) ----------------------

class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Engine:
    def __init__(self) -> None:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            raise SystemExit(f"bench/heal.py talks to the engine over a unix socket; DOCKER_HOST={host}")
        self.conn = _UnixHTTP(host.removeprefix("unix://"))

    def _call(self, method: str, path: str) -> Any:
        self.conn.request(method, path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {body[:300]!r}")
        return json.loads(body) if body else None

    def inspect(self, cid: str) -> dict[str, Any]:
        return self._call("GET", f"/containers/{cid}/json")

    def kill(self, cid: str) -> None:
        self._call("POST", f"/containers/{cid}/kill?signal=KILL")


# -- the processes ----------------------------------------------------------------------------------

def running_task(ecs: Any, cluster: str, timeout: float = 30.0) -> dict[str, Any]:
    """The service's one task, once it is RUNNING and alone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arns = ecs.list_tasks(cluster=cluster, serviceName=SERVICE, desiredStatus="RUNNING")["taskArns"]
        if len(arns) == 1:
            t = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"][0]
            if t["lastStatus"] == "RUNNING":
                return t
        time.sleep(0.05)
    raise RuntimeError("the service did not settle on one RUNNING task")


# -- the three measurements ----------------------------------------------------------------------

SPLITS: list[tuple[float, float, float]] = []  # per heal: kill->old STOPPED, ->new created, ->new started


def heal(ecs: Any, engine: Engine, cluster: str) -> float:
    old = running_task(ecs, cluster)
    cid = old["containers"][0]["runtimeId"]
    wall0 = time.time()
    t0 = time.perf_counter()
    engine.kill(cid)
    deadline = t0 + 30
    new_arn = None
    while True:
        if new_arn is None:
            arns = ecs.list_tasks(cluster=cluster, serviceName=SERVICE, desiredStatus="RUNNING")["taskArns"]
            fresh = [a for a in arns if a != old["taskArn"]]
            new_arn = fresh[0] if fresh else None
        if new_arn is not None:
            task = ecs.describe_tasks(cluster=cluster, tasks=[new_arn])["tasks"][0]
            if task["lastStatus"] == "RUNNING":
                dt = time.perf_counter() - t0
                gone = ecs.describe_tasks(cluster=cluster, tasks=[old["taskArn"]])["tasks"][0]
                SPLITS.append((gone["stoppedAt"].timestamp() - wall0, task["createdAt"].timestamp() - wall0,
                               task["startedAt"].timestamp() - wall0))
                return dt
            if task["lastStatus"] == "STOPPED":
                raise RuntimeError(f"the replacement stopped: {task.get('stoppedReason')}")
        if time.perf_counter() > deadline:
            raise RuntimeError("no replacement task reached RUNNING within 30 s")
        time.sleep(POLL_SECONDS)


def restart(engine: Engine, image: str) -> float:
    cid = subprocess.run(["docker", "run", "-d", "--restart=always", "--label", LABEL, image, "sleep", "3600"],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        time.sleep(0.2)
        st = engine.inspect(cid)["State"]
        started, pid = st["StartedAt"], st["Pid"]
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        deadline = t0 + 30
        while True:
            st = engine.inspect(cid)["State"]
            if st["Running"] and st["StartedAt"] != started:
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the engine did not restart {cid[:12]}: {st}")
            time.sleep(POLL_SECONDS)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pull-behavior", default="default",
                    choices=["default", "always", "once", "prefer-cached"])
    args = ap.parse_args()

    image = busybox_image()
    engine = Engine()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-heal-"))
    server = ServerProcess(data_dir=tmp / "server", env={"DOCKYARD_SERVICE_STABLE_SECONDS": "0"}).start()
    agent = None
    instance = ""
    started = time.monotonic()
    ok_run = False
    try:
        ecs = server.client("ecs")
        cluster = "bench"
        ecs.create_cluster(clusterName=cluster)
        agent = start_agent(server, tmp, cluster, args.pull_behavior)
        instance = wait_connected(ecs, cluster)
        td = ecs.register_task_definition(
            family="heal", containerDefinitions=[{"name": "main", "image": image, "essential": True,
                                                  "command": ["sleep", "3600"], "memory": 32}],
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=cluster, serviceName=SERVICE, taskDefinition=td, desiredCount=1,
                           launchType="EC2")
        running_task(ecs, cluster)
        # Warm every path once (page cache, the agent's first pull check, the engine).
        bare_run(image, LABEL)
        restart(engine, image)
        heal(ecs, engine, cluster)
        results: dict[str, list[float]] = {"heal": [], "bare": [], "restart": []}
        runs = {"heal": lambda: heal(ecs, engine, cluster), "bare": lambda: bare_run(image, LABEL),
                "restart": lambda: restart(engine, image)}
        names = list(runs)
        for i in range(args.rounds):
            order = names[i % 3:] + names[:i % 3]
            if (i // 3) % 2:
                order.reverse()
            for name in order:
                results[name].append(runs[name]())
                time.sleep(0.2)  # let the engine settle (container removal, the stopped task) first
        s = {k: summary(v) for k, v in results.items()}
        ratio = s["heal"]["median_ms"] / s["bare"]["median_ms"]
        print(f"kill to replacement RUNNING, {args.rounds} rounds, pull behaviour {args.pull_behavior} "
              f"({time.monotonic() - started:.0f} s)")
        print(f"{'':10} {'min ms':>8} {'median':>8} {'p90':>8}")
        for k in ("heal", "bare", "restart"):
            print(f"{k:10} {s[k]['min_ms']:8.1f} {s[k]['median_ms']:8.1f} {s[k]['p90_ms']:8.1f}")
        w = len(SPLITS) - args.rounds  # the warm-up's split is not counted
        sp = [statistics.median(x[i] for x in SPLITS[w:]) * 1e3 for i in range(3)]
        print(f"heal, medians from the kill (server clock): old task STOPPED {sp[0]:.0f} ms, replacement "
              f"created {sp[1]:.0f} ms, replacement startedAt {sp[2]:.0f} ms")
        ok = ratio <= TARGET_RATIO and s["heal"]["median_ms"] < TARGET_SECONDS * 1e3
        print(f"ratio heal / bare (medians): {ratio:.2f}x; heal / restart: "
              f"{s['heal']['median_ms'] / s['restart']['median_ms']:.2f}x  "
              f"(target <= {TARGET_RATIO}x and < {TARGET_SECONDS:.0f} s: {'PASS' if ok else 'MISS'})")
        out = HERE / "results" / f"heal-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({**s, "ratio": ratio, "rounds": args.rounds,
                                   "pull_behavior": args.pull_behavior, "heal_splits_s": SPLITS[-args.rounds:],
                                   **{f"{k}_s": v for k, v in results.items()}}, indent=2))
        ok_run = True
        return 0
    finally:
        # What this run started: bare and restart containers by our label, the agent's by its instance.
        shut_down(agent, server, [LABEL, f"io.dockyard.container-instance={instance}"])
        if ok_run:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs kept in {tmp}")


if __name__ == "__main__":
    sys.exit(main())
