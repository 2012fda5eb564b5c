"""The agent channel end to end: a real `dockyard server`, agents in this process.

Agents run the real TaskEngine on FakeDriver (a simulated host that outlives an agent, as
a real host does). Protocol-level tests drive the websocket by hand (``RawAgent``) or use
a stand-in engine (``StubEngine``) to look at the session alone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
import yarl

from dockyard.agent import protocol
from dockyard.agent.drivers.base import HostInfo
from dockyard.agent.drivers.fake import FakeDriver
from dockyard.agent.protocol import LABEL_TASK_ARN
from dockyard.agent.session import presigned_url
from tests.helpers.agents import AgentPool, create_agent_key
from tests.helpers.server import REGION, ServerProcess
from tests.helpers.wait import wait_until

HEARTBEAT = 1.0  # the server's silence limit is 3 x this


# -- the stand-in runtime ------------------------------------------------------------------------

class StubHost:
    """What a host holds: containers by id, each with its labels (task, container name, instance)."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.next_port = 32768

    async def info(self) -> HostInfo:
        return HostInfo(cpus=4, memory_mib=8192, os_type="linux", architecture="x86_64", api_version="1.43",
                        server_version="24.0.7", logging_drivers=["json-file", "local", "awslogs"])

    async def close(self) -> None:
        pass

    def of_task(self, task_arn: str) -> list[dict[str, Any]]:
        return [c for c in self.containers.values() if c["task"] == task_arn]

    def exit(self, task_arn: str, name: str, code: int) -> None:
        """A container exits while nobody watches (the agent is stopped)."""
        for c in self.of_task(task_arn):
            if c["name"] == name:
                c["state"], c["exitCode"] = "exited", code


class StubEngine:
    """Just enough of TaskEngine for the channel: containers start at once, stop at once."""

    def __init__(self, driver: StubHost, config: Any, report: Any) -> None:
        self.host = driver
        self.config = config
        self.report = report
        self.tasks: dict[str, dict[str, Any]] = {}
        self.essential: dict[str, set[str]] = {}
        self.applied: list[tuple[str, str, bool]] = []  # (task ARN, desiredStatus, full)
        self.acked: list[tuple[str, str]] = []
        self._closed = asyncio.Event()

    def _state(self, arn: str) -> dict[str, Any]:
        return self.tasks[arn]

    def _containers(self, arn: str) -> list[dict[str, Any]]:
        out = []
        for c in self.host.of_task(arn):
            cs: dict[str, Any] = {"name": c["name"], "runtimeId": c["id"], "imageDigest": "sha256:" + "0" * 64,
                                  "lastStatus": "RUNNING" if c["state"] == "running" else "STOPPED",
                                  "networkBindings": c["bindings"]}
            if c["state"] == "exited":
                cs["exitCode"] = c["exitCode"]
            out.append(cs)
        return out

    async def adopt(self) -> list[dict[str, Any]]:
        for c in self.host.containers.values():
            if c["instance"] != self.config.instance_arn:
                continue
            arn = c["task"]
            self.essential.setdefault(arn, set()).add(c["name"])
            self.tasks.setdefault(arn, {"taskArn": arn, "lastStatus": "RUNNING", "startedAt": c["started"]})
        for arn, st in self.tasks.items():
            st["containers"] = self._containers(arn)
            exited = [c for c in st["containers"] if c["lastStatus"] == "STOPPED"]
            if exited:
                st.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode="EssentialContainerExited",
                          reason="Essential container in task exited", executionStoppedAt=time.time())
        return list(self.tasks.values())

    def apply(self, payloads: list[dict[str, Any]], full: bool) -> None:
        self.applied += [(p["taskArn"], p["desiredStatus"], full) for p in payloads]
        listed = set()
        for p in payloads:
            arn = p["taskArn"]
            listed.add(arn)
            if p["desiredStatus"] == "RUNNING":
                if arn not in self.tasks:
                    self._start(p)
            else:
                self._stop(arn, p.get("stopCode"), p.get("stoppedReason"))
        if full:
            for arn in list(self.tasks):
                if arn not in listed:
                    self._stop(arn, None, None)

    def _start(self, p: dict[str, Any]) -> None:
        arn = p["taskArn"]
        now = time.time()
        for cd in p["taskDefinition"]["containerDefinitions"]:
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            bindings = []
            for pm in cd.get("portMappings") or []:
                host_port = pm.get("hostPort") or self.host.next_port
                self.host.next_port += 1
                bindings.append({"bindIP": "0.0.0.0", "containerPort": pm["containerPort"], "hostPort": host_port,
                                 "protocol": pm.get("protocol", "tcp")})
            self.host.containers[cid] = {"id": cid, "task": arn, "name": cd["name"], "state": "running",
                                         "instance": self.config.instance_arn, "bindings": bindings,
                                         "started": now}
        self.essential[arn] = {cd["name"] for cd in p["taskDefinition"]["containerDefinitions"]
                               if cd.get("essential", True)}
        self.tasks[arn] = {"taskArn": arn, "lastStatus": "PENDING", "pullStartedAt": now, "pullStoppedAt": now,
                           "containers": [{"name": cd["name"], "lastStatus": "PENDING"}
                                          for cd in p["taskDefinition"]["containerDefinitions"]]}
        self.report(dict(self.tasks[arn]))
        asyncio.get_running_loop().call_soon(self._running, arn)

    def _running(self, arn: str) -> None:
        st = self.tasks[arn]
        if st["lastStatus"] != "PENDING":
            return
        st.update(lastStatus="RUNNING", startedAt=time.time(), containers=self._containers(arn))
        self.report(dict(st))

    def _stop(self, arn: str, code: str | None, reason: str | None) -> None:
        st = self.tasks.get(arn)
        if st is None or st["lastStatus"] == "STOPPED":
            return
        for c in self.host.of_task(arn):
            if c["state"] == "running":
                c["state"], c["exitCode"] = "exited", 143
        st.update(lastStatus="STOPPED", executionStoppedAt=time.time(), containers=self._containers(arn))
        self.report(dict(st))

    def exit_container(self, arn: str, name: str, code: int) -> None:
        self.host.exit(arn, name, code)
        st = self.tasks[arn]
        if name in self.essential.get(arn, set()):
            for c in self.host.of_task(arn):
                if c["state"] == "running":
                    c["state"], c["exitCode"] = "exited", 137
            st.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode="EssentialContainerExited",
                      reason="Essential container in task exited", executionStoppedAt=time.time())
        st["containers"] = self._containers(arn)
        self.report(dict(st))

    def acknowledged(self, task_arn: str, last_status: str) -> None:
        self.acked.append((task_arn, last_status))

    def states(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.tasks.values()]

    async def run(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def srv():
    s = ServerProcess(env={protocol.HEARTBEAT_ENV: str(HEARTBEAT)}).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def ecs(srv):
    return srv.client("ecs")


@pytest.fixture(scope="module")
def agent_key(srv):
    return create_agent_key(srv)


@pytest.fixture(scope="module")
def pool():
    p = AgentPool()
    yield p
    p.close()


@pytest.fixture
def cluster(ecs):
    name = "ac-" + uuid.uuid4().hex[:10]
    ecs.create_cluster(clusterName=name)
    return name


def start_agent(pool, srv, cluster, key, driver=None, **kw):
    """The real TaskEngine on a FakeDriver (a simulated host that outlives the agent)."""
    driver = driver if driver is not None else FakeDriver()
    return pool.start(srv, cluster, key[0], key[1], driver=driver, heartbeat=HEARTBEAT, **kw)


def start_stub_agent(pool, srv, cluster, key, host=None, **kw):
    """The stand-in engine (protocol-level tests)."""
    host = host if host is not None else StubHost()
    return pool.start(srv, cluster, key[0], key[1], driver=host, engine_factory=StubEngine,
                      heartbeat=HEARTBEAT, **kw)


def containers_of(driver, task_arn):
    return [c for c in driver.containers.values() if c.labels.get(LABEL_TASK_ARN) == task_arn]


def kill(agent, task_arn, code):
    """The task's container dies (``docker kill``) on the agent's fake host."""
    (c,) = containers_of(agent.driver, task_arn)
    agent.pool.call(lambda: agent.driver.kill(c.id, code))


def describe_instance(ecs, cluster, arn):
    return ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]



def task_def(ecs, family=None, **container):
    cd = {"name": "web", "image": "busybox", "memory": 64, "cpu": 128, "essential": True,
          "portMappings": [{"containerPort": 80, "hostPort": 0}], **container}
    return ecs.register_task_definition(family=family or "ac-" + uuid.uuid4().hex[:8],
                                        containerDefinitions=[cd])["taskDefinition"]["taskDefinitionArn"]


def task_of(ecs, cluster, arn):
    return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]


def wait_status(ecs, cluster, arn, status, timeout=10.0):
    return wait_until(lambda: (t := task_of(ecs, cluster, arn))["lastStatus"] == status and t, timeout,
                      f"task {arn} to be {status}")


def raw_connect(url, **kw):
    """Open a websocket with an exact (already encoded) URL; returns (status or None, ws, session)."""
    async def go():
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(yarl.URL(url, encoded=True), **kw)
        except aiohttp.WSServerHandshakeError as e:
            await http.close()
            return e.status, None, None
        return None, ws, http
    return go()


# -- authentication ----------------------------------------------------------------------------------

def register_bare(ecs, cluster):
    return ecs.register_container_instance(
        cluster=cluster, totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                                         {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}],
    )["containerInstance"]["containerInstanceArn"]


def handshake_status(pool, url):
    async def go():
        status, ws, http = await raw_connect(url)
        if ws is not None:
            await ws.close()
            await http.close()
            return 101
        return status
    return pool.run(go())


def test_refused_without_a_valid_signature(pool, srv, ecs, cluster, agent_key):
    arn = register_bare(ecs, cluster)
    base = f"ws://127.0.0.1:{srv.port}{protocol.PATH}"
    from urllib.parse import quote
    assert handshake_status(pool, f"{base}?containerInstance={quote(arn, safe='')}") == 403
    bad = presigned_url(srv.endpoint, arn, REGION, agent_key[0], "not-the-secret")
    assert handshake_status(pool, bad) == 403
    good = presigned_url(srv.endpoint, arn, REGION, *agent_key)
    tampered = good.replace("containerInstance=", "containerInstance=x")
    assert handshake_status(pool, tampered) == 403
    # The signed path is /ws/agent: anything else is not the channel.
    assert handshake_status(pool, good.replace(protocol.PATH, "/ws/other")) in (403, 404)
    assert handshake_status(pool, good) == 101


def test_refused_for_another_accounts_instance(pool, srv, ecs, cluster):
    arn = register_bare(ecs, cluster)
    other = create_agent_key(srv, account_id="444455556666", user="intruder")
    assert handshake_status(pool, presigned_url(srv.endpoint, arn, REGION, *other)) == 403
    # The same key but signed for another region does not reach a us-east-1 instance either.
    own = create_agent_key(srv, user="agent-eu")
    assert handshake_status(pool, presigned_url(srv.endpoint, arn, "eu-west-1", *own)) == 403


def test_refused_for_an_inactive_instance(pool, srv, ecs, cluster, agent_key):
    arn = register_bare(ecs, cluster)
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert handshake_status(pool, presigned_url(srv.endpoint, arn, REGION, *agent_key)) == 403


# -- connection state ---------------------------------------------------------------------------------

def test_agent_connected_while_connected(pool, srv, ecs, cluster, agent_key):
    agent = start_agent(pool, srv, cluster, agent_key)
    ci = describe_instance(ecs, cluster, agent.instance_arn)
    assert ci["agentConnected"] is True
    assert ci["status"] == "ACTIVE"
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["ecs.instance-type"] == "dockyard.4c.8g"
    assert attrs["ecs.availability-zone"] == "us-east-1a"
    assert "com.amazonaws.ecs.capability.docker-remote-api.1.43" in attrs
    assert "com.amazonaws.ecs.capability.logging-driver.json-file" in attrs
    assert "ecs.capability.container-health-check" in attrs
    cpu = next(r for r in ci["registeredResources"] if r["name"] == "CPU")
    assert cpu["integerValue"] == 4096
    agent.stop()
    wait_until(lambda: not describe_instance(ecs, cluster, agent.instance_arn)["agentConnected"],
               what="agentConnected false after the agent stopped")


def test_agent_connected_false_after_heartbeat_silence(pool, srv, ecs, cluster, agent_key):
    arn = register_bare(ecs, cluster)

    async def connect_and_go_quiet():
        status, ws, http = await raw_connect(presigned_url(srv.endpoint, arn, REGION, *agent_key),
                                             autoping=False)
        assert status is None
        await ws.send_str(orjson.dumps({"type": "hello", "agentVersion": "test", "tasks": []}).decode())
        first = orjson.loads((await ws.receive(timeout=5)).data)
        return ws, http, first

    ws, http, first = pool.run(connect_and_go_quiet())
    try:
        assert first == {"type": "tasks", "seq": 1, "full": True, "tasks": []}
        assert describe_instance(ecs, cluster, arn)["agentConnected"] is True
        t0 = time.monotonic()
        wait_until(lambda: not describe_instance(ecs, cluster, arn)["agentConnected"], timeout=10,
                   what="agentConnected false after silence")
        assert time.monotonic() - t0 >= 3 * HEARTBEAT - 0.6

        async def last_frames():
            frames = []
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return frames
                frames.append(orjson.loads(msg.data))
        frames = pool.run(last_frames())
        assert frames[-1]["type"] == "close"
    finally:
        pool.run(http.close())


def test_second_connection_replaces_the_first(pool, srv, ecs, cluster, agent_key):
    arn = register_bare(ecs, cluster)

    async def hello(ws):
        await ws.send_str(orjson.dumps({"type": "hello", "agentVersion": "test", "tasks": []}).decode())
        return orjson.loads((await ws.receive(timeout=5)).data)

    async def two():
        _, ws1, h1 = await raw_connect(presigned_url(srv.endpoint, arn, REGION, *agent_key))
        await hello(ws1)
        _, ws2, h2 = await raw_connect(presigned_url(srv.endpoint, arn, REGION, *agent_key))
        assert (await hello(ws2))["full"] is True
        close = orjson.loads((await ws1.receive(timeout=5)).data)
        await ws1.close()  # as the agent answers a close frame
        return close, ws2, (h1, h2)

    close, _ws2, https = pool.run(two())
    try:
        assert close["type"] == "close" and close["code"] == protocol.CLOSE_REPLACED
        time.sleep(0.3)
        assert describe_instance(ecs, cluster, arn)["agentConnected"] is True
    finally:
        for h in https:
            pool.run(h.close())
    wait_until(lambda: not describe_instance(ecs, cluster, arn)["agentConnected"], what="disconnected")


# -- tasks ---------------------------------------------------------------------------------------------

def test_run_task_reaches_running(pool, srv, ecs, cluster, agent_key):
    agent = start_agent(pool, srv, cluster, agent_key)
    td = task_def(ecs)
    arn = ecs.run_task(cluster=cluster, taskDefinition=td)["tasks"][0]["taskArn"]
    task = wait_status(ecs, cluster, arn, "RUNNING")
    c = task["containers"][0]
    assert c["lastStatus"] == "RUNNING"
    (fc,) = containers_of(agent.driver, arn)
    assert c["runtimeId"] == fc.id and fc.state == "running"
    assert c["imageDigest"].startswith("sha256:")
    (b,) = c["networkBindings"]
    assert b["containerPort"] == 80 and b["hostPort"] >= 32768 and b["protocol"] == "tcp"
    for k in ("pullStartedAt", "pullStoppedAt", "startedAt", "connectivityAt"):
        assert task[k].timestamp() > 0
    assert task["pullStartedAt"] <= task["pullStoppedAt"] <= task["startedAt"]
    assert task["connectivity"] == "CONNECTED"
    assert task["desiredStatus"] == "RUNNING"
    ci = describe_instance(ecs, cluster, agent.instance_arn)
    assert ci["runningTasksCount"] == 1 and ci["pendingTasksCount"] == 0
    cl = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert cl["runningTasksCount"] == 1 and cl["pendingTasksCount"] == 0
    # The RUNNING report was acknowledged: nothing is left to resend.
    wait_until(lambda: agent.call(lambda: agent.session.unacknowledged()) == [], what="reports acked")


def test_stop_task_gives_everything_back(pool, srv, ecs, cluster, agent_key):
    agent = start_agent(pool, srv, cluster, agent_key)
    before = describe_instance(ecs, cluster, agent.instance_arn)["remainingResources"]
    td = task_def(ecs, portMappings=[{"containerPort": 80, "hostPort": 8080}])
    arn = ecs.run_task(cluster=cluster, taskDefinition=td)["tasks"][0]["taskArn"]
    wait_status(ecs, cluster, arn, "RUNNING")
    during = {r["name"]: r for r in describe_instance(ecs, cluster, agent.instance_arn)["remainingResources"]}
    assert during["CPU"]["integerValue"] == 4096 - 128
    assert "8080" in during["PORTS"]["stringSetValue"]
    ecs.stop_task(cluster=cluster, task=arn, reason="enough")
    task = wait_status(ecs, cluster, arn, "STOPPED")
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "enough"
    assert task["containers"][0]["exitCode"] == 143
    assert task["containers"][0]["lastStatus"] == "STOPPED"
    assert task["stoppingAt"] <= task["executionStoppedAt"] <= task["stoppedAt"]
    (fc,) = containers_of(agent.driver, arn)
    assert fc.state == "exited"
    ci = describe_instance(ecs, cluster, agent.instance_arn)
    assert ci["remainingResources"] == before
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    cl = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert cl["runningTasksCount"] == 0 and cl["pendingTasksCount"] == 0
    wait_until(lambda: agent.call(lambda: agent.session.unacknowledged()) == [], what="STOPPED acked")


def test_essential_exit_stops_the_task(pool, srv, ecs, cluster, agent_key):
    agent = start_agent(pool, srv, cluster, agent_key)
    # One container exits by itself (FAKE_EXIT_AFTER), the other is killed.
    exits = task_def(ecs, portMappings=[], environment=[{"name": "FAKE_EXIT_AFTER", "value": "0.3"},
                                                        {"name": "FAKE_EXIT_CODE", "value": "3"}])
    a = ecs.run_task(cluster=cluster, taskDefinition=exits)["tasks"][0]["taskArn"]
    b = ecs.run_task(cluster=cluster, taskDefinition=task_def(ecs, portMappings=[]))["tasks"][0]["taskArn"]
    wait_status(ecs, cluster, b, "RUNNING")
    kill(agent, b, 137)
    for arn, code in ((a, 3), (b, 137)):
        task = wait_status(ecs, cluster, arn, "STOPPED")
        assert task["stopCode"] == "EssentialContainerExited"
        assert task["stoppedReason"] == "Essential container in task exited"
        assert task["containers"][0]["exitCode"] == code
        assert task["desiredStatus"] == "STOPPED"
    assert describe_instance(ecs, cluster, agent.instance_arn)["runningTasksCount"] == 0


def test_reconnect_reconciles_both_ways(pool, srv, ecs, cluster, agent_key):
    agent = start_agent(pool, srv, cluster, agent_key)
    td = task_def(ecs)
    stopped_meanwhile, exits_meanwhile = (ecs.run_task(cluster=cluster, taskDefinition=td)["tasks"][0]["taskArn"]
                                          for _ in range(2))
    for arn in (stopped_meanwhile, exits_meanwhile):
        wait_status(ecs, cluster, arn, "RUNNING")
    ids = {arn: [c.id for c in containers_of(agent.driver, arn)] for arn in (stopped_meanwhile, exits_meanwhile)}

    # Cut the channel and keep the agent from coming back until we say so.
    def cut():
        agent.session.server = "http://127.0.0.1:9"
        agent.session._ws._response.connection.transport.abort()
    agent.call(cut)
    wait_until(lambda: not describe_instance(ecs, cluster, agent.instance_arn)["agentConnected"],
               what="agentConnected false after the connection dropped")
    ecs.stop_task(cluster=cluster, task=stopped_meanwhile)
    kill(agent, exits_meanwhile, 1)
    time.sleep(0.3)
    assert task_of(ecs, cluster, exits_meanwhile)["lastStatus"] == "RUNNING"  # nobody told the server yet
    assert containers_of(agent.driver, stopped_meanwhile)[0].state == "running"  # nobody told the agent yet
    agent.call(lambda: setattr(agent.session, "server", srv.endpoint))
    agent.wait_connected(connects=2)
    t = wait_status(ecs, cluster, exits_meanwhile, "STOPPED")
    assert t["stopCode"] == "EssentialContainerExited" and t["containers"][0]["exitCode"] == 1
    t = wait_status(ecs, cluster, stopped_meanwhile, "STOPPED")
    assert t["stopCode"] == "UserInitiated" and t["containers"][0]["exitCode"] == 143
    assert containers_of(agent.driver, stopped_meanwhile)[0].state == "exited"
    for arn, before in ids.items():
        assert [c.id for c in containers_of(agent.driver, arn)] == before  # nothing created twice
    assert len(agent.driver.containers) == 2
    assert describe_instance(ecs, cluster, agent.instance_arn)["agentConnected"] is True


def test_session_resends_what_was_not_acknowledged(pool, srv, ecs, cluster, agent_key):
    """Protocol level, on the stand-in engine: reports made while disconnected go up in the hello."""
    agent = start_stub_agent(pool, srv, cluster, agent_key)
    td = task_def(ecs)
    arn = ecs.run_task(cluster=cluster, taskDefinition=td)["tasks"][0]["taskArn"]
    wait_status(ecs, cluster, arn, "RUNNING")

    def cut():
        agent.session.server = "http://127.0.0.1:9"
        agent.session._ws._response.connection.transport.abort()
    agent.call(cut)
    wait_until(lambda: not describe_instance(ecs, cluster, agent.instance_arn)["agentConnected"],
               what="disconnected")
    agent.call(lambda: agent.engine.exit_container(arn, "web", 5))
    assert [s["lastStatus"] for s in agent.call(agent.session.unacknowledged)] == ["STOPPED"]
    agent.call(lambda: setattr(agent.session, "server", srv.endpoint))
    agent.wait_connected(connects=2)
    t = wait_status(ecs, cluster, arn, "STOPPED")
    assert t["stopCode"] == "EssentialContainerExited" and t["containers"][0]["exitCode"] == 5
    assert agent.call(agent.session.unacknowledged) == []
    assert agent.call(lambda: (arn, "STOPPED") in agent.engine.acked)
    # The agent's own stop was never pushed back to it: one RUNNING push, one full sync listing it.
    applied = agent.call(lambda: [a for a in agent.engine.applied if a[0] == arn])
    assert applied[0] == (arn, "RUNNING", False)
    assert all(a[1] == "RUNNING" for a in applied)


def test_agent_restart_readopts(pool, srv, ecs, cluster, agent_key):
    driver = FakeDriver()
    agent = start_agent(pool, srv, cluster, agent_key, driver=driver)
    instance = agent.instance_arn
    td = task_def(ecs)
    keep, exits, stops = (ecs.run_task(cluster=cluster, taskDefinition=td)["tasks"][0]["taskArn"]
                          for _ in range(3))
    for arn in (keep, exits, stops):
        wait_status(ecs, cluster, arn, "RUNNING")
    runtime_ids = {arn: task_of(ecs, cluster, arn)["containers"][0]["runtimeId"] for arn in (keep, exits, stops)}
    agent.stop()
    wait_until(lambda: not describe_instance(ecs, cluster, instance)["agentConnected"], what="disconnected")
    # While no agent runs: a container exits, and a task is stopped through the API.
    kill(agent, exits, 2)
    ecs.stop_task(cluster=cluster, task=stops)
    assert all(c.state == "running" for c in containers_of(driver, keep) + containers_of(driver, stops))
    agent = start_agent(pool, srv, cluster, agent_key, driver=driver, data_dir=agent.data_dir)
    assert agent.instance_arn == instance
    t = wait_status(ecs, cluster, exits, "STOPPED")
    assert t["stopCode"] == "EssentialContainerExited" and t["containers"][0]["exitCode"] == 2
    t = wait_status(ecs, cluster, stops, "STOPPED")
    assert t["stopCode"] == "UserInitiated"
    t = task_of(ecs, cluster, keep)
    assert t["lastStatus"] == "RUNNING" and t["containers"][0]["runtimeId"] == runtime_ids[keep]
    assert sorted(driver.containers) == sorted(runtime_ids.values())  # nothing recreated
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == [instance]
    ci = describe_instance(ecs, cluster, instance)
    assert ci["agentConnected"] is True and ci["runningTasksCount"] == 1


def test_server_restart_while_tasks_run(pool):
    srv2 = ServerProcess(env={protocol.HEARTBEAT_ENV: str(HEARTBEAT)}).start()
    try:
        ecs2 = srv2.client("ecs")
        key = create_agent_key(srv2)
        ecs2.create_cluster(clusterName="restart")
        agent = start_agent(pool, srv2, "restart", key)
        td = task_def(ecs2)
        arns = [t["taskArn"] for t in ecs2.run_task(cluster="restart", taskDefinition=td, count=3)["tasks"]]
        for arn in arns:
            wait_status(ecs2, "restart", arn, "RUNNING")
        ids = sorted(agent.driver.containers)
        srv2.stop()
        srv2.start()
        agent.wait_connected(timeout=20, connects=2)
        ci = describe_instance(ecs2, "restart", agent.instance_arn)
        assert ci["agentConnected"] is True and ci["runningTasksCount"] == 3
        for arn in arns:
            assert task_of(ecs2, "restart", arn)["lastStatus"] == "RUNNING"
        assert sorted(agent.driver.containers) == ids
        assert ecs2.describe_clusters(clusters=["restart"])["clusters"][0]["runningTasksCount"] == 3
        # Pushes reach the agent after the restart too.
        ecs2.stop_task(cluster="restart", task=arns[0])
        wait_status(ecs2, "restart", arns[0], "STOPPED")
        (c,) = containers_of(agent.driver, arns[0])
        assert c.state == "exited"
        agent.stop()
    finally:
        srv2.cleanup()


# -- the wire, frame by frame ---------------------------------------------------------------------------

class RawAgent:
    """A hand-driven websocket client: frames in and out as the protocol writes them."""

    def __init__(self, pool, srv, instance_arn, key):
        self.pool = pool
        self.seq = 0
        status, self.ws, self.http = pool.run(raw_connect(presigned_url(srv.endpoint, instance_arn, REGION, *key)))
        assert status is None

    def send(self, frame):
        self.pool.run(self.ws.send_str(orjson.dumps(frame).decode()))

    def recv(self, timeout=5.0):
        async def go():
            while True:
                msg = await self.ws.receive(timeout=timeout)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = orjson.loads(msg.data)
                if frame["type"] != "heartbeat":
                    return frame
        return self.pool.run(go())

    def state(self, *states):
        self.seq += 1
        self.send({"type": "state", "seq": self.seq, "tasks": list(states)})
        assert self.recv() == {"type": "ack", "seq": self.seq}

    def close(self):
        self.pool.run(self.ws.close())
        self.pool.run(self.http.close())


def test_frames_and_report_rules(pool, srv, ecs, cluster, agent_key):
    instance = ecs.register_container_instance(
        cluster=cluster, totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                                         {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}],
    )["containerInstance"]["containerInstanceArn"]
    raw = RawAgent(pool, srv, instance, agent_key)
    try:
        raw.send({"type": "hello", "agentVersion": "raw", "tasks": []})
        assert raw.recv() == {"type": "tasks", "seq": 1, "full": True, "tasks": []}
        raw.send({"type": "ack", "seq": 1})
        td = task_def(ecs, portMappings=[])
        run = ecs.run_task(cluster=cluster, taskDefinition=td, overrides={
            "containerOverrides": [{"name": "web", "environment": [{"name": "A", "value": "1"}]}]})["tasks"][0]
        arn = run["taskArn"]
        push = raw.recv()
        assert push["type"] == "tasks" and push["seq"] == 2 and push["full"] is False
        (p,) = push["tasks"]
        assert p["taskArn"] == arn and p["desiredStatus"] == "RUNNING"
        assert p["clusterArn"] == run["clusterArn"]
        assert p["taskDefinition"]["taskDefinitionArn"] == td
        assert p["family"] == td.rsplit("/", 1)[1].split(":")[0] and p["revision"] == 1
        assert p["containers"] == [{"name": "web", "containerArn": run["containers"][0]["containerArn"]}]
        assert p["overrides"]["containerOverrides"][0]["environment"] == [{"name": "A", "value": "1"}]
        raw.send({"type": "ack", "seq": 2})

        raw.state({"taskArn": arn, "lastStatus": "RUNNING", "startedAt": 1700000000.5,
                   "containers": [{"name": "web", "lastStatus": "RUNNING", "runtimeId": "c1",
                                   "nope": "ignored"}, {"name": "ghost", "lastStatus": "RUNNING"}]})
        t = task_of(ecs, cluster, arn)
        assert t["lastStatus"] == "RUNNING" and t["startedAt"].timestamp() == 1700000000.5
        assert [c["name"] for c in t["containers"]] == ["web"] and t["containers"][0]["runtimeId"] == "c1"
        version = t["version"]
        # The same report again changes nothing; PENDING after RUNNING is stale.
        raw.state({"taskArn": arn, "lastStatus": "RUNNING", "startedAt": 1700000000.5,
                   "containers": [{"name": "web", "lastStatus": "RUNNING", "runtimeId": "c1"}]},
                  {"taskArn": arn, "lastStatus": "PENDING", "containers": []})
        assert task_of(ecs, cluster, arn)["version"] == version
        # The agent decides to stop it: desiredStatus STOPPED with its code; then STOPPING.
        raw.state({"taskArn": arn, "lastStatus": "STOPPING", "desiredStatus": "STOPPED",
                   "stopCode": "EssentialContainerExited", "reason": "x" * 2000,
                   "containers": [{"name": "web", "lastStatus": "STOPPED", "exitCode": 1, "reason": "y" * 2000}]})
        t = task_of(ecs, cluster, arn)
        assert (t["lastStatus"], t["desiredStatus"], t["stopCode"]) == ("STOPPING", "STOPPED",
                                                                        "EssentialContainerExited")
        assert len(t["stoppedReason"]) == 1024 and len(t["containers"][0]["reason"]) == 1024
        # RUNNING after STOPPING is ignored; a StopTask now keeps the first stop code.
        raw.state({"taskArn": arn, "lastStatus": "RUNNING", "containers": []})
        assert task_of(ecs, cluster, arn)["lastStatus"] == "STOPPING"
        ecs.stop_task(cluster=cluster, task=arn, reason="late")
        raw.state({"taskArn": arn, "lastStatus": "STOPPED", "executionStoppedAt": 1700000100.0, "containers": []})
        t = task_of(ecs, cluster, arn)
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "EssentialContainerExited"
        assert t["executionStoppedAt"].timestamp() == 1700000100.0
        assert t["containers"][0]["exitCode"] == 1
        # Reports for a stopped task, an unknown task or another instance's task change nothing.
        raw.state({"taskArn": arn, "lastStatus": "RUNNING", "containers": []},
                  {"taskArn": arn.rsplit("/", 1)[0] + "/" + "0" * 32, "lastStatus": "RUNNING", "containers": []},
                  "not an object", {"lastStatus": "RUNNING"})
        assert task_of(ecs, cluster, arn)["lastStatus"] == "STOPPED"
        # No task frame was pushed for the agent's own stop (nor for the StopTask after it).
        with pytest.raises(TimeoutError):
            raw.recv(timeout=0.5)
        ci = describe_instance(ecs, cluster, instance)
        assert ci["runningTasksCount"] == 0
        assert next(r for r in ci["remainingResources"] if r["name"] == "CPU")["integerValue"] == 2048
    finally:
        raw.close()


def test_a_task_that_never_ran_failed_to_start(pool, srv, ecs, cluster, agent_key):
    instance = register_bare(ecs, cluster)
    raw = RawAgent(pool, srv, instance, agent_key)
    try:
        raw.send({"type": "hello", "agentVersion": "raw", "tasks": []})
        raw.recv()
        arn = ecs.run_task(cluster=cluster, taskDefinition=task_def(ecs, portMappings=[]))["tasks"][0]["taskArn"]
        raw.recv()
        raw.state({"taskArn": arn, "lastStatus": "STOPPED", "containers": [
            {"name": "web", "lastStatus": "STOPPED", "reason": "CannotPullContainerError: no such image"}]})
        t = task_of(ecs, cluster, arn)
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"] == "web: CannotPullContainerError: no such image"
        assert "startedAt" not in t
    finally:
        raw.close()


def test_instance_deregistered_while_connected_is_closed(pool, srv, ecs, cluster, agent_key):
    instance = register_bare(ecs, cluster)
    raw = RawAgent(pool, srv, instance, agent_key)
    try:
        raw.send({"type": "hello", "agentVersion": "raw", "tasks": []})
        raw.recv()
        ecs.deregister_container_instance(cluster=cluster, containerInstance=instance)
        frame = raw.recv()
        assert frame["type"] == "close" and frame["code"] == protocol.CLOSE_POLICY
    finally:
        raw.close()


# -- the command ------------------------------------------------------------------------------------

def test_dockyard_agent_command(srv, ecs, cluster, agent_key, tmp_path):
    """`dockyard agent --driver fake`: registers, runs tasks, SIGTERM disconnects, a restart is the same instance."""
    import os
    import signal
    import subprocess
    import sys

    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {agent_key[0]}\naws_secret_access_key = {agent_key[1]}\n")
    cmd = [sys.executable, "-m", "dockyard.cli.main", "agent", "--server", srv.endpoint, "--cluster", cluster,
           "--data-dir", str(tmp_path / "agent"), "--driver", "fake", "--credentials-file", str(creds),
           "--availability-zone", "us-east-1c", "--reserved-memory", "192"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    env[protocol.HEARTBEAT_ENV] = str(HEARTBEAT)

    def run():
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def connected_instance():
        arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        if len(arns) == 1 and describe_instance(ecs, cluster, arns[0])["agentConnected"]:
            return arns[0]
        return None

    proc = run()
    try:
        instance = wait_until(connected_instance, timeout=20, what="the agent to connect")
        ci = describe_instance(ecs, cluster, instance)
        attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
        assert attrs["ecs.availability-zone"] == "us-east-1c"
        mem = next(r for r in ci["registeredResources"] if r["name"] == "MEMORY")["integerValue"]
        assert mem == 8192 - 192
        arn = ecs.run_task(cluster=cluster, taskDefinition=task_def(ecs))["tasks"][0]["taskArn"]
        wait_status(ecs, cluster, arn, "RUNNING")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not describe_instance(ecs, cluster, instance)["agentConnected"]
        saved = orjson.loads((tmp_path / "agent" / f"{cluster}.instance.json").read_bytes())
        assert saved["containerInstanceArn"] == instance
        proc = run()
        assert wait_until(connected_instance, timeout=20, what="the agent to reconnect") == instance
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, out
