"""The FakeDriver (agent/drivers/fake.py): a simulated host driven by the ContainerCreate body."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dockyard.agent.drivers.base import ContainerEvent, ContainerSpec, DriverError
from dockyard.agent.drivers.fake import FakeDriver
from dockyard.agent.protocol import LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN

LABELS = {LABEL_INSTANCE: "i-1", LABEL_TASK_ARN: "arn:task/1"}


def spec(name: str, image: str = "nginx", env: dict[str, Any] | None = None, ports: dict[str, str] | None = None,
         health: bool = False, labels: dict[str, str] | None = None) -> ContainerSpec:
    config: dict[str, Any] = {"Image": image, "Labels": {**LABELS, LABEL_CONTAINER_NAME: name, **(labels or {})},
                              "Env": [f"{k}={v}" for k, v in (env or {}).items()], "HostConfig": {}}
    if ports:
        config["HostConfig"]["PortBindings"] = {k: [{"HostIp": "0.0.0.0", "HostPort": v}] for k, v in ports.items()}
    config["Healthcheck"] = {"Test": ["CMD", "true"]} if health else {"Test": ["NONE"]}
    return ContainerSpec(name=name, config=config)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5.0))


async def take(events: Any, n: int) -> list[ContainerEvent]:
    return [await events.__anext__() for _ in range(n)]


def test_images_and_pulls() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"], available=["busybox:1.36"])
        assert await d.image_present("nginx:latest") and not await d.image_present("busybox:1.36")
        await d.pull("busybox:1.36")
        assert await d.image_present("busybox:1.36")
        with pytest.raises(DriverError) as e:
            await d.pull("ghcr.io/acme/app:1")
        assert e.value.reason == "CannotPullContainerError" and "ghcr.io/acme/app" in e.value.message
        with pytest.raises(DriverError) as e:
            await d.create(spec("x", image="redis"))
        assert e.value.reason == "CannotCreateContainerError"
        everything = FakeDriver()
        await everything.pull("anything/at:all")
        assert await everything.image_present("anything/at:all")

    run(body())


def test_lifecycle_events_and_exit() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"])
        events = d.events()  # subscribed now, before any iteration
        cid = await d.create(spec("web", env={"FAKE_EXIT_AFTER": "0.02", "FAKE_EXIT_CODE": "3"}))
        assert await d.create(spec("web", env={"FAKE_EXIT_AFTER": "0.02"})) == cid  # same task's container
        with pytest.raises(DriverError):
            await d.create(spec("web", labels={LABEL_TASK_ARN: "arn:task/other"}))
        await d.start(cid)
        st = await d.inspect(cid)
        assert st is not None and st.state == "running" and st.started_at and st.image_digest.startswith("sha256:")
        start, die = await take(events, 2)
        assert (start.kind, start.id) == ("start", cid)
        assert (die.kind, die.exit_code, die.oom) == ("die", 3, False)
        assert die.labels[LABEL_CONTAINER_NAME] == "web"
        st = await d.inspect(cid)
        assert st is not None and st.state == "exited" and st.exit_code == 3 and st.finished_at
        assert [s.id for s in await d.list_managed(LABEL_TASK_ARN, "arn:task/1")] == [cid]
        await d.remove("web")  # by name
        assert (await take(events, 1))[0].kind == "destroy"
        assert await d.inspect(cid) is None
        await d.close()
        assert [e async for e in events] == []

    run(body())


def test_oom_start_fail_and_kill() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"])
        events = d.events()
        oom = await d.create(spec("oom", env={"FAKE_OOM": "1"}))
        await d.start(oom)
        _, die = await take(events, 2)
        assert (die.exit_code, die.oom) == (137, True)
        st = await d.inspect(oom)
        assert st is not None and st.oom_killed
        bad = await d.create(spec("bad", env={"FAKE_START_FAIL": "exec format error"}))
        with pytest.raises(DriverError) as e:
            await d.start(bad)
        assert (e.value.reason, e.value.message) == ("CannotStartContainerError", "exec format error")
        web = await d.create(spec("web"))
        await d.start(web)
        d.kill(web, 9)
        _, die = await take(events, 2)
        assert (die.id, die.exit_code) == (web, 9)

    run(body())


def test_stop_signal_timeout_and_ignore() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"])
        polite = await d.create(spec("polite"))
        slow = await d.create(spec("slow", env={"FAKE_STOP_AFTER": "0.05", "FAKE_STOP_EXIT_CODE": "0"}))
        stubborn = await d.create(spec("stubborn", env={"FAKE_IGNORE_STOP": "1"}))
        for c in (polite, slow, stubborn):
            await d.start(c)
        await d.stop(polite, 10)
        t0 = time.monotonic()
        await d.stop(slow, 10)
        assert 0.04 <= time.monotonic() - t0 < 1
        t0 = time.monotonic()
        await asyncio.gather(d.stop(stubborn, 0.1), d.stop(stubborn, 0.1))  # concurrent stops: one kill
        assert time.monotonic() - t0 >= 0.1
        codes = [(await d.inspect(c)).exit_code for c in (polite, slow, stubborn)]  # type: ignore[union-attr]
        assert codes == [143, 0, 137]
        await d.stop(polite, 1)  # stopping an exited container is not an error
        await d.stop("missing", 1)

    run(body())


def test_ports() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"])
        a = await d.create(spec("a", ports={"80/tcp": "", "53/udp": ""}))
        b = await d.create(spec("b", ports={"80/tcp": "8080"}))
        c = await d.create(spec("c", ports={"80/tcp": "8080"}))
        await d.start(a)
        await d.start(b)
        st = await d.inspect(a)
        assert st is not None
        assert sorted((p.container_port, p.host_port, p.protocol) for p in st.ports) == \
            [(53, 32769, "udp"), (80, 32768, "tcp")]
        with pytest.raises(DriverError) as e:
            await d.start(c)
        assert "port is already allocated" in e.value.message
        await d.stop(b, 1)
        await d.start(c)  # released when b exited
        assert d.bound_ports()[(8080, "tcp")] == c
        # Each driver is its own host.
        other = FakeDriver(images=["nginx"])
        o = await other.create(spec("o", ports={"80/tcp": "8080"}))
        await other.start(o)

    run(body())


def test_health() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"])
        events = d.events()
        h = await d.create(spec("h", health=True, env={"FAKE_HEALTH": "healthy_after:0.02,unhealthy_after:0.04"}))
        plain = await d.create(spec("plain", env={"FAKE_HEALTH": "healthy"}))  # no Healthcheck: ignored
        await d.start(h)
        await d.start(plain)
        st = await d.inspect(h)
        assert st is not None and st.health == "starting"
        evs = await take(events, 4)
        assert [(e.kind, e.health) for e in evs if e.kind == "health"] == [("health", "healthy"),
                                                                           ("health", "unhealthy")]
        assert all(e.id == h for e in evs if e.kind == "health")
        st = await d.inspect(plain)
        assert st is not None and st.health == ""
        d.set_health(h, "healthy")
        assert (await take(events, 1))[0].health == "healthy"

    run(body())


def test_volumes_and_unlabelled_containers() -> None:
    async def body() -> None:
        d = FakeDriver(images=["nginx"], start_delay=0.01, create_delay=0.01)
        await d.create_volume("v", "local", {}, {"a": "b"})
        await d.create_volume("v", "local", {}, {})  # idempotent
        assert await d.volume_present("v") and d.volumes["v"]["labels"] == {"a": "b"}
        await d.remove_volume("v")
        assert not await d.volume_present("v")
        events = d.events()
        s = spec("mine")
        s.config["Labels"] = {}
        cid = await d.create(s)
        await d.start(cid)
        tagged = await d.create(spec("tagged"))
        await d.start(tagged)
        ev = (await take(events, 1))[0]
        assert ev.id == tagged  # only containers with the instance label are reported
        info = await d.info()
        assert info.cpus == 4 and info.os_type == "linux"

    run(body())
