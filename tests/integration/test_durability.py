"""State survives restarts, and an answered write survives ``kill -9`` of the server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(data_dir=tmp_path).start()
    yield s
    s.cleanup()


def restart(server: ServerProcess, *, kill: bool = False) -> Any:
    """Stop (SIGINT, or SIGKILL with ``kill``) and start again on the same data; a new client."""
    if kill:
        server.kill9()
    else:
        server.stop()
    server.start()
    return server.client("ecs")


def call_or_skip(fn: Callable[..., Any], **kw: Any) -> Any:
    """Call an operation another issue may not have delivered yet; skip the test if so."""
    try:
        return fn(**kw)
    except ClientError as e:
        if e.response["Error"]["Code"] == "UnknownOperationException":
            pytest.skip(f"{e.operation_name} is not implemented yet")
        raise


def strip(resp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def all_cluster_arns(ecs: Any) -> set[str]:
    return {a for page in ecs.get_paginator("list_clusters").paginate() for a in page["clusterArns"]}


def test_clusters_survive_a_restart(server: ServerProcess) -> None:
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="kept", tags=[{"key": "team", "value": "a"}],
                       settings=[{"name": "containerInsights", "value": "enabled"}])
    ecs.create_cluster(clusterName="gone")
    ecs.delete_cluster(cluster="gone")
    include = ["TAGS", "SETTINGS", "CONFIGURATIONS", "STATISTICS", "ATTACHMENTS"]
    before = strip(ecs.describe_clusters(clusters=["kept", "gone"], include=include))
    listed = ecs.list_clusters()["clusterArns"]

    ecs = restart(server)
    assert strip(ecs.describe_clusters(clusters=["kept", "gone"], include=include)) == before
    assert ecs.list_clusters()["clusterArns"] == listed
    assert [c["status"] for c in before["clusters"]] == ["ACTIVE", "INACTIVE"]


def test_task_definitions_survive_a_restart(server: ServerProcess) -> None:
    ecs = server.client("ecs")
    container = {"name": "web", "image": "127.0.0.1:5000/busybox:latest", "memory": 64,
                 "command": ["httpd", "-f", "-p", "8080"],
                 "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]}
    first = call_or_skip(ecs.register_task_definition, family="web", containerDefinitions=[container],
                         tags=[{"key": "team", "value": "a"}])["taskDefinition"]
    second = ecs.register_task_definition(family="web", containerDefinitions=[container])["taskDefinition"]
    ecs.deregister_task_definition(taskDefinition=first["taskDefinitionArn"])
    before = [strip(ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"]))
              for arn in (first["taskDefinitionArn"], second["taskDefinitionArn"])]

    ecs = restart(server)
    after = [strip(ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"]))
             for arn in (first["taskDefinitionArn"], second["taskDefinitionArn"])]
    assert after == before
    assert [d["taskDefinition"]["status"] for d in after] == ["INACTIVE", "ACTIVE"]
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == [second["taskDefinitionArn"]]
    # Revisions are never reused, across restarts too.
    third = ecs.register_task_definition(family="web", containerDefinitions=[container])["taskDefinition"]
    assert third["revision"] == 3


def test_services_survive_a_restart(server: ServerProcess) -> None:
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="svc")
    td = call_or_skip(ecs.register_task_definition, family="svc-web", containerDefinitions=[
        {"name": "web", "image": "127.0.0.1:5000/busybox:latest", "memory": 64}])["taskDefinition"]
    svc = call_or_skip(ecs.create_service, cluster="svc", serviceName="web",
                       taskDefinition=td["taskDefinitionArn"], desiredCount=0, launchType="EC2",
                       tags=[{"key": "team", "value": "a"}])["service"]
    fields = ("serviceArn", "serviceName", "clusterArn", "status", "desiredCount", "taskDefinition",
              "launchType", "schedulingStrategy", "deploymentConfiguration", "createdAt", "tags")

    def described(client: Any) -> dict[str, Any]:
        s = client.describe_services(cluster="svc", services=["web"], include=["TAGS"])["services"][0]
        return {k: s.get(k) for k in fields}

    before = described(ecs)
    assert before["serviceArn"] == svc["serviceArn"] and before["status"] == "ACTIVE"

    ecs = restart(server)
    assert described(ecs) == before
    assert ecs.list_services(cluster="svc")["serviceArns"] == [svc["serviceArn"]]


def test_answered_creates_survive_kill_9(server: ServerProcess) -> None:
    ecs = server.client("ecs")
    names = [f"k9-{i:02d}" for i in range(50)]
    arns = {ecs.create_cluster(clusterName=n)["cluster"]["clusterArn"] for n in names}
    # SIGKILL straight after the last 2xx: no graceful shutdown, no chance to flush anything.
    ecs = restart(server, kill=True)
    assert all_cluster_arns(ecs) == arns
    statuses = {c["status"] for c in ecs.describe_clusters(clusters=names)["clusters"]}
    assert statuses == {"ACTIVE"}


def test_concurrent_answered_writes_survive_kill_9(server: ServerProcess) -> None:
    """Writes answered from concurrent group commits, then SIGKILL: every answered one is there."""
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="doomed")
    names = [f"c9-{i:03d}" for i in range(200)]
    calls: list[Callable[[], Any]] = [partial(ecs.create_cluster, clusterName=n) for n in names]
    calls.insert(100, partial(ecs.delete_cluster, cluster="doomed"))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = [r["cluster"] for r in pool.map(lambda call: call(), calls)]
    assert answers.pop(100)["status"] == "INACTIVE"
    created = {c["clusterArn"] for c in answers}
    assert len(created) == len(names)

    ecs = restart(server, kill=True)
    assert all_cluster_arns(ecs) == created
    doomed = ecs.describe_clusters(clusters=["doomed"])["clusters"]
    assert [c["status"] for c in doomed] == ["INACTIVE"]
