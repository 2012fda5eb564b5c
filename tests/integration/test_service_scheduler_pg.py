"""Two servers on one PostgreSQL store step the same service: never a duplicate task.

Each server runs its own service controller. A step locks the service row
(SELECT ... FOR UPDATE) for its transaction, so the second server's step waits
for the first to commit and then sees the tasks it started.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from dockyard.services.ecs import container_instances
from dockyard.state.store import Store
from tests.helpers.server import ServerProcess
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.postgres


def test_two_servers_stepping_one_service_start_each_task_once(pg):
    url = pg.create_database()
    a = ServerProcess(database_url=url).start()
    b = ServerProcess(database_url=url).start()
    try:
        key, secret = a.credentials()
        ecs_a, ecs_b = a.client("ecs"), b.client("ecs", key=key, secret=secret)
        cluster = "svc-pg-" + uuid.uuid4().hex[:8]
        ecs_a.create_cluster(clusterName=cluster)
        ecs_a.register_task_definition(family=cluster, containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": 16}])
        insts = [ecs_a.register_container_instance(cluster=cluster, totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}])["containerInstance"][
            "containerInstanceArn"] for _ in range(3)]
        store = Store(url)
        try:  # no agents here: the instances are marked connected, so tasks are placed and stay PENDING
            with store.transaction() as tx:
                for inst in insts:
                    assert container_instances.set_agent_connected(tx, inst, True)
        finally:
            store.engine.dispose()
        ecs_a.create_service(cluster=cluster, serviceName="s", taskDefinition=cluster, desiredCount=0)

        # Both servers hear a change to the service at the same moment, several times over.
        for desired in range(2, 32, 3):
            threads = [threading.Thread(target=c.update_service,
                                        kwargs={"cluster": cluster, "service": "s", "desiredCount": desired})
                       for c in (ecs_a, ecs_b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wait_until(lambda d=desired: ecs_b.describe_services(cluster=cluster, services=["s"])["services"][0][
                "pendingCount"] >= d, 15, f"{desired} tasks")
        # A little longer: a duplicate would show up now.
        wait_until(lambda: ecs_a.describe_services(cluster=cluster, services=["s"])["services"][0][
            "pendingCount"] == 29, 10, "29 pending")
        threading.Event().wait(1.0)
        tasks = ecs_a.list_tasks(cluster=cluster, serviceName="s", maxResults=100)["taskArns"]
        stopped = ecs_a.list_tasks(cluster=cluster, serviceName="s", desiredStatus="STOPPED")["taskArns"]
        assert len(tasks) == 29 and stopped == []
    finally:
        a.cleanup()
        b.cleanup()
