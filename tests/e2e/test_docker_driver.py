"""The Docker driver against the real engine, with containers planned by docker_config.plan_task.

Everything runs the locally built busybox image (tests/helpers/images.py); nothing is
pulled and all traffic stays on loopback (ports are bound to 127.0.0.1). Every
container and volume carries the label ``io.dockyard.test=<run id>`` and is removed
by the ``cleanup`` fixture, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.agent.docker_config import plan_task
from dockyard.agent.drivers.base import ContainerEvent, ContainerSpec, DriverError
from dockyard.agent.drivers.docker import DockerDriver
from dockyard.agent.protocol import LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN, TaskPayload
from tests.helpers.images import busybox_image
from tests.helpers.server import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

TEST_LABEL = "io.dockyard.test"
RUN_ID = uuid.uuid4().hex[:12]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False).stdout


@pytest.fixture(scope="module")
def image() -> str:
    return busybox_image()


@pytest.fixture(autouse=True)
def cleanup(image):
    yield
    ids = _docker("ps", "-aq", "--filter", f"label={TEST_LABEL}={RUN_ID}").split()
    if ids:
        _docker("rm", "-fv", *ids)
    vols = _docker("volume", "ls", "-q", "--filter", f"label={TEST_LABEL}={RUN_ID}").split()
    if vols:
        _docker("volume", "rm", "-f", *vols)


class Task:
    """One test's task: a unique ARN and instance ARN; ``plan()`` builds the ContainerSpecs."""

    def __init__(self, image: str, tmp_path: Path) -> None:
        tid = uuid.uuid4().hex
        self.image = image
        self.tmp = tmp_path
        self.task_arn = f"arn:aws:ecs:us-east-1:123456789012:task/test/{tid}"
        self.instance_arn = f"arn:aws:ecs:us-east-1:123456789012:container-instance/test/{tid}"

    def container(self, name: str = "app", **kw: Any) -> dict[str, Any]:
        labels = {TEST_LABEL: RUN_ID, **kw.pop("dockerLabels", {})}
        return {"name": name, "image": self.image, "memory": 64, "dockerLabels": labels, **kw}

    def payload(self, containers: list[dict[str, Any]], **td: Any) -> TaskPayload:
        return {"taskArn": self.task_arn, "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/test",
                "desiredStatus": "RUNNING", "family": "drivertest", "revision": 1,
                "taskDefinition": {"family": "drivertest", "containerDefinitions": containers, **td},
                "overrides": {}, "containers": [{"name": c["name"], "containerArn": "x"} for c in containers]}

    def plan(self, containers: list[dict[str, Any]], **td: Any):
        return plan_task(self.payload(containers, **td), self.instance_arn, self.tmp, bind_ip="127.0.0.1")

    def spec(self, **kw: Any) -> ContainerSpec:
        return self.plan([self.container(**kw)]).containers[kw.get("name", "app")]


@pytest.fixture
def task(image, tmp_path) -> Task:
    return Task(image, tmp_path)


class Events:
    """Collects the driver's events for one instance in the background; ``wait`` for one."""

    def __init__(self, driver: DockerDriver, instance_arn: str) -> None:
        self.seen: list[ContainerEvent] = []
        self._instance = instance_arn
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(driver))

    async def _run(self, driver: DockerDriver) -> None:
        async for ev in driver.events():
            if ev.labels.get(LABEL_INSTANCE) == self._instance:
                self.seen.append(ev)
                self._changed.set()

    async def wait(self, pred: Callable[[ContainerEvent], bool], timeout: float = 30.0) -> ContainerEvent:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.seen:
                if pred(ev):
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s; seen: {self.seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def stop(self) -> None:
        self._task.cancel()


def run(fn: Callable[[DockerDriver], Awaitable[None]]) -> None:
    async def main() -> None:
        driver = DockerDriver()
        try:
            await fn(driver)
        finally:
            await driver.close()

    asyncio.run(main())


async def _http_get(port: int, attempts: int = 50) -> str:
    """GET http://127.0.0.1:<port>/ with bounded retries (the server may still be starting)."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode())
        except OSError as e:
            last = e
            await asyncio.sleep(0.1)
    raise AssertionError(f"no answer on 127.0.0.1:{port}: {last}")


# -- tests -------------------------------------------------------------------------

def test_info():
    async def go(d: DockerDriver) -> None:
        info = await d.info()
        assert info.cpus > 0 and info.memory_mib > 0
        assert info.os_type == "linux"
        assert info.architecture in ("x86_64", "arm64")
        assert info.api_version.count(".") == 1 and info.server_version
        assert "json-file" in info.logging_drivers and "none" in info.logging_drivers
    run(go)


def test_ports_http_and_lifecycle_events(task):
    static = free_port()
    spec = task.spec(
        command=["sh", "-c", "httpd -p 8081 -h /www; exec httpd -f -p 8080 -h /www"],
        portMappings=[{"containerPort": 8080}, {"containerPort": 8081, "hostPort": static}],
        linuxParameters={"initProcessEnabled": True})

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        cid = await d.create(spec)
        await d.start(cid)
        st = await d.inspect(cid)
        assert st is not None and st.state == "running" and st.name == spec.name
        assert st.labels[LABEL_TASK_ARN] == task.task_arn and st.labels[LABEL_CONTAINER_NAME] == "app"
        assert st.started_at and st.image_digest.startswith("sha256:")
        ports = {(p.container_port, p.protocol): p for p in st.ports}
        dyn, fixed = ports[(8080, "tcp")], ports[(8081, "tcp")]
        assert dyn.host_ip == fixed.host_ip == "127.0.0.1"
        assert dyn.host_port > 0 and fixed.host_port == static
        assert (await _http_get(dyn.host_port)).strip() == "dockyard"
        assert (await _http_get(fixed.host_port)).strip() == "dockyard"
        ev = await events.wait(lambda e: e.kind == "start" and e.id == cid)
        assert ev.labels[LABEL_CONTAINER_NAME] == "app" and ev.time > 0
        # With Init, httpd is not PID 1 and SIGTERM ends it at once.
        t0 = time.monotonic()
        await d.stop(cid, 10)
        assert time.monotonic() - t0 < 5
        die = await events.wait(lambda e: e.kind == "die" and e.id == cid)
        assert die.exit_code == 143 and not die.oom
        await d.remove(cid)
        await events.wait(lambda e: e.kind == "destroy" and e.id == cid)
        assert await d.inspect(cid) is None
        await d.remove(cid)  # missing: not an error
        events.stop()
    run(go)


def test_die_exit_code(task):
    spec = task.spec(command=["sh", "-c", "exit 3"])

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        cid = await d.create(spec)
        await d.start(cid)
        die = await events.wait(lambda e: e.kind == "die" and e.id == cid)
        assert die.exit_code == 3 and not die.oom
        st = await d.inspect(cid)
        assert st is not None and st.state == "exited" and st.exit_code == 3 and st.finished_at
        await d.stop(cid, 1)  # already exited: not an error
        events.stop()
    run(go)


def test_oom_kill(task):
    spec = task.spec(memory=16, command=["sh", "-c", "tail /dev/zero"])

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        cid = await d.create(spec)
        await d.start(cid)
        die = await events.wait(lambda e: e.kind == "die" and e.id == cid, timeout=60)
        assert die.oom is True and die.exit_code == 137
        st = await d.inspect(cid)
        assert st is not None and st.oom_killed
        events.stop()
    run(go)


def test_health_events(task):
    spec = task.spec(
        command=["sh", "-c", "touch /tmp/ok; sleep 4; rm /tmp/ok; exec sleep 60"],
        healthCheck={"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 1, "timeout": 1, "retries": 1})
    assert spec.config["Healthcheck"]["Interval"] == 1_000_000_000

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        cid = await d.create(spec)
        await d.start(cid)
        await events.wait(lambda e: e.kind == "health" and e.id == cid and e.health == "healthy")
        st = await d.inspect(cid)
        assert st is not None and st.health == "healthy"
        await events.wait(lambda e: e.kind == "health" and e.id == cid and e.health == "unhealthy")
        await d.stop(cid, 0)
        events.stop()
    run(go)


def test_stop_honours_timeout(task):
    stubborn = task.spec(name="stubborn", command=["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    graceful = task.spec(name="graceful", command=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        s_id, g_id = await d.create(stubborn), await d.create(graceful)
        await d.start(s_id)
        await d.start(g_id)
        await events.wait(lambda e: e.kind == "start" and e.id == g_id)
        t0 = time.monotonic()
        await d.stop(g_id, 10)  # the stop signal is sent: a TERM handler ends it early
        assert time.monotonic() - t0 < 5
        st = await d.inspect(g_id)
        assert st is not None and st.state == "exited" and st.exit_code == 0
        t0 = time.monotonic()
        await d.stop(s_id, 1.5)  # rounded up to 2 s, then SIGKILL
        took = time.monotonic() - t0
        assert 1.8 <= took < 8, took
        st = await d.inspect(s_id)
        assert st is not None and st.state == "exited" and st.exit_code == 137 and not st.oom_killed
        die = await events.wait(lambda e: e.kind == "die" and e.id == s_id)
        assert die.exit_code == 137 and not die.oom
        await d.stop("no-such-container-" + RUN_ID, 1)  # missing: not an error
        events.stop()
    run(go)


def test_list_managed(task):
    p = task.plan([task.container("a", command=["sleep", "60"]), task.container("b", command=["true"])])

    async def go(d: DockerDriver) -> None:
        a = await d.create(p.containers["a"])
        b = await d.create(p.containers["b"])
        await d.start(a)
        found = {s.id: s for s in await d.list_managed(LABEL_INSTANCE, task.instance_arn)}
        assert set(found) == {a, b}
        assert found[a].state == "running" and found[b].state == "created"
        assert {s.labels[LABEL_CONTAINER_NAME] for s in found.values()} == {"a", "b"}
        assert await d.list_managed(LABEL_INSTANCE, task.instance_arn + "-other") == []
        await d.stop(a, 0)
    run(go)


def test_create_is_idempotent_per_task(task, image, tmp_path):
    spec = task.spec(command=["true"])

    async def go(d: DockerDriver) -> None:
        first = await d.create(spec)
        assert await d.create(spec) == first  # a retried create finds the same container
        other = Task(image, tmp_path).spec(command=["true"])
        other.name = spec.name  # same name, another task: a real conflict
        with pytest.raises(DriverError) as e:
            await d.create(other)
        assert e.value.reason == "CannotCreateContainerError"
    run(go)


def test_create_and_start_errors(task):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    taken = task.spec(name="taken", command=["sleep", "5"], portMappings=[{"containerPort": 80, "hostPort": port}])
    missing = task.spec(name="missing", image="127.0.0.1:5999/dockyard-test/absent:nope")

    async def go(d: DockerDriver) -> None:
        with pytest.raises(DriverError) as e:
            await d.create(missing)
        assert e.value.reason == "CannotCreateContainerError"
        cid = await d.create(taken)
        with pytest.raises(DriverError) as e:
            await d.start(cid)
        assert e.value.reason == "CannotStartContainerError" and str(port) in e.value.message
    try:
        run(go)
    finally:
        busy.close()


def test_pull_fails_fast(image):
    async def go(d: DockerDriver) -> None:
        assert await d.image_present(image)
        ref = "127.0.0.1:5999/dockyard-test/absent:nope"
        assert not await d.image_present(ref)
        t0 = time.monotonic()
        with pytest.raises(DriverError) as e:
            await d.pull(ref)
        assert e.value.reason == "CannotPullContainerError"
        assert "127.0.0.1:5999" in e.value.message
        assert time.monotonic() - t0 < 15
    run(go)


def test_volumes_and_links(task):
    vol = f"dockyard-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    p = task.plan(
        [task.container("db", command=["httpd", "-f", "-p", "8080", "-h", "/www"]),
         task.container("writer", links=["db:database"],
                        command=["sh", "-c", "wget -qO- http://database:8080/ > /shared/page && "
                                             "echo task > /scratch/f && echo ok > /named/f"],
                        mountPoints=[{"sourceVolume": "shared", "containerPath": "/shared"},
                                     {"sourceVolume": "scratch", "containerPath": "/scratch"},
                                     {"sourceVolume": "named", "containerPath": "/named"}]),
         task.container("reader", volumesFrom=[{"sourceContainer": "writer", "readOnly": True}],
                        command=["sh", "-c", "cat /shared/page /named/f && ! touch /named/g"])],
        volumes=[{"name": "shared", "dockerVolumeConfiguration": {"scope": "task", "labels": {TEST_LABEL: RUN_ID}}},
                 {"name": "scratch", "host": {}},
                 {"name": "named", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}}])
    assert p.requires_running == {"writer": ["db"]} and p.requires_created == {"reader": ["writer"]}
    # The shared volume is named as given; use a unique name so parallel runs do not share it.
    named = next(v for v in p.volumes if v.source == "named")
    named.name = vol
    named.labels = {TEST_LABEL: RUN_ID}
    for spec in p.containers.values():
        spec.config["HostConfig"]["Binds"] = [b.replace("named:", f"{vol}:", 1)
                                              for b in spec.config["HostConfig"].get("Binds", [])]

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        for dir_ in p.host_dirs:
            dir_.mkdir(parents=True)
        for v in p.volumes:
            assert not await d.volume_present(v.name)
            await d.create_volume(v.name, v.driver, v.driver_opts, v.labels)
            await d.create_volume(v.name, v.driver, v.driver_opts, v.labels)  # idempotent
            assert await d.volume_present(v.name)
        ids = {}
        for name in ("db", "writer", "reader"):
            ids[name] = await d.create(p.containers[name])
        await d.start(ids["db"])
        await d.start(ids["writer"])
        die = await events.wait(lambda e: e.kind == "die" and e.id == ids["writer"])
        assert die.exit_code == 0
        await d.start(ids["reader"])
        die = await events.wait(lambda e: e.kind == "die" and e.id == ids["reader"])
        assert die.exit_code == 0
        assert (p.host_dirs[0] / "f").read_text() == "task\n"
        await d.stop(ids["db"], 0)
        for cid in ids.values():
            await d.remove(cid)
        for v in p.volumes:
            await d.remove_volume(v.name)
            assert not await d.volume_present(v.name)
            await d.remove_volume(v.name)  # missing: not an error
        events.stop()
    run(go)


def test_pid_and_ipc_task_namespaces(task):
    p = task.plan([task.container("owner", command=["sleep", "60"]),
                   task.container("peer", command=["sh", "-c", "ps | grep -q '[s]leep 60'"])],
                  pidMode="task", ipcMode="task")
    assert p.requires_running == {"peer": ["owner"]}

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        owner = await d.create(p.containers["owner"])
        await d.start(owner)
        peer = await d.create(p.containers["peer"])
        await d.start(peer)
        die = await events.wait(lambda e: e.kind == "die" and e.id == peer)
        assert die.exit_code == 0  # the peer sees the owner's processes
        await d.stop(owner, 0)
        events.stop()
    run(go)


def test_events_resume_after_a_broken_stream(task):
    p = task.plan([task.container("a", command=["true"]), task.container("b", command=["true"])])

    async def go(d: DockerDriver) -> None:
        events = Events(d, task.instance_arn)
        a = await d.create(p.containers["a"])
        await d.start(a)
        await events.wait(lambda e: e.kind == "die" and e.id == a)
        for resp in list(d._streams):  # as when the engine restarts
            resp.close()
        b = await d.create(p.containers["b"])
        await d.start(b)  # while the driver reconnects: replayed with since=<last event>
        await events.wait(lambda e: e.kind == "die" and e.id == b)
        assert [e.kind for e in events.seen if e.id == a] == ["start", "die"]  # nothing twice
        events.stop()
    run(go)


def test_usage_of_a_busy_container(task):
    # One core spinning: its CPU time grows by about a second per second.
    spec = task.spec(command=["sh", "-c", "while :; do :; done"])

    async def go(d: DockerDriver) -> None:
        cid = await d.create(spec)
        assert await d.usage(cid) is None  # created, not running
        await d.start(cid)
        first = await d.usage(cid)
        await asyncio.sleep(1.0)
        second = await d.usage(cid)
        assert first is not None and second is not None
        assert second.memory_bytes > 0
        used = (second.cpu_ns - first.cpu_ns) / 1e9 / (second.time - first.time)
        assert 0.3 < used < 1.3, used
        await d.stop(cid, 1)
        assert await d.usage(cid) is None
    run(go)
