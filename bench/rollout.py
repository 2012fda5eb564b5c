#!/usr/bin/env python
"""Service rollouts: the service controller against the same work done by hand through the API.

    .venv/bin/python bench/rollout.py                    # both parts, ~2-3 min on 2 cores
    .venv/bin/python bench/rollout.py --rounds 5 --skip-many
    .venv/bin/python bench/rollout.py --services 300 --skip-rollout

One real `dockyard server` (DOCKYARD_SERVICE_STABLE_SECONDS=0: a RUNNING task without a
health check counts as healthy at once, instead of ECS's 40 s) and, in a second process,
20 real agents on fake runtimes (bench/lib/fake_fleet.py, 16 CPUs / 64 GiB each). The
client is bench/lib/rawclient.py (botocore's signer, orjson), one kept-alive connection
per thread.

Part 1, rollout (from the issue: "a 50-task rolling deployment over 20 fake-runtime
hosts, 100/200: seconds from UpdateService to COMPLETED"). A service of 50 tasks,
deploymentConfiguration minimumHealthyPercent 100 / maximumPercent 200, steady. Each
round: UpdateService to the other task definition revision (roll:1 <-> roll:2) and
DescribeServices every 20 ms until the new deployment is the only one and its
rolloutState is COMPLETED (the clock stops at that poll; the server's own updatedAt of
the COMPLETED deployment is printed beside it). Baseline, the same replacement by hand
on the same fleet and in the same round: 50 standalone tasks of the old revision
(started untimed) are replaced by a client that sends RunTask count=10 five times (at
once, 5 connections), waits until DescribeTasks (every 20 ms) says all 50 are RUNNING,
then sends the 50 StopTask calls (10 connections) and waits until all old tasks are
STOPPED. That is what 100/200 allows a client to do fastest (start everything, then
stop everything), so the ratio is what the controller's step-by-step loop costs over
the bare API calls. Rounds alternate which goes first.

Part 2, controller throughput (from the issue: "events per second the controller
sustains with 1,000 services"). 1,000 services of desiredCount 1 or 2 (1,500 tasks;
task definition 2 CPU units / 16 MiB so the fleet has room for 3 generations at once),
created through the API and waited to COMPLETED (this first rollout is timed too). Then
UpdateService forceNewDeployment=true for all 1,000 from 16 client threads, and the
clock runs from the first UpdateService until the last new deployment is COMPLETED
with its old tasks gone (the server's updatedAt on that deployment; the client only
polls the services not yet done, every 0.5 s, to load the server little). Printed:
service events written per second (events whose createdAt falls after the first
UpdateService, counted from DescribeServices afterwards, newest first) overall and in
the busiest second, deployments completed per second, tasks replaced per second.
Baseline, before the forced deployments and with the services steady: the same number
of task replacements by hand (1,500 standalone tasks started untimed; then RunTask
count=1 or 2, 1,000 calls from 16 threads, wait RUNNING by DescribeClusters counts;
then 1,500 StopTask, wait STOPPED): tasks replaced per second, and the RunTask ->
RUNNING phase alone as "task launches per second". Ratio: controller replacements/s
over hand replacements/s. The forced deployments are paced by the 1,000 UpdateService
calls themselves (they share the server's loop with the controller), so a last phase
gives the controller all its work from one call: with the standalone tasks stopped,
UpdateContainerInstancesState DRAINING on 10 of the 20 instances, until no task is left
on them; printed: events/s and reconciles/s, and the fewest RUNNING tasks of the
50-task 100/200 service 'web' during the drain (minimumHealthyPercent must hold).
Reconciles are counted in the server (bench/lib/counting_server.py wraps
ServiceController to publish ``steps``). --profile runs py-spy on the server during the
forced deployments (raw collapsed stacks in bench/results/).

A benchmark prints; it does not assert. Results also go to bench/results/rollout-*.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from lib.rawclient import RawEcs  # noqa: E402

from tests.helpers.server import ServerProcess  # noqa: E402

IMAGE = "127.0.0.1:5999/bench/app:1"
CLUSTER = "roll"
POLL = 0.02


class CountingServer(ServerProcess):
    """ServerProcess started through bench/lib/counting_server.py (the controller's step counter)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.stats_path = self.data_dir / "controller-stats.json"

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / "lib" / "counting_server.py"), str(self.stats_path), "--", "server",
                "--port", str(self.port), "--data-dir", str(self.data_dir)]

    def stats(self) -> dict[str, Any]:
        """The controller's counters, fresh (waits for the next write, at most 50 ms old)."""
        t = time.time()
        for _ in range(100):
            try:
                d = json.loads(self.stats_path.read_text())
                if d["t"] >= t:
                    return d  # type: ignore[no-any-return]
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        return {"steps": 0, "rounds": 0, "batch_max": 0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def task_definition(family: str, cpu: int, memory: int, tag: str) -> dict[str, Any]:
    return {"family": family, "containerDefinitions": [
        {"name": "app", "image": IMAGE, "essential": True, "cpu": cpu, "memory": memory,
         "command": ["serve", tag]}]}


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        env = {"DOCKYARD_SERVICE_STABLE_SECONDS": "0"}
        self.server = CountingServer(data_dir=tmp / "server", env=env)
        self.fleet: subprocess.Popen[str] | None = None
        self.creds: tuple[str, str] = ("", "")
        self.pools: dict[int, list[RawEcs]] = {}

    # -- plumbing --------------------------------------------------------------
    def start(self) -> None:
        self.server.start()
        self.creds = self.server.credentials()
        self.c = self.client()
        self.c.call("CreateCluster", {"clusterName": CLUSTER})
        for rev in (1, 2):
            self.c.call("RegisterTaskDefinition", task_definition("roll", 16, 32, f"r{rev}"))
            self.c.call("RegisterTaskDefinition", task_definition("many", 2, 16, f"r{rev}"))
        out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir",
                              str(self.server.data_dir), "create", "--user", "fleet"], check=True,
                             capture_output=True, text=True).stdout
        kv = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
        t = time.perf_counter()
        self.fleet = subprocess.Popen([sys.executable, str(HERE / "lib" / "fake_fleet.py"), "--server",
                                       self.server.endpoint, "--cluster", CLUSTER, "--agents", str(self.args.agents),
                                       "--image", IMAGE, "--data-dir", str(self.tmp / "fleet")],
                                      stdout=subprocess.PIPE, stderr=open(self.tmp / "fleet.log", "ab"),  # noqa: SIM115
                                      env={**os.environ, **kv}, text=True)
        assert self.fleet.stdout is not None
        if not self.fleet.stdout.readline().startswith("READY"):
            raise RuntimeError(f"fleet did not start: {(self.tmp / 'fleet.log').read_text()[-2000:]}")
        log(f"server pid {self.server.proc.pid if self.server.proc else '?'}; {self.args.agents} agents up "
            f"in {time.perf_counter() - t:.1f} s")

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.terminate()
            try:
                self.fleet.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.fleet.kill()
        self.server.stop()

    def client(self) -> RawEcs:
        return RawEcs(self.server.endpoint, *self.creds)

    def pool(self, n: int) -> list[RawEcs]:
        if n not in self.pools:
            self.pools[n] = [self.client() for _ in range(n)]
        return self.pools[n]

    def fan(self, threads: int, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send ``calls`` from ``threads`` connections; answers in order."""
        clients = self.pool(threads)
        out: list[dict[str, Any]] = [{}] * len(calls)
        self.answered = [0.0] * len(calls)

        def worker(i: int) -> None:
            c = clients[i]
            for j in range(i, len(calls), threads):
                try:
                    out[j] = c.call(*calls[j])
                except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                    # A kept-alive connection the server closed while idle: reconnect once.
                    c = clients[i] = self.client()
                    out[j] = c.call(*calls[j])
                self.answered[j] = time.time()

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(worker, range(threads)))
        return out

    def describe_services(self, names: list[str], threads: int = 1) -> list[dict[str, Any]]:
        calls = [("DescribeServices", {"cluster": CLUSTER, "services": names[i:i + 10]})
                 for i in range(0, len(names), 10)]
        res = self.fan(threads, calls) if threads > 1 else [self.c.call(*x) for x in calls]
        return [s for r in res for s in r.get("services", [])]

    def describe_tasks(self, arns: list[str]) -> list[dict[str, Any]]:
        out = []
        for i in range(0, len(arns), 100):
            out += self.c.call("DescribeTasks", {"cluster": CLUSTER, "tasks": arns[i:i + 100]})["tasks"]
        return out

    def run_tasks(self, threads: int, td: str, counts: list[int], started_by: str) -> list[str]:
        calls = [("RunTask", {"cluster": CLUSTER, "taskDefinition": td, "count": n, "launchType": "EC2",
                              "startedBy": started_by}) for n in counts]
        arns = []
        for r in self.fan(threads, calls):
            if r.get("failures"):
                log(f"  RunTask failures: {r['failures'][:1]}")
            arns += [t["taskArn"] for t in r.get("tasks", [])]
        return arns

    def wait_tasks(self, arns: list[str], status: str, timeout: float = 120) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(t["lastStatus"] == status for t in self.describe_tasks(arns)):
                return
            time.sleep(POLL)
        raise TimeoutError(f"tasks not {status} after {timeout} s")

    def cluster_counts(self) -> tuple[int, int]:
        c = self.c.call("DescribeClusters", {"clusters": [CLUSTER]})["clusters"][0]
        return c["runningTasksCount"], c["pendingTasksCount"]

    def wait_counts(self, running: int, timeout: float = 180) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            r, p = self.cluster_counts()
            if r == running and p == 0:
                return
            time.sleep(POLL * 5)
        raise TimeoutError(f"cluster not at {running} RUNNING after {timeout} s: {self.cluster_counts()}")

    # -- part 1 ------------------------------------------------------------------
    def service_done(self, name: str, dep_id: str | None) -> dict[str, Any] | None:
        s = self.c.call("DescribeServices", {"cluster": CLUSTER, "services": [name]})["services"][0]
        deps = s["deployments"]
        if (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
                and (dep_id is None or deps[0]["id"] == dep_id) and deps[0]["runningCount"] == s["desiredCount"]):
            return s
        return None

    def wait_service(self, name: str, dep_id: str | None, timeout: float = 120) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            s = self.service_done(name, dep_id)
            if s is not None:
                return s
            time.sleep(POLL)
        raise TimeoutError(f"service {name} not COMPLETED after {timeout} s")

    def check_service(self, name: str, td: str, n: int) -> None:
        """Untimed: the service runs exactly ``n`` tasks, all of ``td`` and RUNNING."""
        arns = self.c.call("ListTasks", {"cluster": CLUSTER, "serviceName": name, "desiredStatus": "RUNNING",
                                          "maxResults": 100})["taskArns"]
        got = Counter((t["taskDefinitionArn"].rsplit("/", 1)[-1], t["lastStatus"]) for t in self.describe_tasks(arns))
        if got != Counter({(td, "RUNNING"): n}):
            log(f"  ! service {name} at COMPLETED runs {dict(got)}, expected {n} x {td} RUNNING")

    def controller_round(self, rev: int) -> dict[str, Any]:
        st0 = self.server.stats()
        t0w, t0 = time.time(), time.perf_counter()
        r = self.c.call("UpdateService", {"cluster": CLUSTER, "service": "web", "taskDefinition": f"roll:{rev}"})
        dep_id = r["service"]["deployments"][0]["id"]
        s = self.wait_service("web", dep_id)
        t1 = time.perf_counter()
        dep = s["deployments"][0]
        self.check_service("web", f"roll:{rev}", self.args.tasks)
        events = [e for e in s["events"] if e["createdAt"] >= t0w]
        steps = self.server.stats()["steps"] - st0["steps"]
        return {"seconds": t1 - t0, "server_seconds": dep["updatedAt"] - t0w, "events": len(events), "steps": steps}

    def hand_round(self, old: list[str], rev: int) -> tuple[dict[str, Any], list[str]]:
        t0 = time.perf_counter()
        new = self.run_tasks(5, f"roll:{rev}", [10] * (self.args.tasks // 10), "hand")
        self.wait_tasks(new, "RUNNING")
        t_run = time.perf_counter()
        self.fan(10, [("StopTask", {"cluster": CLUSTER, "task": a, "reason": "replaced by hand"}) for a in old])
        self.wait_tasks(old, "STOPPED")
        t1 = time.perf_counter()
        return {"seconds": t1 - t0, "run_seconds": t_run - t0}, new

    def part1(self) -> dict[str, Any]:
        a = self.args
        log(f"part 1: service 'web' of {a.tasks} tasks, 100/200; {a.tasks} standalone tasks for the hand baseline")
        t = time.perf_counter()
        r = self.c.call("CreateService", {"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "roll:1",
                                          "desiredCount": a.tasks, "launchType": "EC2",
                                          "deploymentConfiguration": {"minimumHealthyPercent": 100,
                                                                      "maximumPercent": 200}})
        self.wait_service("web", r["service"]["deployments"][0]["id"])
        log(f"  service steady after {time.perf_counter() - t:.2f} s (first deployment)")
        hand = self.run_tasks(5, "roll:1", [10] * (a.tasks // 10), "hand")
        self.wait_tasks(hand, "RUNNING")
        self.standalone = hand
        ctl, byhand = [], []
        for i in range(a.rounds):
            rev = 2 if i % 2 == 0 else 1
            order = ("ctl", "hand") if i % 2 == 0 else ("hand", "ctl")
            for which in order:
                if which == "ctl":
                    x = self.controller_round(rev)
                    ctl.append(x)
                else:
                    x, hand = self.hand_round(hand, rev)
                    self.standalone = hand
                    byhand.append(x)
                log(f"  round {i + 1} {which:4s} -> roll:{rev}: {x['seconds']:.2f} s "
                    + (f"(server COMPLETED at +{x['server_seconds']:.2f} s, {x['events']} events, "
                       f"{x['steps']} steps)" if which == "ctl"
                       else f"(all new RUNNING after {x['run_seconds']:.2f} s)"))
        return {"controller": ctl, "hand": byhand}

    # -- part 2 ------------------------------------------------------------------
    def sweep(self, names: list[str], want: dict[str, str] | None, done: dict[str, dict[str, Any]]) -> None:
        """Describe the services not yet done; record those whose (wanted) deployment is COMPLETED alone."""
        todo = [n for n in names if n not in done]
        for s in self.describe_services(todo, threads=4):
            deps = s["deployments"]
            if (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
                    and (want is None or deps[0]["id"] == want[s["serviceName"]])):
                done[s["serviceName"]] = deps[0]

    def wait_all(self, names: list[str], want: dict[str, str] | None, timeout: float) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline = time.perf_counter() + timeout
        while len(done) < len(names) and time.perf_counter() < deadline:
            time.sleep(0.5)
            self.sweep(names, want, done)
        if len(done) < len(names):
            log(f"  only {len(done)}/{len(names)} COMPLETED after {timeout} s")
        return done

    def part2(self) -> dict[str, Any]:
        a = self.args
        n = a.services
        names = [f"s{i:04d}" for i in range(n)]
        desired = {nm: 1 + i % 2 for i, nm in enumerate(names)}
        total = sum(desired.values())
        log(f"part 2: {n} services, {total} tasks")
        t0w, t0 = time.time(), time.perf_counter()
        res = self.fan(a.threads, [("CreateService", {
            "cluster": CLUSTER, "serviceName": nm, "taskDefinition": "many:1", "desiredCount": desired[nm],
            "launchType": "EC2", "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200}})
            for nm in names])
        t_created = time.perf_counter()
        want = {r["service"]["serviceName"]: r["service"]["deployments"][0]["id"] for r in res}
        done = self.wait_all(names, want, 240)
        create = {"create_calls_seconds": t_created - t0,
                  "seconds": max(d["updatedAt"] for d in done.values()) - t0w if done else None,
                  "completed": len(done)}
        log(f"  CreateService x{n}: {create['create_calls_seconds']:.2f} s; all COMPLETED "
            f"{create['seconds']:.2f} s after the first")

        # Baseline: the same replacements by hand, services steady.
        old = self.run_tasks(a.threads, "many:1", [min(10, total - i) for i in range(0, total, 10)], "hand-old")
        self.wait_tasks(old, "RUNNING")
        r0, _ = self.cluster_counts()
        log(f"  {len(old)} standalone old tasks RUNNING; cluster runs {r0}")
        t0 = time.perf_counter()
        new = self.run_tasks(a.threads, "many:2", [desired[nm] for nm in names], "hand-new")
        self.wait_counts(r0 + len(new))
        t_run = time.perf_counter()
        self.fan(a.threads, [("StopTask", {"cluster": CLUSTER, "task": x, "reason": "replaced by hand"}) for x in old])
        self.wait_counts(r0 + len(new) - len(old))
        t1 = time.perf_counter()
        hand = {"tasks": len(new), "seconds": t1 - t0, "run_seconds": t_run - t0,
                "replaced_per_s": len(new) / (t1 - t0), "launches_per_s": len(new) / (t_run - t0)}
        log(f"  by hand: {len(new)} RunTask'd RUNNING in {hand['run_seconds']:.2f} s, "
            f"{len(old)} old STOPPED at {hand['seconds']:.2f} s")

        # The controller: forceNewDeployment for every service at once.
        prof = None
        if a.profile:
            prof_out = HERE / "results" / f"rollout-profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
            prof_out.parent.mkdir(exist_ok=True)
            assert self.server.proc is not None
            pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            prof = subprocess.Popen([pyspy, "record", "--pid", str(self.server.proc.pid), "--format", "raw",
                                     "--rate", "200", "--threads", "-o", str(prof_out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            log(f"  py-spy recording into {prof_out}")
        st0 = self.server.stats()
        t0w, t0 = time.time(), time.perf_counter()
        res = self.fan(a.threads, [("UpdateService", {"cluster": CLUSTER, "service": nm, "forceNewDeployment": True})
                                   for nm in names])
        t_upd = time.perf_counter()
        answered = dict(zip(names, self.answered, strict=True))
        want = {r["service"]["serviceName"]: r["service"]["deployments"][0]["id"] for r in res}
        done = self.wait_all(names, want, 300)
        t_seen = time.perf_counter()
        if prof is not None:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=60)
        st1 = self.server.stats()
        lags = sorted(d["updatedAt"] - answered[nm] for nm, d in done.items())
        ends = sorted(d["updatedAt"] - t0w for d in done.values())
        # Events: every event written after the first UpdateService (newest first in each service).
        stamps: list[float] = []
        for s in self.describe_services(names, threads=4):
            for e in s["events"]:
                if e["createdAt"] < t0w:
                    break
                stamps.append(e["createdAt"] - t0w)
        span = max(ends) if ends else t_seen - t0
        per_sec = Counter(int(x) for x in stamps)
        ctl = {"services": n, "tasks": total, "update_calls_seconds": t_upd - t0, "seconds": span,
               "seen_seconds": t_seen - t0, "completed": len(done), "events": len(stamps),
               "events_per_s": len(stamps) / span, "events_peak_per_s": max(per_sec.values()) if per_sec else 0,
               "events_per_s_timeline": [per_sec.get(i, 0) for i in range(int(span) + 1)],
               "deployments_per_s": len(done) / span, "replaced_per_s": total / span,
               "half_done_seconds": ends[len(ends) // 2] if ends else None,
               "steps": st1["steps"] - st0["steps"], "rounds": st1["rounds"] - st0["rounds"],
               "batch_max": st1["batch_max"],
               "lag_p50": lags[len(lags) // 2] if lags else None,
               "lag_p99": lags[int(len(lags) * 0.99)] if lags else None,
               "lag_max": lags[-1] if lags else None}
        drain = self.drain(names, total, hand_new=new) if a.drain else None
        return {"create": create, "hand": hand, "controller": ctl, "drain": drain}

    def drain(self, names: list[str], total: int, hand_new: list[str]) -> dict[str, Any]:
        """All services at once from one call: half the instances DRAINING; their service tasks move."""
        # Only service tasks leave a DRAINING instance: stop the standalone ones first.
        standalone = hand_new + getattr(self, "standalone", [])
        self.fan(self.args.threads, [("StopTask", {"cluster": CLUSTER, "task": x}) for x in standalone])
        self.wait_tasks(standalone, "STOPPED")
        insts = sorted(self.c.call("ListContainerInstances", {"cluster": CLUSTER})["containerInstanceArns"])
        half = insts[:len(insts) // 2][:10]
        web_before = self.c.call("ListTasks", {"cluster": CLUSTER, "serviceName": "web"})["taskArns"]
        st0 = self.server.stats()
        t0w, t0 = time.time(), time.perf_counter()
        expect, _ = self.cluster_counts()
        self.c.call("UpdateContainerInstancesState", {"cluster": CLUSTER, "containerInstances": half,
                                                      "status": "DRAINING"})
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            time.sleep(0.25)
            ci = self.c.call("DescribeContainerInstances", {"cluster": CLUSTER, "containerInstances": half})
            left = sum(x["runningTasksCount"] + x["pendingTasksCount"] for x in ci["containerInstances"])
            r, p = self.cluster_counts()
            if left == 0 and p == 0 and r >= expect:
                break
        else:
            log(f"  drain not done after 60 s: {left} tasks left on the drained instances, {r}/{expect} RUNNING")
            stuck = []
            for inst in half:
                stuck += self.c.call("ListTasks", {"cluster": CLUSTER, "containerInstance": inst})["taskArns"]
            got = Counter((t["group"], t["desiredStatus"], t["lastStatus"]) for t in self.describe_tasks(stuck))
            log(f"  left on drained instances (group, desired, last): {dict(got)}")
        t_seen = time.perf_counter()
        st1 = self.server.stats()
        stamps, steady = [], 0
        for s in self.describe_services(names + ["web"], threads=4):
            for e in s["events"]:
                if e["createdAt"] < t0w:
                    break
                stamps.append(e["createdAt"] - t0w)
                steady += e["message"].endswith("has reached a steady state.")
        span = max(stamps) if stamps else t_seen - t0
        per_sec = Counter(int(x) for x in stamps)
        # minimumHealthyPercent 100 on 'web' (50 tasks): the fewest of its tasks RUNNING at any moment.
        arns = web_before + self.c.call("ListTasks", {"cluster": CLUSTER, "serviceName": "web"})["taskArns"]
        ts = self.describe_tasks(sorted(set(arns)))
        iv = [(t["startedAt"], t.get("stoppingAt") or t.get("stoppedAt") or 1e18) for t in ts if "startedAt" in t]
        points = sorted({x for a_, b_ in iv for x in (a_, b_) if t0w <= x < 1e18})
        if os.environ.get("ROLLOUT_DEBUG"):
            for t in sorted(ts, key=lambda t: t.get("startedAt", 0)):
                log(f"    web {t['taskArn'][-6:]} on_drained={t.get('containerInstanceArn') in half} "
                    f"start={t.get('startedAt', 0) - t0w:+.3f} stopping={(t.get('stoppingAt') or 0) - t0w:+.3f} "
                    f"{t['lastStatus']}")
        web_min = min((sum(a_ <= x < b_ for a_, b_ in iv) for x in points), default=None)
        out = {"instances": len(half), "seconds": span, "seen_seconds": t_seen - t0, "events": len(stamps),
               "events_per_s": len(stamps) / span if span else 0, "events_peak_per_s": max(per_sec.values(), default=0),
               "steady_events": steady, "steps": st1["steps"] - st0["steps"], "rounds": st1["rounds"] - st0["rounds"],
               "web_min_running": web_min}
        log(f"  drain: {out}")
        self.c.call("UpdateContainerInstancesState", {"cluster": CLUSTER, "containerInstances": half,
                                                      "status": "ACTIVE"})
        return out


def summary(xs: list[float]) -> str:
    return f"min {min(xs):.2f} / median {statistics.median(xs):.2f} / max {max(xs):.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=50, help="part 1: tasks of the service (a multiple of 10)")
    ap.add_argument("--rounds", type=int, default=10, help="part 1: rounds (each: one controller, one hand rollout)")
    ap.add_argument("--services", type=int, default=1000, help="part 2: services")
    ap.add_argument("--threads", type=int, default=16, help="part 2: client threads")
    ap.add_argument("--skip-rollout", action="store_true")
    ap.add_argument("--skip-many", action="store_true")
    ap.add_argument("--no-drain", dest="drain", action="store_false",
                    help="part 2: skip the drain phase (half the instances DRAINING at once)")
    ap.add_argument("--profile", action="store_true",
                    help="part 2: py-spy record on the server during the forced deployments (bench/results/)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-rollout-"))
    b = Bench(args, tmp)
    p1 = p2 = None
    try:
        b.start()
        if not args.skip_rollout:
            p1 = b.part1()
        if not args.skip_many:
            p2 = b.part2()
    finally:
        b.stop()
    if p1:
        c = [x["seconds"] for x in p1["controller"]]
        h = [x["seconds"] for x in p1["hand"]]
        print(f"Part 1: rolling deployment of {args.tasks} tasks over {args.agents} fake hosts, 100/200, "
              f"{args.rounds} rounds")
        print(f"  controller, UpdateService -> COMPLETED (polled every {POLL * 1000:.0f} ms): {summary(c)}")
        print(f"     server-side COMPLETED at: {summary([x['server_seconds'] for x in p1['controller']])}")
        print(f"  by hand, RunTask x{args.tasks // 10} -> RUNNING, StopTask x{args.tasks} -> STOPPED: {summary(h)}")
        ratios = [x / y for x, y in zip(c, h, strict=True)]
        print(f"  ratio controller / hand (medians): {statistics.median(c) / statistics.median(h):.2f}x "
              f"(per round {min(ratios):.2f}-{max(ratios):.2f}x)")
    if p2:
        cr, hd, ct = p2["create"], p2["hand"], p2["controller"]
        print(f"Part 2: {ct['services']} services, {ct['tasks']} tasks, {args.agents} fake hosts")
        print(f"  first deployments (CreateService x{ct['services']}): all COMPLETED after {cr['seconds']:.2f} s "
              f"({ct['tasks'] / cr['seconds']:.0f} tasks/s)")
        print(f"  forceNewDeployment x{ct['services']} (calls took {ct['update_calls_seconds']:.2f} s): "
              f"{ct['completed']} COMPLETED after {ct['seconds']:.2f} s (half at {ct['half_done_seconds']:.2f} s)")
        print(f"    service events: {ct['events']} = {ct['events_per_s']:.0f} events/s "
              f"(busiest second {ct['events_peak_per_s']})")
        print(f"    controller: {ct['steps']} reconciles ({ct['steps'] / ct['services']:.1f} per deployment) "
              f"in {ct['rounds']} rounds (largest batch so far {ct['batch_max']}), "
              f"{ct['steps'] / ct['seconds']:.0f} reconciles/s")
        print(f"    from each UpdateService answer to that deployment COMPLETED: p50 {ct['lag_p50']:.2f} s, "
              f"p99 {ct['lag_p99']:.2f} s, max {ct['lag_max']:.2f} s")
        print(f"    deployments COMPLETED: {ct['deployments_per_s']:.0f}/s; "
              f"tasks replaced: {ct['replaced_per_s']:.0f}/s")
        print(f"  by hand: {hd['tasks']} tasks replaced in {hd['seconds']:.2f} s = {hd['replaced_per_s']:.0f}/s "
              f"(RunTask -> RUNNING alone: {hd['launches_per_s']:.0f} tasks/s)")
        ratio = ct["replaced_per_s"] / hd["replaced_per_s"]
        print(f"  ratio controller / hand, tasks replaced per second: {ratio:.2f}x")
        dr = p2.get("drain")
        if dr:
            print(f"  drain {dr['instances']} of {args.agents} instances (one call; every service at once): "
                  f"last event at {dr['seconds']:.2f} s")
            print(f"    service events: {dr['events']} = {dr['events_per_s']:.0f} events/s "
                  f"(busiest second {dr['events_peak_per_s']}; {dr['steady_events']} 'steady state')")
            print(f"    controller: {dr['steps']} reconciles in {dr['rounds']} rounds, "
                  f"{dr['steps'] / dr['seconds']:.0f} reconciles/s")
            print(f"    'web' (50 tasks, minimumHealthyPercent 100): fewest RUNNING during the drain "
                  f"{dr['web_min_running']} (should be >= 50)")
    out = HERE / "results" / f"rollout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rollout": p1, "many": p2, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
