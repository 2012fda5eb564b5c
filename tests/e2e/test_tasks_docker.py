"""Tasks end to end on a real Docker engine: a `dockyard server` process and a `dockyard agent`
process with the Docker driver, driven through boto3.

Everything runs the locally built busybox image (tests/helpers/images.py); nothing is pulled
(``--pull-behavior prefer-cached``) and published ports are bound to 127.0.0.1. One server and
one agent serve the whole module; the last two tests kill -9 / restart the agent and restart
the server, so they run last. Every container the agent created (label
``io.dockyard.container-instance=<instance ARN>``) is removed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard.agent import protocol
from dockyard.agent.protocol import LABEL_INSTANCE, LABEL_TASK_ARN
from tests.helpers.images import busybox_image
from tests.helpers.server import ServerProcess
from tests.helpers.wait import wait_until as _wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

HEARTBEAT = 1.0  # the server's silence limit is 3 x this


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False).stdout


def wait_until(fn, timeout=20.0, what="condition", interval=0.1):
    return _wait_until(fn, timeout, what, interval)

def inspect(cid: str) -> dict[str, Any]:
    out = _docker("inspect", cid)
    return json.loads(out)[0] if out.strip() else {}


def _parse_time(s: str) -> datetime:
    """Docker's RFC 3339 times with nanoseconds, e.g. 2026-11-23T14:54:02.123456789Z (or +00:00)."""
    s = s.replace("Z", "+00:00")
    main, _, rest = s.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    tz = rest[len(digits):] or "+00:00"
    return datetime.fromisoformat(f"{main}.{(digits + '000000')[:6]}{tz}")


def started_at(cid: str) -> datetime:
    return _parse_time(inspect(cid)["State"]["StartedAt"])


class Env:
    """The module's server, its agent process, a cluster."""

    def __init__(self, image: str) -> None:
        self.image = image
        self._tmp = tempfile.TemporaryDirectory(prefix="dockyard-tasks-docker-")
        root = Path(self._tmp.name)
        self.server = ServerProcess(data_dir=root / "server", env={protocol.HEARTBEAT_ENV: str(HEARTBEAT)}).start()
        self.ecs = self.server.client("ecs")
        self.cluster = "docker-" + uuid.uuid4().hex[:8]
        self.ecs.create_cluster(clusterName=self.cluster)
        out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir",
                              str(self.server.data_dir), "create", "--user", "agent"],
                             capture_output=True, text=True, check=True).stdout
        kv = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
        self.key, self.secret = kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]
        self.agent_dir = root / "agent"
        self.agent_log = root / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.instance_arn: str | None = None

    # -- the agent process ----------------------------------------------------------------------

    def start_agent(self) -> str:
        cmd = [sys.executable, "-m", "dockyard.cli.main", "agent", "--server", self.server.endpoint,
               "--cluster", self.cluster, "--data-dir", str(self.agent_dir), "--driver", "docker",
               "--bind-ip", "127.0.0.1", "--pull-behavior", "prefer-cached"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_PROFILE", "AWS_SHARED"))}
        env.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret, AWS_EC2_METADATA_DISABLED="true",
                   **{protocol.HEARTBEAT_ENV: str(HEARTBEAT)})
        with open(self.agent_log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.instance_arn = wait_until(self._connected_instance, timeout=30, what="the agent to connect")
        return self.instance_arn

    def _connected_instance(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({self.proc.returncode}):\n{self.log()}")
        arns = self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]
        if len(arns) == 1 and self.instance(arns[0])["agentConnected"]:
            return arns[0]
        return None

    def kill9_agent(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop_agent(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.agent_log.read_text(errors="replace")[-6000:] if self.agent_log.exists() else ""

    # -- the API ----------------------------------------------------------------------------------

    def instance(self, arn: str | None = None) -> dict[str, Any]:
        return self.ecs.describe_container_instances(cluster=self.cluster,
                                                     containerInstances=[arn or self.instance_arn])[
            "containerInstances"][0]

    def container(self, name: str, command: list[str], **kw: Any) -> dict[str, Any]:
        # A command run as PID 1 with no TERM handler (sleep, httpd, sh) ignores TERM, so StopTask
        # waits stopTimeout before the KILL: 2 s rather than the agent's default 30 s.
        return {"name": name, "image": self.image, "memory": 64, "essential": True, "command": command,
                "stopTimeout": 2, **kw}

    def run(self, *containers: dict[str, Any]) -> str:
        td = self.ecs.register_task_definition(family="f-" + uuid.uuid4().hex[:8],
                                               containerDefinitions=list(containers))
        arn = td["taskDefinition"]["taskDefinitionArn"]
        r = self.ecs.run_task(cluster=self.cluster, taskDefinition=arn)
        assert not r.get("failures"), r["failures"]
        return r["tasks"][0]["taskArn"]

    def task(self, arn: str) -> dict[str, Any]:
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]

    def wait(self, arn: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        def check():
            t = self.task(arn)
            if t["lastStatus"] == status:
                return t
            if status != "STOPPED" and t["lastStatus"] == "STOPPED":
                raise AssertionError(f"task stopped while waiting for {status}: {t}\n{self.log()}")
            return None

        try:
            return wait_until(check, timeout, f"task {arn} to be {status}")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.task(arn)}\nagent log:\n{self.log()}") from None

    def docker_ids(self, task_arn: str, all_: bool = True) -> list[str]:
        args = ["ps", "-q", "--no-trunc", "--filter", f"label={LABEL_TASK_ARN}={task_arn}"]
        if all_:
            args.insert(1, "-a")
        return sorted(_docker(*args).split())

    def cleanup(self) -> None:
        self.stop_agent()
        self.server.stop()
        if self.instance_arn:
            ids = _docker("ps", "-aq", "--filter", f"label={LABEL_INSTANCE}={self.instance_arn}").split()
            if ids:
                _docker("rm", "-fv", *ids)
        self._tmp.cleanup()


@pytest.fixture(scope="module")
def env():
    e = Env(busybox_image())
    try:
        e.start_agent()
        yield e
    finally:
        e.cleanup()


def by_name(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in task["containers"]}


def http_get(port: int) -> str:
    last: Exception | None = None
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"no HTTP answer on 127.0.0.1:{port}: {last}")


# -- the tests -----------------------------------------------------------------------------------

def test_two_containers_web_and_non_essential_exit(env):
    web = env.container("web", ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && "
                                            "exec httpd -f -p 8080 -h /www"],
                        portMappings=[{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}])
    side = env.container("side", ["sh", "-c", "exit 3"], essential=False)
    arn = env.run(web, side)
    env.wait(arn, "RUNNING")
    t = wait_until(lambda: (t := env.task(arn)) and by_name(t)["side"]["lastStatus"] == "STOPPED" and t,
                   timeout=20, what="the side container to stop")
    assert by_name(t)["side"]["exitCode"] == 3
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"
    assert by_name(t)["web"]["lastStatus"] == "RUNNING"
    time.sleep(1)
    assert env.task(arn)["lastStatus"] == "RUNNING"
    (b,) = by_name(t)["web"]["networkBindings"]
    assert b["bindIP"] == "127.0.0.1" and b["containerPort"] == 8080 and b["hostPort"] > 0
    assert http_get(b["hostPort"]).strip() == "hello"
    env.ecs.stop_task(cluster=env.cluster, task=arn)
    t = env.wait(arn, "STOPPED")
    assert t["stopCode"] == "UserInitiated"
    assert all(c["lastStatus"] == "STOPPED" for c in t["containers"]), t["containers"]


def test_depends_on_healthy_orders_the_start(env):
    db = env.container("db", ["sh", "-c", "sleep 1; touch /tmp/ready; sleep 3600"],
                       healthCheck={"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5, "timeout": 2,
                                    "retries": 3, "startPeriod": 0})
    app = env.container("app", ["sleep", "3600"], dependsOn=[{"containerName": "db", "condition": "HEALTHY"}])
    arn = env.run(db, app)
    t = env.wait(arn, "RUNNING", timeout=40)
    cs = by_name(t)
    assert cs["db"]["healthStatus"] == "HEALTHY" or wait_until(
        lambda: by_name(env.task(arn))["db"].get("healthStatus") == "HEALTHY", 10, "db HEALTHY")
    assert cs["app"]["lastStatus"] == "RUNNING"
    db_started, app_started = started_at(cs["db"]["runtimeId"]), started_at(cs["app"]["runtimeId"])
    # db turns healthy at its first probe, `interval` (5 s) after it started.
    assert (app_started - db_started).total_seconds() >= 1.0, (db_started, app_started)
    db_health = inspect(cs["db"]["runtimeId"])["State"]["Health"]
    assert db_health["Status"] == "healthy"
    # ... and after db's first passing probe had ended.
    first_ok = next(p for p in db_health["Log"] if p["ExitCode"] == 0)
    assert app_started >= _parse_time(first_ok["End"]), (first_ok, app_started)
    assert by_name(env.task(arn))["db"]["healthStatus"] == "HEALTHY"
    env.ecs.stop_task(cluster=env.cluster, task=arn)
    env.wait(arn, "STOPPED")


def test_oom_stops_the_task(env):
    hog = env.container("hog", ["sh", "-c", "x=a; while true; do x=$x$x; done"], memory=16)
    arn = env.run(hog)
    t = env.wait(arn, "STOPPED", timeout=40)
    (c,) = t["containers"]
    assert c["exitCode"] == 137, c
    assert c.get("reason", "").startswith("OutOfMemoryError"), c
    assert t["stopCode"] == "EssentialContainerExited", t


def test_stop_task_honours_stop_timeout(env):
    stubborn = env.container("stubborn", ["sh", "-c", "trap '' TERM; sleep 3600"], stopTimeout=2)
    arn = env.run(stubborn)
    env.wait(arn, "RUNNING")
    time.sleep(0.5)  # let the shell install its trap
    t0 = time.monotonic()
    env.ecs.stop_task(cluster=env.cluster, task=arn)
    t = env.wait(arn, "STOPPED", timeout=20)
    took = time.monotonic() - t0
    assert 1.5 <= took <= 8.0, took
    (c,) = t["containers"]
    assert c["exitCode"] == 137, c
    assert t["stopCode"] == "UserInitiated"


def test_agent_kill9_and_restart_readopts(env):
    arn = env.run(env.container("sleeper", ["sleep", "3600"]))
    t = env.wait(arn, "RUNNING")
    rid = t["containers"][0]["runtimeId"]
    before = started_at(rid)
    instances = env.ecs.list_container_instances(cluster=env.cluster)["containerInstanceArns"]
    instance = env.instance_arn
    env.kill9_agent()
    wait_until(lambda: not env.instance(instance)["agentConnected"], timeout=15, what="the agent to be gone")
    assert env.start_agent() == instance
    assert env.ecs.list_container_instances(cluster=env.cluster)["containerInstanceArns"] == instances
    assert env.instance()["agentConnected"] is True
    time.sleep(1.5)  # let the re-adopted agent's reconciliation settle
    t = env.task(arn)
    assert t["lastStatus"] == "RUNNING" and t["containers"][0]["runtimeId"] == rid, t
    assert env.docker_ids(arn) == [rid]
    assert env.docker_ids(arn, all_=False) == [rid]
    assert started_at(rid) == before
    assert inspect(rid)["RestartCount"] == 0
    env.ecs.stop_task(cluster=env.cluster, task=arn)
    env.wait(arn, "STOPPED")


def test_server_restart_while_tasks_run(env):
    arn = env.run(env.container("sleeper", ["sleep", "3600"]))
    t = env.wait(arn, "RUNNING")
    rid = t["containers"][0]["runtimeId"]
    before = started_at(rid)
    env.server.stop()
    env.server.start()
    wait_until(lambda: env.instance()["agentConnected"], timeout=15, what="the agent to reconnect")
    time.sleep(1.5)
    t = env.task(arn)
    assert t["lastStatus"] == "RUNNING" and t["containers"][0]["runtimeId"] == rid, t
    assert env.docker_ids(arn) == [rid]
    assert started_at(rid) == before
    # Pushes reach the agent after the restart too.
    env.ecs.stop_task(cluster=env.cluster, task=arn)
    t = env.wait(arn, "STOPPED")
    assert t["stopCode"] == "UserInitiated"
