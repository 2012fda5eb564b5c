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


def test_deleted_revisions_go_once_no_live_task_or_service_uses_them(srv):
    ecs = srv.client("ecs")
    cluster = "tdp-" + uuid.uuid4().hex[:8]
    family = cluster
    ecs.create_cluster(clusterName=cluster)
    pool = AgentPool()
    try:
        key = create_agent_key(srv)
        pool.start(srv, cluster, key[0], key[1], driver=FakeDriver(), heartbeat=1.0)
        revs = [ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 16}], tags=[{"key": "k", "value": str(i)}])
            ["taskDefinition"]["taskDefinitionArn"] for i in range(3)]
        by_task, unused, by_service = revs
        task = ecs.run_task(cluster=cluster, taskDefinition=by_task)["tasks"][0]["taskArn"]
        ecs.create_service(cluster=cluster, serviceName="s", taskDefinition=by_service, desiredCount=0)
        for arn in revs:
            ecs.deregister_task_definition(taskDefinition=arn)
        assert ecs.delete_task_definitions(taskDefinitions=revs)["failures"] == []

        def gone(arn):
            try:
                ecs.describe_task_definition(taskDefinition=arn)
            except ecs.exceptions.ClientException as err:
                assert err.response["Error"]["Message"] == "Unable to describe task definition."
                return True
            return False

        # The unused revision goes at the next sweep (every 0.5 s here); the others stay.
        wait_for(lambda: gone(unused))
        time.sleep(1.5)
        for arn in (by_task, by_service):
            assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"] == "DELETE_IN_PROGRESS"
        with pytest.raises(ecs.exceptions.InvalidParameterException, match="resource is not found"):
            ecs.list_tags_for_resource(resourceArn=unused)
        assert family in ecs.list_task_definition_families(familyPrefix=family)["families"]
        # Once its task has stopped, and once its service is gone, each goes too.
        ecs.stop_task(cluster=cluster, task=task)
        wait_for(lambda: gone(by_task))
        assert ecs.describe_task_definition(taskDefinition=by_service)["taskDefinition"]["status"] == \
            "DELETE_IN_PROGRESS"
        ecs.delete_service(cluster=cluster, service="s")
        wait_for(lambda: gone(by_service))
        # No revision left: the family is not listed any more, and its revisions are not reused.
        assert ecs.list_task_definition_families(familyPrefix=family)["families"] == []
        assert ecs.list_task_definition_families(familyPrefix=family, status="INACTIVE")["families"] == []
        assert ecs.list_task_definitions(familyPrefix=family, status="DELETE_IN_PROGRESS")["taskDefinitionArns"] == []
        again = ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 16}])["taskDefinition"]
        assert again["revision"] == 4
        assert ecs.list_task_definition_families(familyPrefix=family)["families"] == [family]
    finally:
        pool.close()
