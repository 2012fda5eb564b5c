"""The agent's task engine (agent/engine.py, agent/task.py, agent/pull.py) on the FakeDriver: no Docker."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dockyard.agent.drivers.base import ContainerSpec
from dockyard.agent.drivers.fake import FakeDriver
from dockyard.agent.engine import EngineConfig, TaskEngine
from dockyard.agent.protocol import TaskPayload, TaskState

CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
INSTANCE_ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/0123abcd"
IMAGES = ["nginx:latest", "busybox:latest", "postgres:16"]


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded so a hang fails fast."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 8.0))

    return wrapper


def cdef(name: str, image: str = "nginx", env: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "image": image, "memory": 64, **kw}
    if env:
        d["environment"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    return d


def payload(*containers: dict[str, Any], desired: str = "RUNNING", arn: str | None = None,
            **td: Any) -> TaskPayload:
    arn = arn or f"arn:aws:ecs:us-east-1:123456789012:task/prod/{uuid.uuid4().hex}"
    return {"taskArn": arn, "clusterArn": CLUSTER_ARN, "desiredStatus": desired, "family": "web", "revision": 1,
            "taskDefinition": {"family": "web", "containerDefinitions": list(containers), **td},
            "overrides": {}, "containers": [{"name": c["name"], "containerArn": f"{arn}/{c['name']}"}
                                            for c in containers]}


def stopped(p: TaskPayload) -> TaskPayload:
    return {**p, "desiredStatus": "STOPPED", "stopCode": "UserInitiated", "stoppedReason": "Task stopped by user"}


def hc(**kw: Any) -> dict[str, Any]:
    return {"command": ["CMD-SHELL", "true"], "interval": 5, **kw}


class RecordingDriver(FakeDriver):
    """A FakeDriver that records the order of creates, starts and stops (by ECS container name)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.calls: list[tuple[str, str]] = []

    def _name(self, cid: str) -> str:
        c = self._get(cid)
        return c.labels.get("com.amazonaws.ecs.container-name", "?") if c else "?"

    async def create(self, spec: ContainerSpec) -> str:
        cid = await super().create(spec)
        self.calls.append(("create", self._name(cid)))
        return cid

    async def start(self, container_id: str) -> None:
        self.calls.append(("start", self._name(container_id)))
        await super().start(container_id)

    async def stop(self, container_id: str, timeout: float) -> None:
        self.calls.append(("stop", self._name(container_id)))
        await super().stop(container_id, timeout)

    def order(self, kind: str) -> list[str]:
        return [n for k, n in self.calls if k == kind]


class Host:
    """An engine over a FakeDriver, its run() loop, and every state it reported."""

    def __init__(self, data_dir: Path, driver: FakeDriver | None = None, **config: Any) -> None:
        self.driver = driver if driver is not None else RecordingDriver(images=IMAGES)
        self.data_dir = data_dir
        self.config = {"stop_timeout": 0.5, "start_timeout": 2.0, **config}
        self.reports: list[TaskState] = []
        self.engine = self._engine()
        self._runner: asyncio.Task[None] | None = None

    def _engine(self) -> TaskEngine:
        cfg = EngineConfig(cluster_arn=CLUSTER_ARN, instance_arn=INSTANCE_ARN, data_dir=self.data_dir, **self.config)
        return TaskEngine(self.driver, cfg, self.reports.append)

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self.engine.run())

    async def restart(self, kill: bool = False) -> list[TaskState]:
        """Stop this engine (close(), or kill -9: just abandon it) and adopt with a new one."""
        if kill:
            assert self._runner is not None
            self.engine._closed = True  # a killed process reports nothing more
            for t in self.engine.tasks.values():
                t.cancel()
            self._runner.cancel()
        else:
            await self.engine.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        self.reports.clear()
        self.engine = self._engine()
        adopted = await self.engine.adopt()
        self.start()
        return adopted

    async def close(self) -> None:
        await self.engine.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    def state(self, arn: str) -> TaskState:
        return next(s for s in self.engine.states() if s["taskArn"] == arn)

    def reported(self, arn: str) -> list[TaskState]:
        return [s for s in self.reports if s["taskArn"] == arn]

    def statuses(self, arn: str) -> list[str]:
        out: list[str] = []
        for s in self.reported(arn):
            if not out or out[-1] != s["lastStatus"]:
                out.append(s["lastStatus"])
        return out

    async def wait(self, arn: str, cond: Callable[[TaskState], bool] | str, timeout: float = 3.0) -> TaskState:
        if isinstance(cond, str):
            status = cond
            cond = lambda s: s["lastStatus"] == status
        deadline = time.monotonic() + timeout
        while True:
            states = [s for s in self.engine.states() if s["taskArn"] == arn]
            if states and cond(states[0]):
                return states[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; state: {states}")
            await asyncio.sleep(0.005)


def container(state: TaskState, name: str) -> dict[str, Any]:
    return dict(next(c for c in state["containers"] if c["name"] == name))


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "agent")


# -- the happy path --------------------------------------------------------------------------------

@run_async
async def test_happy_path_states_timestamps_and_bindings(host: Host) -> None:
    host.start()
    t0 = time.time()
    p = payload(cdef("web", portMappings=[{"containerPort": 80}, {"containerPort": 53, "protocol": "udp"}]))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    first = host.reported(arn)[0]
    assert first["lastStatus"] == "PENDING"
    assert container(first, "web")["lastStatus"] == "PENDING"
    s = await host.wait(arn, "RUNNING")
    assert host.statuses(arn) == ["PENDING", "RUNNING"]
    assert t0 <= s["pullStartedAt"] <= s["pullStoppedAt"] <= s["startedAt"] <= time.time()
    assert "executionStoppedAt" not in s and "desiredStatus" not in s
    assert s["healthStatus"] == "UNKNOWN"
    c = container(s, "web")
    assert c["lastStatus"] == "RUNNING"
    assert c["runtimeId"] in host.driver.containers
    assert c["imageDigest"].startswith("sha256:")
    assert "exitCode" not in c and "healthStatus" not in c and "reason" not in c
    bindings = sorted((b["containerPort"], b["hostPort"], b["protocol"], b["bindIP"]) for b in c["networkBindings"])
    assert bindings == [(53, 32769, "udp", "0.0.0.0"), (80, 32768, "tcp", "0.0.0.0")]
    # The reported state is the engine's state.
    assert host.reported(arn)[-1] == s
    await host.close()


@run_async
async def test_static_host_port_and_labels(host: Host) -> None:
    host.start()
    p = payload(cdef("web", portMappings=[{"containerPort": 80, "hostPort": 8080}]))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "RUNNING")
    c = container(s, "web")
    assert [(b["containerPort"], b["hostPort"]) for b in c["networkBindings"]] == [(80, 8080)]
    fc = host.driver.containers[c["runtimeId"]]
    assert fc.labels["com.amazonaws.ecs.task-arn"] == p["taskArn"]
    assert fc.labels["io.dockyard.container-instance"] == INSTANCE_ARN
    # A second task wanting the same static port cannot start on this host.
    p2 = payload(cdef("web", portMappings=[{"containerPort": 80, "hostPort": 8080}]))
    host.engine.apply([p2], full=False)
    s2 = await host.wait(p2["taskArn"], "STOPPED")
    assert s2["stopCode"] == "TaskFailedToStart"
    assert s2["reason"].startswith("CannotStartContainerError: ") and "port is already allocated" in s2["reason"]
    await host.close()


@run_async
async def test_non_essential_exit_keeps_the_task_running(host: Host) -> None:
    host.start()
    p = payload(cdef("httpd"), cdef("job", "busybox", essential=False, env={"FAKE_EXIT_AFTER": 0.05,
                                                                              "FAKE_EXIT_CODE": 3}))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    await host.wait(arn, lambda s: container(s, "job")["lastStatus"] == "STOPPED")
    await asyncio.sleep(0.05)
    s = host.state(arn)
    assert s["lastStatus"] == "RUNNING" and "desiredStatus" not in s
    assert container(s, "job")["exitCode"] == 3
    assert container(s, "httpd")["lastStatus"] == "RUNNING"
    assert "executionStoppedAt" not in s
    assert host.reported(arn)[-1]["containers"] == s["containers"]
    await host.close()


@run_async
async def test_essential_exit_stops_the_task(host: Host) -> None:
    host.start()
    p = payload(cdef("app", "busybox", env={"FAKE_EXIT_AFTER": 0.05, "FAKE_EXIT_CODE": 1}),
                cdef("sidecar", essential=False, env={"FAKE_STOP_AFTER": 0.05}))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    s = await host.wait(arn, "STOPPED")
    assert host.statuses(arn) == ["PENDING", "RUNNING", "STOPPING", "STOPPED"]
    stopping = next(r for r in host.reported(arn) if r["lastStatus"] == "STOPPING")
    assert stopping["desiredStatus"] == "STOPPED"
    assert stopping["stopCode"] == "EssentialContainerExited"
    assert stopping["reason"] == "Essential container in task exited"
    assert container(stopping, "app")["exitCode"] == 1
    assert container(stopping, "sidecar")["lastStatus"] == "RUNNING"
    assert s["stopCode"] == "EssentialContainerExited" and s["desiredStatus"] == "STOPPED"
    assert container(s, "app")["exitCode"] == 1
    assert container(s, "sidecar")["exitCode"] == 143
    assert s["startedAt"] <= s["executionStoppedAt"]
    assert all(c.state == "exited" for c in host.driver.containers.values())
    await host.close()


@run_async
async def test_oom_kill_reason(host: Host) -> None:
    host.start()
    p = payload(cdef("app", env={"FAKE_OOM": 1, "FAKE_EXIT_AFTER": 0.03}))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "STOPPED")
    c = container(s, "app")
    assert c["exitCode"] == 137
    assert c["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert s["stopCode"] == "EssentialContainerExited"
    await host.close()


@run_async
async def test_kill_hook_exit_code(host: Host) -> None:
    host.start()
    p = payload(cdef("app"))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "RUNNING")
    host.driver.kill(container(s, "app")["runtimeId"], 9)
    s = await host.wait(p["taskArn"], "STOPPED")
    assert container(s, "app")["exitCode"] == 9 and "reason" not in container(s, "app")
    await host.close()


# -- dependsOn ------------------------------------------------------------------------------------

@run_async
async def test_depends_on_start_order_and_reverse_stop(host: Host) -> None:
    host.start()
    p = payload(cdef("app", dependsOn=[{"containerName": "db", "condition": "START"}]),
                cdef("proxy", links=["app:app"]),
                cdef("db", "postgres:16"))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    await host.wait(arn, "RUNNING")
    driver = host.driver
    assert isinstance(driver, RecordingDriver)
    starts = driver.order("start")
    assert starts.index("db") < starts.index("app") < starts.index("proxy")
    creates = driver.order("create")
    assert creates.index("app") < creates.index("proxy")  # a link's target exists first
    host.engine.apply([stopped(p)], full=False)
    s = await host.wait(arn, "STOPPED")
    stops = driver.order("stop")
    assert stops.index("proxy") < stops.index("app") < stops.index("db")
    assert all(c["exitCode"] == 143 for c in s["containers"])
    await host.close()


@run_async
async def test_depends_on_complete_and_success(host: Host) -> None:
    host.start()
    p = payload(cdef("init", "busybox", essential=False, env={"FAKE_EXIT_AFTER": 0.05, "FAKE_EXIT_CODE": 5}),
                cdef("migrate", "busybox", essential=False, env={"FAKE_EXIT_AFTER": 0.05},
                     dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
                cdef("app", dependsOn=[{"containerName": "migrate", "condition": "SUCCESS"}]))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    s = await host.wait(arn, "RUNNING")
    driver = host.driver
    assert isinstance(driver, RecordingDriver)
    assert driver.order("start") == ["init", "migrate", "app"]
    assert container(s, "init")["exitCode"] == 5
    assert container(s, "migrate")["exitCode"] == 0
    assert container(s, "app")["lastStatus"] == "RUNNING"
    # PENDING until app ran, though init and migrate had exited meanwhile.
    assert host.statuses(arn) == ["PENDING", "RUNNING"]
    await host.close()


@run_async
async def test_depends_on_success_failure_stops_the_task(host: Host) -> None:
    host.start()
    p = payload(cdef("migrate", "busybox", essential=False, env={"FAKE_EXIT_AFTER": 0.03, "FAKE_EXIT_CODE": 2}),
                cdef("app", dependsOn=[{"containerName": "migrate", "condition": "SUCCESS"}]))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "STOPPED")
    assert host.statuses(p["taskArn"]) == ["PENDING", "STOPPED"]
    app = container(s, "app")
    assert app["lastStatus"] == "STOPPED" and app["exitCode"] == 143
    assert "did not exit successfully" in app["reason"] and app["reason"].startswith("CannotStartContainerError: ")
    assert s["stopCode"] == "TaskFailedToStart" and s["reason"] == app["reason"]
    assert container(s, "migrate")["exitCode"] == 2
    driver = host.driver
    assert isinstance(driver, RecordingDriver)
    assert "app" not in driver.order("start")
    await host.close()


@run_async
async def test_depends_on_healthy(host: Host) -> None:
    host.start()
    p = payload(cdef("db", "postgres:16", healthCheck=hc(), env={"FAKE_HEALTH": "healthy_after:0.1"}),
                cdef("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    pending = await host.wait(arn, lambda s: container(s, "db")["lastStatus"] == "RUNNING")
    assert pending["lastStatus"] == "PENDING"
    assert container(pending, "db")["healthStatus"] == "UNKNOWN"
    assert container(pending, "app")["lastStatus"] == "PENDING"
    s = await host.wait(arn, "RUNNING")
    assert container(s, "db")["healthStatus"] == "HEALTHY"
    assert s["healthStatus"] == "HEALTHY"
    assert "healthStatus" not in container(s, "app")
    await host.close()


@run_async
async def test_depends_on_healthy_timeout(host: Host) -> None:
    host.start()
    p = payload(cdef("db", "postgres:16", healthCheck=hc(), startTimeout=0.2, env={"FAKE_HEALTH": "starting"}),
                cdef("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]))
    host.engine.apply([p], full=False)
    t0 = time.monotonic()
    s = await host.wait(p["taskArn"], "STOPPED")
    assert time.monotonic() - t0 >= 0.2
    app = container(s, "app")
    assert app["reason"] == ("CannotStartContainerError: dependency graph: container ordering dependency [db] "
                             "for target [app] has timed out.")
    assert s["stopCode"] == "TaskFailedToStart" and s["reason"] == app["reason"]
    assert container(s, "db")["exitCode"] == 143  # stopped with the task
    await host.close()


@run_async
async def test_engine_start_timeout_bounds_dependency_waits(tmp_path: Path) -> None:
    host = Host(tmp_path, start_timeout=0.1)
    host.start()
    p = payload(cdef("job", "busybox", essential=False),  # never exits
                cdef("app", dependsOn=[{"containerName": "job", "condition": "COMPLETE"}]))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "STOPPED")
    assert "has timed out" in container(s, "app")["reason"]
    await host.close()


# -- health ---------------------------------------------------------------------------------------

@run_async
async def test_health_status_mapping(host: Host) -> None:
    host.start()
    p = payload(cdef("web", healthCheck=hc()),  # healthy at once (FakeDriver's default)
                cdef("worker", healthCheck=hc(), env={"FAKE_HEALTH": "healthy_after:0.05,unhealthy_after:0.15"}),
                cdef("side", essential=False, healthCheck=hc(), env={"FAKE_HEALTH": "unhealthy"}),
                cdef("plain"))
    host.engine.apply([p], full=False)
    arn = p["taskArn"]
    s = await host.wait(arn, lambda s: s["healthStatus"] == "HEALTHY")
    assert container(s, "web")["healthStatus"] == "HEALTHY"
    assert container(s, "side")["healthStatus"] == "UNHEALTHY"  # non-essential: no effect on the task
    assert "healthStatus" not in container(s, "plain")
    s = await host.wait(arn, lambda s: s["healthStatus"] == "UNHEALTHY")
    assert container(s, "worker")["healthStatus"] == "UNHEALTHY"
    assert s["lastStatus"] == "RUNNING"  # an unhealthy task keeps running (the scheduler decides)
    reported = [r["healthStatus"] for r in host.reported(arn)]
    assert "HEALTHY" in reported and reported[-1] == "UNHEALTHY"
    await host.close()


# -- stopping ---------------------------------------------------------------------------------------

@run_async
async def test_server_stop(host: Host) -> None:
    host.start()
    p = payload(cdef("web"))
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    await host.wait(arn, "RUNNING")
    host.engine.apply([stopped(p)], full=False)
    s = await host.wait(arn, "STOPPED")
    assert host.statuses(arn) == ["PENDING", "RUNNING", "STOPPING", "STOPPED"]
    assert "desiredStatus" not in s and "stopCode" not in s  # the server decided it: nothing to add
    assert container(s, "web")["exitCode"] == 143
    assert s["executionStoppedAt"] >= s["startedAt"]
    host.engine.apply([stopped(p)], full=False)  # again: nothing new
    await asyncio.sleep(0.02)
    assert host.statuses(arn) == ["PENDING", "RUNNING", "STOPPING", "STOPPED"]
    await host.close()


@run_async
async def test_stop_timeout_kills_a_container_ignoring_the_signal(tmp_path: Path) -> None:
    host = Host(tmp_path, stop_timeout=0.05)
    host.start()
    p = payload(cdef("stubborn", env={"FAKE_IGNORE_STOP": 1}, stopTimeout=0.3),
                cdef("quick", env={"FAKE_IGNORE_STOP": 1}))  # the engine's default: 0.05 s
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    await host.wait(arn, "RUNNING")
    t0 = time.monotonic()
    host.engine.apply([stopped(p)], full=False)
    s = await host.wait(arn, lambda s: container(s, "quick")["lastStatus"] == "STOPPED")
    assert container(s, "stubborn")["lastStatus"] == "RUNNING"
    assert container(s, "quick")["exitCode"] == 137
    s = await host.wait(arn, "STOPPED")
    assert time.monotonic() - t0 >= 0.3
    assert container(s, "stubborn")["exitCode"] == 137
    await host.close()


@run_async
async def test_stop_while_starting_leaves_nothing_running(tmp_path: Path) -> None:
    host = Host(tmp_path, driver=RecordingDriver(images=IMAGES, pull_delay=0.2))
    host.start()
    p = payload(cdef("web"))
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    await asyncio.sleep(0.05)
    host.engine.apply([stopped(p)], full=False)
    s = await host.wait(arn, "STOPPED")
    assert host.statuses(arn) == ["PENDING", "STOPPED"]
    assert container(s, "web")["lastStatus"] == "STOPPED"
    await asyncio.sleep(0.25)  # the shared pull finishes; nothing is created after the stop
    assert not host.driver.containers
    await host.close()


@run_async
async def test_stop_during_dependency_wait(host: Host) -> None:
    host.start()
    p = payload(cdef("db", "postgres:16", healthCheck=hc(), env={"FAKE_HEALTH": "starting"}),
                cdef("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]))
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    await host.wait(arn, lambda s: container(s, "db")["lastStatus"] == "RUNNING")
    host.engine.apply([stopped(p)], full=False)
    s = await host.wait(arn, "STOPPED")
    assert container(s, "db")["exitCode"] == 143
    assert container(s, "app")["lastStatus"] == "STOPPED" and "exitCode" not in container(s, "app")
    assert not [c for c in host.driver.containers.values() if c.state == "running"]
    await host.close()


@run_async
async def test_stopped_payload_for_an_unknown_task(host: Host) -> None:
    host.start()
    p = stopped(payload(cdef("web")))
    host.engine.apply([p], full=False)
    assert [r["lastStatus"] for r in host.reported(p["taskArn"])] == ["STOPPED"]
    assert container(host.state(p["taskArn"]), "web")["lastStatus"] == "STOPPED"
    assert not host.driver.containers
    await host.close()


@run_async
async def test_full_sync_stops_unknown_tasks(host: Host) -> None:
    host.start()
    keep, drop = payload(cdef("web")), payload(cdef("web"))
    host.engine.apply([keep, drop], full=False)
    await host.wait(keep["taskArn"], "RUNNING")
    await host.wait(drop["taskArn"], "RUNNING")
    host.engine.apply([keep], full=True)
    s = await host.wait(drop["taskArn"], "STOPPED")
    assert s["desiredStatus"] == "STOPPED" and s["reason"] == "Task not known to the server"
    assert "stopCode" not in s
    assert host.state(keep["taskArn"])["lastStatus"] == "RUNNING"
    await host.close()


@run_async
async def test_apply_is_idempotent(host: Host) -> None:
    host.start()
    p = payload(cdef("web"), cdef("side", essential=False))
    host.engine.apply([p], full=False)
    host.engine.apply([p], full=False)
    await host.wait(p["taskArn"], "RUNNING")
    n = len(host.reports)
    host.engine.apply([p], full=True)
    host.engine.apply([p], full=False)
    await asyncio.sleep(0.02)
    assert len(host.driver.containers) == 2
    assert len(host.reports) == n
    driver = host.driver
    assert isinstance(driver, RecordingDriver)
    assert sorted(driver.order("create")) == ["side", "web"]
    await host.close()


# -- failures to start ----------------------------------------------------------------------------------

@run_async
async def test_unsupported_task_definition_is_refused(host: Host) -> None:
    host.start()
    p = payload(cdef("web"), taskRoleArn="arn:aws:iam::123456789012:role/app")
    host.engine.apply([p], full=False)
    reports = host.reported(p["taskArn"])
    assert [r["lastStatus"] for r in reports] == ["STOPPED"]
    s = reports[0]
    assert s["stopCode"] == "TaskFailedToStart" and s["desiredStatus"] == "STOPPED"
    assert s["reason"].startswith("CannotCreateContainerError: taskRoleArn is not supported yet")
    assert container(s, "web")["reason"] == s["reason"]
    assert not host.driver.containers and not host.driver.pulls
    await host.engine.flush_checkpoints()
    assert not (host.data_dir / "tasks").exists() or not list((host.data_dir / "tasks").iterdir())
    await host.close()


@run_async
async def test_start_and_create_failures(host: Host) -> None:
    host.start()
    p1 = payload(cdef("web", env={"FAKE_START_FAIL": "exec format error"}))
    p2 = payload(cdef("web", env={"FAKE_CREATE_FAIL": "invalid mount config"}))
    host.engine.apply([p1, p2], full=False)
    s1 = await host.wait(p1["taskArn"], "STOPPED")
    s2 = await host.wait(p2["taskArn"], "STOPPED")
    assert s1["stopCode"] == s2["stopCode"] == "TaskFailedToStart"
    assert s1["reason"] == "CannotStartContainerError: exec format error"
    assert s2["reason"] == "CannotCreateContainerError: invalid mount config"
    assert host.statuses(p1["taskArn"]) == ["PENDING", "STOPPED"]
    await host.close()


@run_async
async def test_non_essential_start_failure_keeps_the_task(host: Host) -> None:
    host.start()
    p = payload(cdef("web"), cdef("side", essential=False, env={"FAKE_START_FAIL": "boom"}))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "RUNNING")
    assert container(s, "side")["reason"] == "CannotStartContainerError: boom"
    assert container(s, "side")["lastStatus"] == "STOPPED"
    await host.close()


# -- pulls ----------------------------------------------------------------------------------------------

@run_async
async def test_pull_default_falls_back_to_the_cache(tmp_path: Path) -> None:
    driver = RecordingDriver(images=["nginx:latest"], available=[])
    host = Host(tmp_path, driver=driver)
    host.start()
    cached, missing = payload(cdef("web")), payload(cdef("web", "ghcr.io/acme/missing:1"))
    host.engine.apply([cached, missing], full=False)
    s = await host.wait(cached["taskArn"], "RUNNING")
    assert "pullStartedAt" in s and "pullStoppedAt" in s  # the pull was tried
    f = await host.wait(missing["taskArn"], "STOPPED")
    assert f["stopCode"] == "TaskFailedToStart"
    assert f["reason"].startswith("CannotPullContainerError: ")
    assert "ghcr.io/acme/missing" in f["reason"]
    assert container(f, "web")["reason"] == f["reason"]
    assert "pullStartedAt" in f
    assert sorted(driver.pulls) == ["ghcr.io/acme/missing:1", "nginx:latest"]
    await host.close()


@run_async
async def test_non_essential_pull_failure_keeps_the_task(tmp_path: Path) -> None:
    host = Host(tmp_path, driver=RecordingDriver(images=[], available=["nginx:latest"]))
    host.start()
    p = payload(cdef("web"), cdef("side", "ghcr.io/acme/missing:1", essential=False))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "RUNNING")
    assert container(s, "side")["lastStatus"] == "STOPPED"
    assert container(s, "side")["reason"].startswith("CannotPullContainerError: ")
    assert container(s, "web")["lastStatus"] == "RUNNING"
    await host.close()


@run_async
async def test_pull_always_fails_without_the_registry(tmp_path: Path) -> None:
    host = Host(tmp_path, driver=RecordingDriver(images=["nginx:latest"], available=[]), pull_behavior="always")
    host.start()
    p = payload(cdef("web"))
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "STOPPED")
    assert s["reason"].startswith("CannotPullContainerError: ")
    await host.close()


@run_async
async def test_pull_once(tmp_path: Path) -> None:
    driver = RecordingDriver(images=[], available=["nginx:latest"])
    host = Host(tmp_path, driver=driver, pull_behavior="once")
    host.start()
    a, b = payload(cdef("web")), payload(cdef("web"))
    host.engine.apply([a], full=False)
    sa = await host.wait(a["taskArn"], "RUNNING")
    host.engine.apply([b], full=False)
    sb = await host.wait(b["taskArn"], "RUNNING")
    assert driver.pulls == ["nginx:latest"]
    assert "pullStartedAt" in sa and "pullStartedAt" not in sb
    # Remembered across an agent restart.
    await host.restart()
    c = payload(cdef("web"))
    host.engine.apply([c], full=False)
    await host.wait(c["taskArn"], "RUNNING")
    assert driver.pulls == ["nginx:latest"]
    await host.close()


@run_async
async def test_pull_prefer_cached(tmp_path: Path) -> None:
    driver = RecordingDriver(images=["nginx:latest"], available=["busybox:latest"])
    host = Host(tmp_path, driver=driver, pull_behavior="prefer-cached")
    host.start()
    cached, fresh = payload(cdef("web")), payload(cdef("job", "busybox"))
    host.engine.apply([cached, fresh], full=False)
    s1 = await host.wait(cached["taskArn"], "RUNNING")
    s2 = await host.wait(fresh["taskArn"], "RUNNING")
    assert "pullStartedAt" not in s1 and "pullStartedAt" in s2
    assert driver.pulls == ["busybox:latest"]
    await host.close()


@run_async
async def test_concurrent_pulls_of_one_image_are_shared(tmp_path: Path) -> None:
    driver = RecordingDriver(images=[], pull_delay=0.05)
    host = Host(tmp_path, driver=driver)
    host.start()
    ps = [payload(cdef("web")) for _ in range(5)]
    host.engine.apply(ps, full=False)
    for p in ps:
        await host.wait(p["taskArn"], "RUNNING")
    assert driver.pulls == ["nginx:latest"]
    await host.close()


# -- volumes and cleanup ----------------------------------------------------------------------------

@run_async
async def test_cleanup_after_stopped_is_acknowledged(tmp_path: Path) -> None:
    host = Host(tmp_path, cleanup_wait=0.05)
    host.start()
    p = payload(cdef("web", mountPoints=[{"sourceVolume": "scratch", "containerPath": "/scratch"},
                                         {"sourceVolume": "data", "containerPath": "/data"}]),
                volumes=[{"name": "scratch"},
                         {"name": "data", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}])
    arn = p["taskArn"]
    tid = arn.rsplit("/", 1)[-1]
    host.engine.apply([p], full=False)
    await host.wait(arn, "RUNNING")
    assert (tmp_path / tid / "scratch").is_dir()
    assert len(host.driver.volumes) == 1
    await host.engine.flush_checkpoints()
    assert (tmp_path / "tasks" / f"{tid}.json").exists()
    host.engine.apply([stopped(p)], full=False)
    await host.wait(arn, "STOPPED")
    host.engine.acknowledged(arn, "RUNNING")  # not the final state: nothing happens
    host.engine.acknowledged(arn, "STOPPED")
    assert host.driver.containers  # not before cleanup_wait
    deadline = time.monotonic() + 2
    while host.engine.states() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert host.engine.states() == []
    assert not host.driver.containers
    assert not host.driver.volumes
    assert not (tmp_path / tid).exists()
    await host.engine.flush_checkpoints()
    assert not (tmp_path / "tasks" / f"{tid}.json").exists()
    await host.close()


@run_async
async def test_shared_volume_must_exist_without_autoprovision(host: Host) -> None:
    host.start()
    vol = {"name": "shared", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": False}}
    p = payload(cdef("web", mountPoints=[{"sourceVolume": "shared", "containerPath": "/s"}]), volumes=[vol])
    host.engine.apply([p], full=False)
    s = await host.wait(p["taskArn"], "STOPPED")
    assert s["stopCode"] == "TaskFailedToStart" and "does not exist" in s["reason"]
    await host.driver.create_volume("shared", "local", {}, {})
    p2 = payload(cdef("web", mountPoints=[{"sourceVolume": "shared", "containerPath": "/s"}]), volumes=[vol])
    host.engine.apply([p2], full=False)
    await host.wait(p2["taskArn"], "RUNNING")
    await host.close()


# -- restarts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kill", [False, True], ids=["close", "kill-9"])
def test_adopt_after_restart(tmp_path: Path, kill: bool) -> None:
    @run_async
    async def body() -> None:
        host = Host(tmp_path)
        host.start()
        p = payload(cdef("web", portMappings=[{"containerPort": 80}]),
                    cdef("side", essential=False), cdef("job", "busybox", essential=False))
        arn = p["taskArn"]
        host.engine.apply([p], full=False)
        before = await host.wait(arn, "RUNNING")
        ids = {c["name"]: c["runtimeId"] for c in before["containers"]}
        n = len(host.driver.containers)
        adopted = await host.restart(kill=kill)
        assert [s["lastStatus"] for s in adopted] == ["RUNNING"]
        again = adopted[0]
        assert {c["name"]: c["runtimeId"] for c in again["containers"]} == ids
        assert container(again, "web")["networkBindings"] == container(before, "web")["networkBindings"]
        assert len(host.driver.containers) == n  # nothing recreated

        # A non-essential container exits while the agent is down: reported with its code.
        await host.close()
        host.driver.kill(ids["job"], 2)
        adopted = await host.restart()
        s = adopted[0]
        assert s["lastStatus"] == "RUNNING" and container(s, "job")["exitCode"] == 2
        assert container(s, "job")["lastStatus"] == "STOPPED"

        # The essential one exits while the agent is down: the task stops.
        await host.close()
        host.driver.kill(ids["web"], 1)
        adopted = await host.restart()
        s = adopted[0]
        assert s["lastStatus"] == "STOPPING" and s["stopCode"] == "EssentialContainerExited"
        assert container(s, "web")["exitCode"] == 1
        s = await host.wait(arn, "STOPPED")
        assert container(s, "side")["exitCode"] == 143
        assert host.reported(arn)[-1]["lastStatus"] == "STOPPED"

        # A STOPPED task is adopted as it was reported, until the acknowledgement's cleanup.
        adopted = await host.restart()
        assert adopted == [s]
        assert len(host.driver.containers) == n
        await host.close()

    body()


@run_async
async def test_adopt_continues_an_interrupted_start(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.start()
    p = payload(cdef("db", "postgres:16", healthCheck=hc(), env={"FAKE_HEALTH": "healthy_after:0.2"}),
                cdef("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]))
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    s = await host.wait(arn, lambda s: container(s, "db")["lastStatus"] == "RUNNING")
    db_id = container(s, "db")["runtimeId"]
    adopted = await host.restart(kill=True)
    assert adopted[0]["lastStatus"] == "PENDING"
    s = await host.wait(arn, "RUNNING")
    assert container(s, "db")["runtimeId"] == db_id
    assert len(host.driver.containers) == 2
    assert container(s, "db")["healthStatus"] == "HEALTHY"
    await host.close()


@run_async
async def test_adopt_resumes_a_stop_in_progress(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.start()
    p = payload(cdef("web", env={"FAKE_IGNORE_STOP": 1}, stopTimeout=0.2))
    arn = p["taskArn"]
    host.engine.apply([p], full=False)
    await host.wait(arn, "RUNNING")
    host.engine.apply([stopped(p)], full=False)
    await host.wait(arn, "STOPPING")
    adopted = await host.restart(kill=True)
    assert adopted[0]["lastStatus"] == "STOPPING"
    s = await host.wait(arn, "STOPPED")
    assert "stopCode" not in s  # still the server's stop
    assert container(s, "web")["exitCode"] == 137
    await host.close()


@run_async
async def test_adopt_without_checkpoint_waits_for_the_payload(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.start()
    keep, orphan = payload(cdef("web")), payload(cdef("web"))
    host.engine.apply([keep, orphan], full=False)
    await host.wait(keep["taskArn"], "RUNNING")
    await host.wait(orphan["taskArn"], "RUNNING")
    await host.engine.flush_checkpoints()
    for f in (tmp_path / "tasks").glob("*.json"):
        f.unlink()  # both checkpoints lost with a crash
    adopted = await host.restart(kill=True)
    assert sorted(s["lastStatus"] for s in adopted) == ["RUNNING", "RUNNING"]
    # The server's full list names one of them: it is rebuilt from the payload; the other is stopped.
    host.engine.apply([keep], full=True)
    s = await host.wait(orphan["taskArn"], "STOPPED")
    assert s["reason"] == "Task not known to the server"
    assert host.state(keep["taskArn"])["lastStatus"] == "RUNNING"
    await host.engine.flush_checkpoints()
    assert (tmp_path / "tasks" / f"{keep['taskArn'].rsplit('/', 1)[-1]}.json").exists()
    assert len(host.driver.containers) == 2
    await host.close()


@run_async
async def test_close_leaves_containers_running(host: Host) -> None:
    host.start()
    p = payload(cdef("web"))
    host.engine.apply([p], full=False)
    await host.wait(p["taskArn"], "RUNNING")
    n = len(host.reports)
    await host.close()
    assert [c.state for c in host.driver.containers.values()] == ["running"]
    assert len(host.reports) == n


@run_async
async def test_many_tasks(tmp_path: Path) -> None:
    host = Host(tmp_path, driver=FakeDriver(images=IMAGES))
    host.start()
    ps = [payload(cdef("web", portMappings=[{"containerPort": 80}])) for _ in range(300)]
    t0 = time.perf_counter()
    host.engine.apply(ps, full=False)
    for p in ps:
        await host.wait(p["taskArn"], "RUNNING")
    elapsed = time.perf_counter() - t0
    ports = {container(host.state(p["taskArn"]), "web")["networkBindings"][0]["hostPort"] for p in ps}
    assert len(ports) == 300
    assert elapsed < 3.0
    await host.close()
