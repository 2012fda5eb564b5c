"""Tasks end to end on a real Docker engine: a `dockyard server` process and a `dockyard agent`
process with the Docker driver, driven through boto3.

Everything runs the locally built busybox image (tests/helpers/images.py); nothing is pulled
(``--pull-behavior prefer-cached``) and published ports are bound to 127.0.0.1. One server and
one agent serve the whole module; the last two tests kill -9 / restart the agent and restart
the server, so they run last. Every container the agent created (label
``io.dockyard.container-instance=<instance ARN>``) is removed at the end.
"""

from __future__ import annotations

import signal
import time
import urllib.request
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.helpers.docker_env import DockerAgentEnv, inspect, wait_until
from tests.helpers.images import busybox_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

HEARTBEAT = 1.0  # the server's silence limit is 3 x this


def _parse_time(s: str) -> datetime:
    """Docker's RFC 3339 times with nanoseconds, e.g. 2026-11-23T14:54:02.123456789Z (or +00:00)."""
    s = s.replace("Z", "+00:00")
    main, _, rest = s.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    tz = rest[len(digits):] or "+00:00"
    return datetime.fromisoformat(f"{main}.{(digits + '000000')[:6]}{tz}")


def started_at(cid: str) -> datetime:
    return _parse_time(inspect(cid)["State"]["StartedAt"])


class Env(DockerAgentEnv):
    """The module's server, its agent process, a cluster."""

    def __init__(self, image: str) -> None:
        super().__init__(image, prefix="dockyard-tasks-docker-", cluster_prefix="docker-", heartbeat=HEARTBEAT)

    # -- the agent process ----------------------------------------------------------------------

    def kill9_agent(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.agent_log_tail(6000)

    # -- the API ----------------------------------------------------------------------------------

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


@pytest.fixture(scope="module")
def env():
    with Env(busybox_image()).agent_running() as e:
        yield e


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
