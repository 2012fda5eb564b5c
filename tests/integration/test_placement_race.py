"""Two servers on one PostgreSQL store, racing RunTask onto one instance: never past its capacity.

Each placement is committed with an optimistic check on the instance's row version
(``container_instances.hold``); a loser of the race gets a retryable ServerException
and places nothing, so the instance never holds more than it registered.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from dockyard.services.ecs import container_instances
from dockyard.state.store import Store
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.postgres

TASK_MEMORY = 64
INSTANCE_MEMORY = 64 * 25  # room for exactly 25 tasks


def test_two_servers_never_overcommit_an_instance(pg):
    url = pg.create_database()
    a = ServerProcess(database_url=url).start()
    b = ServerProcess(database_url=url).start()
    try:
        key, secret = a.credentials()  # keys live in the shared store
        ecs_a, ecs_b = a.client("ecs"), b.client("ecs", key=key, secret=secret)
        cluster = "race-" + uuid.uuid4().hex[:8]
        ecs_a.create_cluster(clusterName=cluster)
        ecs_a.register_task_definition(family=cluster, containerDefinitions=[
            {"name": "c", "image": "busybox", "memory": TASK_MEMORY}])
        inst = ecs_a.register_container_instance(cluster=cluster, totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 100000},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": INSTANCE_MEMORY}],
        )["containerInstance"]["containerInstanceArn"]
        store = Store(url)
        try:
            with store.transaction() as tx:
                assert container_instances.set_agent_connected(tx, inst, True)
        finally:
            store.engine.dispose()

        placed: list[str] = []
        refused: list[str] = []
        lock = threading.Lock()

        def hammer(ecs) -> None:
            for _ in range(15):
                try:
                    r = ecs.run_task(cluster=cluster, taskDefinition=cluster, count=3)
                except ClientError as e:
                    with lock:
                        refused.append(e.response["Error"]["Code"])
                    continue
                with lock:
                    placed.extend(t["taskArn"] for t in r["tasks"])

        threads = [threading.Thread(target=hammer, args=(c,)) for c in (ecs_a, ecs_b, ecs_a, ecs_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Filled exactly: 60 calls of 3 ask for far more than the 25 that fit.
        assert len(placed) == len(set(placed)) == INSTANCE_MEMORY // TASK_MEMORY
        assert set(refused) <= {"ServerException"}
        ci = ecs_a.describe_container_instances(cluster=cluster, containerInstances=[inst])["containerInstances"][0]
        remaining = next(r["integerValue"] for r in ci["remainingResources"] if r["name"] == "MEMORY")
        assert remaining == INSTANCE_MEMORY - TASK_MEMORY * len(placed) >= 0
        listed = ecs_b.list_tasks(cluster=cluster)["taskArns"]
        assert sorted(listed) == sorted(placed)
    finally:
        a.cleanup()
        b.cleanup()
