"""Tasks over the real API: RunTask/StartTask placement bookkeeping, StopTask, Describe/ListTasks."""

import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from dockyard.services.ecs import tasks as tasks_mod
from dockyard.state.store import Store
from tests.integration.test_container_instances import register, res, set_connected


def taskdef(ecs, family, *, memory=128, cpu=None, ports=None, udp=None, network_mode=None, containers=None,
            **kw):
    cd = {"name": "web", "image": "busybox", "memory": memory}
    if cpu is not None:
        cd["cpu"] = cpu
    pm = [{"containerPort": 80 + i, "hostPort": p} for i, p in enumerate(ports or [])]
    pm += [{"containerPort": 53 + i, "hostPort": p, "protocol": "udp"} for i, p in enumerate(udp or [])]
    if pm:
        cd["portMappings"] = pm
    args = dict(family=family, containerDefinitions=containers or [cd], **kw)
    if network_mode:
        args["networkMode"] = network_mode
    return ecs.register_task_definition(**args)["taskDefinition"]


def connected(server, ecs, cluster, **kw):
    ci = register(ecs, cluster, **kw)
    set_connected(server, ci["containerInstanceArn"])
    return ci["containerInstanceArn"]


def describe_ci(ecs, cluster, arn):
    return ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]


def cluster_counts(ecs, cluster):
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    return c["runningTasksCount"], c["pendingTasksCount"]


def agent_reports(server, task_arn, status, **kw):
    """What the agent channel will do when an agent reports a task state (tests call it directly)."""
    store = Store(f"sqlite:///{server.data_dir}/dockyard.db")
    try:
        with store.transaction() as tx:
            assert tasks_mod.record_state(tx, task_arn, status, time.time(), **kw) is not None
    finally:
        store.engine.dispose()


@pytest.fixture
def family(name):
    return name + "-td"


# -- RunTask: refusals ---------------------------------------------------------------------

def test_run_task_on_empty_cluster(ecs, cluster, family):
    taskdef(ecs, family)
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family)
    assert "No Container Instances were found in your cluster." in str(e.value)


def test_run_task_agent_not_connected(ecs, cluster, family):
    taskdef(ecs, family)
    arn = register(ecs, cluster)["containerInstanceArn"]
    r = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert r["tasks"] == []
    assert r["failures"] == [{"arn": arn, "reason": "AGENT"}]


def test_run_task_count_limits(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    for bad in (0, 11):
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.run_task(cluster=cluster, taskDefinition=family, count=bad)


def test_run_task_unknown_and_inactive_task_definition(server, ecs, cluster, family):
    connected(server, ecs, cluster)
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.run_task(cluster=cluster, taskDefinition=family + "-nope")
    td = taskdef(ecs, family)
    ecs.deregister_task_definition(taskDefinition=td["taskDefinitionArn"])
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])
    assert "TaskDefinition is inactive" in str(e.value)


def test_run_task_unknown_cluster(ecs, name, family):
    taskdef(ecs, family)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.run_task(cluster=name + "-missing", taskDefinition=family)


def test_awsvpc_needs_network_configuration(server, ecs, cluster, family):
    taskdef(ecs, family, network_mode="awsvpc", ports=[80])
    arn = connected(server, ecs, cluster, attributes=[
        {"name": "ecs.capability.task-eni"}, {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family)
    assert "Network Configuration must be provided when networkMode 'awsvpc' is specified." in str(e.value)
    # The agent has no awsvpc networking yet: refused clearly, and nothing is placed.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, networkConfiguration={
            "awsvpcConfiguration": {"subnets": ["subnet-1234"]}})
    assert "networkMode awsvpc is not supported yet" in str(e.value)
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []
    ci = describe_ci(ecs, cluster, arn)
    assert res(ci, "remainingResources", "MEMORY") == res(ci, "registeredResources", "MEMORY")


def test_launch_type_rules(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EC2",
                     capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    with pytest.raises(ClientError):
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EC2", platformVersion="LATEST")
    # EXTERNAL tasks go only to external instances; there are none here.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EXTERNAL")


def test_external_launch_type(server, ecs, cluster, family):
    taskdef(ecs, family)
    ext = connected(server, ecs, cluster, attributes=[{"name": "ecs.capability.external"}])
    connected(server, ecs, cluster)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="EXTERNAL", count=3)
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {ext}
    assert {t["launchType"] for t in r["tasks"]} == {"EXTERNAL"}
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=3)
    assert ext not in {t["containerInstanceArn"] for t in r["tasks"]}


def test_bad_placement_options(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    bad_calls = [
        {"placementConstraints": [{"type": "memberOf"}]},
        {"placementConstraints": [{"type": "memberOf", "expression": "attribute:x == a b"}]},
        {"placementConstraints": [{"type": "memberOf", "expression": "x" * 2001}]},
        {"placementConstraints": [{"type": "distinctInstance", "expression": "attribute:a == b"}]},
        {"placementConstraints": [{"type": "distinctInstance"}] * 11},
        {"placementStrategy": [{"type": "binpack", "field": "disk"}]},
        {"placementStrategy": [{"type": "spread"}]},
        {"placementStrategy": [{"type": "spread", "field": "nonsense"}]},
        {"placementStrategy": [{"type": "random"}] * 6},
        {"startedBy": "has spaces"},
        {"startedBy": "x" * 129},
        {"group": "g" * 256},
        {"clientToken": "t" * 65},
        {"clientToken": "has space"},
        {"clientToken": "caf\u00e9"},
        {"overrides": {"containerOverrides": [{"name": "nope", "memory": 64}]}},
    ]
    for kw in bad_calls:
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.run_task(cluster=cluster, taskDefinition=family, **kw)
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


# -- RunTask: placing -------------------------------------------------------------------------

def test_run_task_creates_a_pending_task(server, ecs, cluster, family):
    td = taskdef(ecs, family, cpu=256, memory=300, ports=[8080])
    ci_arn = connected(server, ecs, cluster, az="us-east-1b")
    before = describe_ci(ecs, cluster, ci_arn)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, startedBy="me", enableExecuteCommand=True,
                     tags=[{"key": "k", "value": "v"}])
    assert r["failures"] == []
    t = r["tasks"][0]
    task_id = t["taskArn"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    assert t["taskArn"] == f"{cluster.replace(':cluster/', ':task/')}/{task_id}"
    assert t["clusterArn"] == cluster
    assert t["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert t["containerInstanceArn"] == ci_arn
    assert t["lastStatus"] == "PENDING" and t["desiredStatus"] == "RUNNING"
    assert t["launchType"] == "EC2"
    assert t["group"] == f"family:{family}"
    assert t["startedBy"] == "me"
    assert t["availabilityZone"] == "us-east-1b"
    assert t["cpu"] == "256" and t["memory"] == "300"
    assert t["version"] == 1
    assert t["enableExecuteCommand"] is True
    assert t["tags"] == [{"key": "k", "value": "v"}]
    assert {"name": "ecs.cpu-architecture", "value": "x86_64"} in t["attributes"]
    assert t["overrides"]["containerOverrides"] == [{"name": "web"}]
    assert abs(t["createdAt"].timestamp() - time.time()) < 60
    (c,) = t["containers"]
    assert c["name"] == "web" and c["image"] == "busybox" and c["lastStatus"] == "PENDING"
    assert c["cpu"] == "256" and c["memory"] == "300"
    assert c["containerArn"].startswith(cluster.split(":cluster/")[0] + ":container/")
    assert c["taskArn"] == t["taskArn"]

    after = describe_ci(ecs, cluster, ci_arn)
    assert res(after, "remainingResources", "CPU") == res(before, "remainingResources", "CPU") - 256
    assert res(after, "remainingResources", "MEMORY") == res(before, "remainingResources", "MEMORY") - 300
    assert "8080" in res(after, "remainingResources", "PORTS")
    assert "22" in res(after, "remainingResources", "PORTS")
    assert res(after, "registeredResources", "MEMORY") == res(before, "registeredResources", "MEMORY")
    assert after["runningTasksCount"] == 1 and after["pendingTasksCount"] == 1
    assert cluster_counts(ecs, cluster) == (0, 1)

    d = ecs.describe_tasks(cluster=cluster, tasks=[task_id], include=["TAGS"])
    assert d["failures"] == [] and d["tasks"][0]["taskArn"] == t["taskArn"]
    assert d["tasks"][0]["tags"] == [{"key": "k", "value": "v"}]
    assert "tags" not in ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]


def test_no_overcommit_memory_and_cpu(server, ecs, cluster, family):
    taskdef(ecs, family, memory=1000)
    ci_arn = connected(server, ecs, cluster, cpu=1024, memory=2500)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=3)
    assert len(r["tasks"]) == 2
    assert r["failures"] == [{"arn": ci_arn, "reason": "RESOURCE:MEMORY"}]
    assert res(describe_ci(ecs, cluster, ci_arn), "remainingResources", "MEMORY") == 500
    r = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "RESOURCE:MEMORY"

    cpu_family = family + "-cpu"
    taskdef(ecs, cpu_family, memory=10, cpu=600)
    r = ecs.run_task(cluster=cluster, taskDefinition=cpu_family, count=2)
    assert len(r["tasks"]) == 1 and r["failures"] == [{"arn": ci_arn, "reason": "RESOURCE:CPU"}]
    ci = describe_ci(ecs, cluster, ci_arn)
    assert res(ci, "remainingResources", "CPU") == 424
    assert res(ci, "remainingResources", "MEMORY") == 490
    assert ci["runningTasksCount"] == 3


def test_task_level_sizes_and_overrides(server, ecs, cluster, family):
    ecs.register_task_definition(family=family, cpu="512", memory="1024", containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 100}, {"name": "b", "image": "busybox", "memory": 50}])
    ci_arn = connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]
    assert t["cpu"] == "512" and t["memory"] == "1024"
    ci = describe_ci(ecs, cluster, ci_arn)
    assert res(ci, "remainingResources", "MEMORY") == 3928 - 1024
    # A task-level override replaces the task definition's size.
    t = ecs.run_task(cluster=cluster, taskDefinition=family, overrides={"cpu": "256", "memory": "200"})["tasks"][0]
    assert t["cpu"] == "256" and t["memory"] == "200"
    assert t["overrides"]["cpu"] == "256"
    assert res(describe_ci(ecs, cluster, ci_arn), "remainingResources", "MEMORY") == 3928 - 1224

    # Without task-level sizes, container overrides change what the task needs.
    fam2 = family + "-c"
    ecs.register_task_definition(family=fam2, containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 100}, {"name": "b", "image": "busybox", "memory": 50}])
    t = ecs.run_task(cluster=cluster, taskDefinition=fam2, overrides={
        "containerOverrides": [{"name": "b", "memory": 300, "command": ["sleep", "1"]}]})["tasks"][0]
    assert t["memory"] == "400"
    assert {"name": "b", "memory": 300, "command": ["sleep", "1"]} in t["overrides"]["containerOverrides"]
    assert res(describe_ci(ecs, cluster, ci_arn), "remainingResources", "MEMORY") == 3928 - 1624


def test_static_ports(server, ecs, cluster, family):
    taskdef(ecs, family, ports=[8080], udp=[5353])
    ci_arn = connected(server, ecs, cluster)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=2)
    assert len(r["tasks"]) == 1
    assert r["failures"] == [{"arn": ci_arn, "reason": "RESOURCE:PORTS"}]
    ci = describe_ci(ecs, cluster, ci_arn)
    assert "8080" in res(ci, "remainingResources", "PORTS")
    assert "5353" in res(ci, "remainingResources", "PORTS_UDP")
    # A reserved port is never given to a task.
    reserved = family + "-ssh"
    taskdef(ecs, reserved, ports=[22])
    assert ecs.run_task(cluster=cluster, taskDefinition=reserved)["failures"][0]["reason"] == "RESOURCE:PORTS"
    # Dynamic host ports (0) take nothing.
    dyn = family + "-dyn"
    taskdef(ecs, dyn, ports=[0])
    assert len(ecs.run_task(cluster=cluster, taskDefinition=dyn, count=3)["tasks"]) == 3


def test_host_mode_ports_default_to_container_port(server, ecs, cluster, family):
    ecs.register_task_definition(family=family, networkMode="host", containerDefinitions=[
        {"name": "web", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 9000}]}])
    ci_arn = connected(server, ecs, cluster)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=2)
    assert len(r["tasks"]) == 1 and r["failures"][0]["reason"] == "RESOURCE:PORTS"
    assert "9000" in res(describe_ci(ecs, cluster, ci_arn), "remainingResources", "PORTS")


def test_agent_disconnected_instance_takes_nothing(server, ecs, cluster, family):
    taskdef(ecs, family)
    on = connected(server, ecs, cluster)
    off = register(ecs, cluster)["containerInstanceArn"]
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=5)
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {on}
    set_connected(server, on, False)
    r = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "AGENT"
    assert r["failures"][0]["arn"] in (on, off)


def test_draining_instance_takes_nothing(server, ecs, cluster, family):
    taskdef(ecs, family)
    a = connected(server, ecs, cluster)
    b = connected(server, ecs, cluster)
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="DRAINING")
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=4)
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {b}


def test_requires_attributes(server, ecs, cluster, family):
    ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "web", "image": "busybox", "memory": 64, "healthCheck": {"command": ["CMD", "true"]}}])
    plain = connected(server, ecs, cluster)
    r = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert r["failures"] == [{"arn": plain, "reason": "ATTRIBUTE"}]
    able = connected(server, ecs, cluster, attributes=[
        {"name": "ecs.capability.container-health-check"},
        {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.24"}])
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=3)
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {able}
    assert r["tasks"][0]["containers"][0]["healthStatus"] == "UNKNOWN"


def test_member_of_constraint(server, ecs, cluster, family):
    taskdef(ecs, family)
    prod = connected(server, ecs, cluster, attributes=[{"name": "stack", "value": "prod"}])
    connected(server, ecs, cluster, attributes=[{"name": "stack", "value": "dev"}])
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=4, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:stack == prod"}])
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {prod}
    r = ecs.run_task(cluster=cluster, taskDefinition=family, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:stack == qa"}])
    assert r["tasks"] == []
    assert r["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied."
    assert r["failures"][0]["arn"]


def test_placement_sees_attribute_changes_made_after_tasks_were_held(server, ecs, cluster, family):
    # Each RunTask moves the instance's resources and version; the parsed attributes are cached for
    # the new version once the write commits. A later document change must still be seen.
    taskdef(ecs, family, memory=16)
    arn = connected(server, ecs, cluster, attributes=[{"name": "stack", "value": "dev"}])
    prod = [{"type": "memberOf", "expression": "attribute:stack == prod"}]
    for _ in range(3):
        assert len(ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"]) == 1
    assert ecs.run_task(cluster=cluster, taskDefinition=family, placementConstraints=prod)["tasks"] == []
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "stack", "value": "prod", "targetId": arn}])
    r = ecs.run_task(cluster=cluster, taskDefinition=family, placementConstraints=prod, count=2)
    assert [t["containerInstanceArn"] for t in r["tasks"]] == [arn, arn]
    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "stack", "targetId": arn}])
    r = ecs.run_task(cluster=cluster, taskDefinition=family, placementConstraints=prod)
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied."


def test_member_of_from_task_definition_and_task_group(server, ecs, cluster, family):
    ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "web", "image": "busybox", "memory": 64}],
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-east-1c"}])
    c = connected(server, ecs, cluster, az="us-east-1c")
    connected(server, ecs, cluster, az="us-east-1a")
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=2, group="db")
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {c}
    assert {t["group"] for t in r["tasks"]} == {"db"}
    # task:group: go where the "db" group runs... and, negated, where it does not.
    other = family + "-o"
    taskdef(ecs, other)
    r = ecs.run_task(cluster=cluster, taskDefinition=other, count=3, placementConstraints=[
        {"type": "memberOf", "expression": "task:group == db"}])
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {c}
    r = ecs.run_task(cluster=cluster, taskDefinition=other, count=3, placementConstraints=[
        {"type": "memberOf", "expression": "not(task:group == db)"}])
    assert c not in {t["containerInstanceArn"] for t in r["tasks"]} and len(r["tasks"]) == 3


def test_distinct_instance(server, ecs, cluster, family):
    taskdef(ecs, family)
    a = connected(server, ecs, cluster)
    b = connected(server, ecs, cluster)
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=3,
                     placementConstraints=[{"type": "distinctInstance"}])
    assert sorted(t["containerInstanceArn"] for t in r["tasks"]) == sorted([a, b])
    assert len(r["failures"]) == 1
    assert r["failures"][0]["reason"] == "DistinctInstance placement constraint unsatisfied."
    # Another group is not affected by the first one's tasks.
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=2, group="other",
                     placementConstraints=[{"type": "distinctInstance"}])
    assert len(r["tasks"]) == 2


def test_binpack_and_spread(server, ecs, cluster, family):
    taskdef(ecs, family, memory=100)
    small = connected(server, ecs, cluster, memory=1000, az="us-east-1a")
    big = connected(server, ecs, cluster, memory=4000, az="us-east-1b")
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=5,
                     placementStrategy=[{"type": "binpack", "field": "memory"}])
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {small}
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=4, group="spread",
                     placementStrategy=[{"type": "spread", "field": "instanceId"}])
    placed = [t["containerInstanceArn"] for t in r["tasks"]]
    assert placed.count(small) == 2 and placed.count(big) == 2
    r = ecs.run_task(cluster=cluster, taskDefinition=family, count=6, group="az",
                     placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                        {"type": "binpack", "field": "cpu"}])
    zones = [t["availabilityZone"] for t in r["tasks"]]
    assert zones.count("us-east-1a") == 3 and zones.count("us-east-1b") == 3


def test_client_token_idempotency(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    token = uuid.uuid4().hex
    a = ecs.run_task(cluster=cluster, taskDefinition=family, count=2, clientToken=token)
    b = ecs.run_task(cluster=cluster, taskDefinition=family, count=2, clientToken=token)
    assert [t["taskArn"] for t in a["tasks"]] == [t["taskArn"] for t in b["tasks"]]
    assert len(ecs.list_tasks(cluster=cluster)["taskArns"]) == 2
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, count=3, clientToken=token)
    assert e.value.response["Error"]["Code"] == "ConflictException"
    assert sorted(e.value.response["resourceIds"]) == sorted(t["taskArn"] for t in a["tasks"])


def test_client_token_belongs_to_its_cluster(server, ecs, cluster, family, name):
    # AWS: the same token in another cluster is another request, not a conflict.
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    other = ecs.create_cluster(clusterName=name + "-b")["cluster"]["clusterArn"]
    connected(server, ecs, other)
    token = uuid.uuid4().hex
    a = ecs.run_task(cluster=cluster, taskDefinition=family, clientToken=token)["tasks"]
    b = ecs.run_task(cluster=other, taskDefinition=family, clientToken=token)["tasks"]
    assert len(a) == len(b) == 1 and a[0]["taskArn"] != b[0]["taskArn"]
    assert b[0]["clusterArn"] == other
    again = ecs.run_task(cluster=other, taskDefinition=family, clientToken=token)["tasks"]
    assert [t["taskArn"] for t in again] == [b[0]["taskArn"]]


def test_client_token_older_than_a_day_starts_a_new_request(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    token = uuid.uuid4().hex
    first = ecs.run_task(cluster=cluster, taskDefinition=family, clientToken=token)["tasks"][0]["taskArn"]
    store = Store(f"sqlite:///{server.data_dir}/dockyard.db")
    try:
        with store.transaction() as tx:  # the record as it would be 24 hours and a minute later
            tx.run(text("UPDATE idempotency SET created_at = created_at - 86460"))
    finally:
        store.engine.dispose()
    # Different parameters: a conflict within the 24 hours, a new request after them.
    r = ecs.run_task(cluster=cluster, taskDefinition=family, clientToken=token, count=2)["tasks"]
    assert len(r) == 2 and first not in {t["taskArn"] for t in r}
    assert [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=family, clientToken=token,
                                               count=2)["tasks"]] == [t["taskArn"] for t in r]


def test_tags_propagated_and_managed(server, ecs, cluster, family):
    ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "web", "image": "busybox", "memory": 64}], tags=[{"key": "from", "value": "td"}])
    connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family, propagateTags="TASK_DEFINITION",
                     enableECSManagedTags=True, tags=[{"key": "own", "value": "1"}])["tasks"][0]
    tags = {x["key"]: x["value"] for x in ecs.describe_tasks(
        cluster=cluster, tasks=[t["taskArn"]], include=["TAGS"])["tasks"][0]["tags"]}
    assert tags == {"own": "1", "from": "td", "aws:ecs:clusterName": cluster.rsplit("/", 1)[-1]}


@pytest.mark.parametrize("tags", [[{"key": "aws:mine", "value": "1"}],
                                  [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}],
                                  [{"key": f"k{i}", "value": "v"} for i in range(51)]])
def test_run_task_with_bad_tags_is_rejected_and_places_nothing(server, ecs, cluster, family, tags):
    taskdef(ecs, family, memory=16)
    arn = connected(server, ecs, cluster)
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, count=3, tags=tags)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []
    assert describe_ci(ecs, cluster, arn)["pendingTasksCount"] == 0


# -- StartTask ------------------------------------------------------------------------------------

def test_start_task(server, ecs, cluster, family):
    taskdef(ecs, family, memory=1000)
    a = connected(server, ecs, cluster, memory=1500)
    off = register(ecs, cluster)["containerInstanceArn"]
    gone = register(ecs, cluster)["containerInstanceArn"]
    ecs.deregister_container_instance(cluster=cluster, containerInstance=gone)
    r = ecs.start_task(cluster=cluster, taskDefinition=family, startedBy="cron",
                       containerInstances=[a, a.rsplit("/", 1)[-1], off, gone, "e" * 32])
    assert [t["containerInstanceArn"] for t in r["tasks"]] == [a]
    assert r["tasks"][0]["startedBy"] == "cron"
    reasons = [(f["arn"].rsplit("/", 1)[-1], f["reason"]) for f in r["failures"]]
    assert reasons == [(a.rsplit("/", 1)[-1], "RESOURCE:MEMORY"), (off.rsplit("/", 1)[-1], "AGENT"),
                       (gone.rsplit("/", 1)[-1], "INACTIVE"), ("e" * 32, "MISSING")]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.start_task(cluster=cluster, taskDefinition=family, containerInstances=[a] * 11)


# -- StopTask and the state machine ----------------------------------------------------------------

def test_stop_task_without_agent(server, ecs, cluster, family):
    taskdef(ecs, family, memory=500, ports=[8081])
    ci_arn = connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]
    s = ecs.stop_task(cluster=cluster, task=t["taskArn"])["task"]
    assert s["desiredStatus"] == "STOPPED"
    assert s["lastStatus"] == "PENDING"  # no agent has stopped it yet
    assert s["stopCode"] == "UserInitiated"
    assert s["stoppedReason"] == "Task stopped by user"
    assert "stoppingAt" in s
    assert s["version"] == 2
    ci = describe_ci(ecs, cluster, ci_arn)
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 1
    assert res(ci, "remainingResources", "MEMORY") == 3928 - 500  # held until the task is STOPPED
    assert cluster_counts(ecs, cluster) == (0, 1)
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []
    assert ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == [t["taskArn"]]
    # Stopping again changes nothing, not even the reason.
    again = ecs.stop_task(cluster=cluster, task=t["taskArn"], reason="second")["task"]
    assert again["stoppedReason"] == "Task stopped by user" and again["version"] == 2


def test_stop_task_with_reason_and_unknown(ecs, server, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]
    s = ecs.stop_task(cluster=cluster, task=t["taskArn"].rsplit("/", 1)[-1], reason="deploying v2")["task"]
    assert s["stoppedReason"] == "deploying v2"
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.stop_task(cluster=cluster, task="0" * 32)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.stop_task(cluster=cluster, task=t["taskArn"], reason="r" * 256)


def test_agent_reported_lifecycle(server, ecs, cluster, family):
    taskdef(ecs, family, memory=700, cpu=128, ports=[8082])
    ci_arn = connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family, tags=[{"key": "a", "value": "b"}])["tasks"][0]
    assert cluster_counts(ecs, cluster) == (0, 1)
    agent_reports(server, t["taskArn"], "RUNNING")
    d = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]
    assert d["lastStatus"] == "RUNNING" and "startedAt" in d and d["version"] == 2
    assert cluster_counts(ecs, cluster) == (1, 0)
    ci = describe_ci(ecs, cluster, ci_arn)
    assert ci["runningTasksCount"] == 1 and ci["pendingTasksCount"] == 0

    ecs.stop_task(cluster=cluster, task=t["taskArn"])
    assert cluster_counts(ecs, cluster) == (1, 0)  # still running until the agent says otherwise
    agent_reports(server, t["taskArn"], "STOPPED")
    d = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]], include=["TAGS"])["tasks"][0]
    assert d["lastStatus"] == "STOPPED" and d["desiredStatus"] == "STOPPED"
    assert d["stopCode"] == "UserInitiated" and "stoppedAt" in d
    assert d["containers"][0]["lastStatus"] == "STOPPED"
    assert d["tags"] == []  # stopping a task deletes its tags
    assert cluster_counts(ecs, cluster) == (0, 0)
    ci = describe_ci(ecs, cluster, ci_arn)
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    assert res(ci, "remainingResources", "MEMORY") == 3928
    assert res(ci, "remainingResources", "CPU") == 2048
    assert "8082" not in res(ci, "remainingResources", "PORTS")
    # STOPPED is terminal.
    agent_reports(server, t["taskArn"], "RUNNING")
    assert ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]["lastStatus"] == "STOPPED"
    assert cluster_counts(ecs, cluster) == (0, 0)
    # The freed port and memory can be used again.
    assert len(ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"]) == 1


def test_task_that_fails_before_running(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]
    agent_reports(server, t["taskArn"], "STOPPED", stop_code="TaskFailedToStart",
                  reason="CannotPullContainerError: pull access denied")
    d = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]
    assert d["stopCode"] == "TaskFailedToStart" and d["stoppedReason"].startswith("CannotPullContainerError")
    assert cluster_counts(ecs, cluster) == (0, 0)


# -- Deregistration with tasks ------------------------------------------------------------------

def test_deregister_with_tasks_needs_force_and_orphans(server, ecs, cluster, family):
    taskdef(ecs, family)
    ci_arn = connected(server, ecs, cluster)
    arns = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=family, count=2)["tasks"]]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.deregister_container_instance(cluster=cluster, containerInstance=ci_arn)
    d = ecs.deregister_container_instance(cluster=cluster, containerInstance=ci_arn, force=True)
    assert d["containerInstance"]["status"] == "INACTIVE"
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    assert {t["lastStatus"] for t in tasks} == {"STOPPED"}
    assert {t["desiredStatus"] for t in tasks} == {"STOPPED"}
    assert cluster_counts(ecs, cluster) == (0, 0)
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []
    ecs.delete_cluster(cluster=cluster)


# -- DescribeTasks / ListTasks ------------------------------------------------------------------------

def test_describe_tasks_failures_and_limits(server, ecs, cluster, family):
    taskdef(ecs, family)
    connected(server, ecs, cluster)
    t = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]
    r = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"], "1" * 32, "junk"])
    assert [x["taskArn"] for x in r["tasks"]] == [t["taskArn"]]
    assert [f["reason"] for f in r["failures"]] == ["MISSING", "MISSING"]
    assert r["failures"][0]["arn"].endswith("/" + "1" * 32)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_tasks(cluster=cluster, tasks=[])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_tasks(cluster=cluster, tasks=["1" * 32] * 101)


def test_describe_task_of_other_cluster_is_missing(server, ecs, cluster, name, family):
    taskdef(ecs, family)
    other = ecs.create_cluster(clusterName=name + "-2")["cluster"]["clusterArn"]
    connected(server, ecs, other)
    t = ecs.run_task(cluster=other, taskDefinition=family)["tasks"][0]
    r = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"]])
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "MISSING"


def test_list_tasks_filters(server, ecs, cluster, family):
    taskdef(ecs, family)
    fam2 = family + "-b"
    taskdef(ecs, fam2)
    a = connected(server, ecs, cluster)
    b = connected(server, ecs, cluster)
    on_a = ecs.start_task(cluster=cluster, taskDefinition=family, containerInstances=[a],
                          startedBy="job-1")["tasks"][0]["taskArn"]
    on_b = ecs.start_task(cluster=cluster, taskDefinition=fam2, containerInstances=[b])["tasks"][0]["taskArn"]

    def ls(**kw):
        return sorted(ecs.list_tasks(cluster=cluster, **kw)["taskArns"])

    assert ls() == sorted([on_a, on_b])
    assert ls(family=family) == [on_a]
    assert ls(family=fam2) == [on_b]
    assert ls(containerInstance=a) == [on_a]
    assert ls(containerInstance=b.rsplit("/", 1)[-1]) == [on_b]
    assert ls(startedBy="job-1") == [on_a]
    assert ls(startedBy="job-1", desiredStatus="STOPPED") == []
    assert ls(launchType="EC2") == sorted([on_a, on_b])
    assert ls(launchType="EXTERNAL") == []
    assert ls(desiredStatus="PENDING") == []
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ls(startedBy="job-1", family=family)
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ls(serviceName="no-such-service")
    ecs.stop_task(cluster=cluster, task=on_b)
    assert ls() == [on_a]
    assert ls(desiredStatus="STOPPED") == [on_b]
    assert ls(family=fam2, desiredStatus="STOPPED") == [on_b]


def test_list_tasks_paging_is_stable(server, ecs, cluster, family):
    taskdef(ecs, family, memory=10)
    connected(server, ecs, cluster)
    made = []
    for _ in range(3):
        made += [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=family, count=10)["tasks"]]
    pages = []
    token = None
    while True:
        kw = {"nextToken": token} if token else {}
        r = ecs.list_tasks(cluster=cluster, maxResults=7, **kw)
        pages.append(r["taskArns"])
        # Tasks started while paging do not disturb the pages already handed out.
        if len(pages) == 2:
            made += [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"]]
        token = r.get("nextToken")
        if not token:
            break
    seen = [a for p in pages for a in p]
    assert len(seen) == len(set(seen))
    assert set(made[:30]) <= set(seen)
    assert all(len(p) <= 7 for p in pages)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_tasks(cluster=cluster, maxResults=101)
