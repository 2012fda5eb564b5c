"""Stopped tasks stay describable for the retention window, then expire (ECS keeps them at least 1 h)."""

from __future__ import annotations

import time
import uuid

import pytest

from dockyard.agent import protocol
from dockyard.agent.drivers.fake import FakeDriver
from tests.helpers.agents import AgentPool, create_agent_key
from tests.helpers.server import ServerProcess

RETENTION = 2.0


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess(env={"DOCKYARD_STOPPED_TASK_RETENTION_SECONDS": str(RETENTION),
                           protocol.HEARTBEAT_ENV: "1"}).start()
    yield s
    s.cleanup()


def wait_for(fn, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_stopped_task_expires_after_the_window_and_running_ones_stay(srv):
    ecs = srv.client("ecs")
    cluster = "exp-" + uuid.uuid4().hex[:8]
    ecs.create_cluster(clusterName=cluster)
    pool = AgentPool()
    try:
        key = create_agent_key(srv)
        pool.start(srv, cluster, key[0], key[1], driver=FakeDriver(), heartbeat=1.0)
        td = ecs.register_task_definition(family=cluster, containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 16}])["taskDefinition"]["taskDefinitionArn"]
        stopped, running = (t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=td, count=2)["tasks"])

        def status(arn):
            r = ecs.describe_tasks(cluster=cluster, tasks=[arn])
            return r["tasks"][0]["lastStatus"] if r["tasks"] else "MISSING"

        wait_for(lambda: status(stopped) == "RUNNING" and status(running) == "RUNNING")
        ecs.stop_task(cluster=cluster, task=stopped)
        wait_for(lambda: status(stopped) == "STOPPED")
        t_stopped = time.monotonic()
        # Still describable right after it stopped...
        assert status(stopped) == "STOPPED"
        # ...and gone once the window has passed (the sweep runs every window/4 s).
        wait_for(lambda: status(stopped) == "MISSING")
        assert time.monotonic() - t_stopped >= RETENTION * 0.5
        assert status(running) == "RUNNING"
        failures = ecs.describe_tasks(cluster=cluster, tasks=[stopped])["failures"]
        assert failures == [{"arn": stopped, "reason": "MISSING"}]
    finally:
        pool.close()
