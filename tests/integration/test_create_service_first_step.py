"""CreateService and the scheduler's first step, in one transaction on the store (no server).

CreateService hands the step what it holds (service document, cluster, task definition,
service deployment) and stores the service row and its service deployment once, after the
step: these tests pin what ends up stored in both outcomes of the step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.services.context import Ctx
from dockyard.services.ecs import ecs, service_scheduler
from dockyard.state.store import Store

ACCOUNT = "123456789012"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    s.migrate()
    yield s
    s.engine.dispose()


def call(store: Store, op: str, **req: Any) -> Any:
    ctx = Ctx(ACCOUNT, "us-east-1", f"arn:aws:iam::{ACCOUNT}:root", "rid", round(time.time(), 3))
    with store.transaction() as tx:
        return ecs.operations[op].fn(tx, ctx, req)


def setup_cluster(store: Store) -> None:
    call(store, "CreateCluster", clusterName="c")
    call(store, "RegisterTaskDefinition", family="web",
         containerDefinitions=[{"name": "app", "image": "127.0.0.1:5999/app:1", "memory": 64}])


def stored(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = call(store, "DescribeServices", cluster="c", services=["s"])["services"][0]
    sds = call(store, "ListServiceDeployments", cluster="c", service="s")["serviceDeployments"]
    assert len(sds) == 1
    sd = call(store, "DescribeServiceDeployments",
              serviceDeploymentArns=[sds[0]["serviceDeploymentArn"]])["serviceDeployments"][0]
    return svc, sd


def test_a_service_with_nothing_to_run_is_steady_when_create_service_commits(store: Store) -> None:
    setup_cluster(store)
    out = call(store, "CreateService", cluster="c", serviceName="s", taskDefinition="web", desiredCount=0)
    # The answer is the service as created...
    assert out["service"]["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert out["service"]["events"] == []
    # ...and what is stored is what the first step made of it.
    svc, sd = stored(store)
    dep = svc["deployments"][0]
    assert dep["rolloutState"] == "COMPLETED" and dep["id"] == out["service"]["deployments"][0]["id"]
    assert [e["message"] for e in svc["events"]] == [
        "(service s) has reached a steady state.", f"(service s) (deployment {dep['id']}) deployment completed."]
    assert sd["status"] == "SUCCESSFUL" and "finishedAt" in sd
    assert svc["currentServiceDeployment"] == sd["serviceDeploymentArn"]


def test_a_failing_first_step_leaves_the_service_as_created(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_cluster(store)

    def broken(tx: Any, arn: str, now: float, settings: Any, new: Any = None) -> None:
        # Half-way through: what it changed must not be stored.
        new.doc["events"] = [{"id": "x", "createdAt": now, "message": "half"}]
        new.sd["status"] = "SUCCESSFUL"
        raise RuntimeError("step failed")

    monkeypatch.setattr(service_scheduler, "reconcile", broken)
    out = call(store, "CreateService", cluster="c", serviceName="s", taskDefinition="web", desiredCount=1)
    monkeypatch.undo()
    svc, sd = stored(store)
    assert svc["status"] == "ACTIVE" and svc["events"] == []
    assert svc["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert svc["deployments"][0]["id"] == out["service"]["deployments"][0]["id"]
    assert sd["status"] == "IN_PROGRESS"
    assert call(store, "ListTasks", cluster="c")["taskArns"] == []


def test_a_recreated_service_is_stepped_like_a_new_one(store: Store) -> None:
    setup_cluster(store)
    call(store, "CreateService", cluster="c", serviceName="s", taskDefinition="web", desiredCount=0)
    call(store, "DeleteService", cluster="c", service="s")
    # desiredCount 0: nothing to drain, the service is INACTIVE at once or after the controller.
    with store.transaction() as tx:
        from dockyard.services.ecs import services
        services.settle_draining(tx, time.time(), f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/c/s")
    call(store, "CreateService", cluster="c", serviceName="s", taskDefinition="web", desiredCount=0)
    svc, sd = stored(store)
    assert svc["status"] == "ACTIVE"
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED"
    assert sd["status"] == "SUCCESSFUL"


def test_the_stepped_service_is_not_stepped_again_by_its_own_create_events(store: Store) -> None:
    # Every event CreateService writes before "service-stepped" counts as seen by the step; one
    # after it (the service deployment's insert once was) cost every service a second step.
    from dockyard.controllers.services import ServiceController
    from dockyard.services.ecs.service_scheduler import Settings

    setup_cluster(store)
    ctx = Ctx(ACCOUNT, "us-east-1", f"arn:aws:iam::{ACCOUNT}:root", "rid", round(time.time(), 3))
    with store.transaction() as tx:
        ecs.operations["CreateService"].fn(tx, ctx, {"cluster": "c", "serviceName": "s", "taskDefinition": "web",
                                                     "desiredCount": 0})
        events = list(tx.events)
    arn = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/c/s"
    assert events[-1] == ("service-stepped", f" {arn}")
    assert ("service-deployment", call(store, "ListServiceDeployments", cluster="c", service="s")[
        "serviceDeployments"][0]["serviceDeploymentArn"]) in events
    c = ServiceController(store, Settings.from_env())
    c.on_events(events)
    assert c.dirty == set()
