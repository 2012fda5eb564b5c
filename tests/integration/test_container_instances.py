"""Container instances and attributes over the real API (boto3 against a dockyard server)."""

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from dockyard.services.ecs import container_instances
from dockyard.state.store import Store

DEFAULT_TCP = ["22", "2375", "2376", "51678", "51679"]


def resources(cpu=2048, memory=3928, tcp=None, udp=None):
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": list(DEFAULT_TCP if tcp is None else tcp)},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": list(udp or [])},
    ]


def identity(instance_id=None, az="us-east-1a", instance_type="t3.medium"):
    return json.dumps({"instanceId": instance_id or f"i-{uuid.uuid4().hex[:17]}", "availabilityZone": az,
                       "instanceType": instance_type, "imageId": "ami-12345678", "region": "us-east-1"})


def register(ecs, cluster, *, cpu=2048, memory=3928, tcp=None, udp=None, attributes=None, az="us-east-1a",
             instance_id=None, **kw):
    """Register an instance as the agent would; returns the ContainerInstance."""
    attrs = [{"name": "ecs.os-type", "value": "linux"}, {"name": "ecs.cpu-architecture", "value": "x86_64"},
             {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.17"}]
    attrs += attributes or []
    return ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=identity(instance_id, az=az),
        totalResources=resources(cpu, memory, tcp, udp),
        versionInfo={"agentVersion": "1.80.0", "agentHash": "abcdef0", "dockerVersion": "DockerVersion: 24.0.7"},
        attributes=attrs, **kw)["containerInstance"]


def set_connected(server, instance_arn, connected=True):
    """What the agent channel will do when an agent's session comes up (tests flip it directly)."""
    store = Store(f"sqlite:///{server.data_dir}/dockyard.db")
    try:
        with store.transaction() as tx:
            assert container_instances.set_agent_connected(tx, instance_arn, connected)
    finally:
        store.engine.dispose()


def res(doc, field, name):
    r = next(r for r in doc[field] if r["name"] == name)
    return r["stringSetValue"] if r["type"] == "STRINGSET" else r["integerValue"]


# -- RegisterContainerInstance --------------------------------------------------------

def test_register_describe_list(ecs, cluster):
    ci = register(ecs, cluster, tags=[{"key": "team", "value": "a"}])
    arn = ci["containerInstanceArn"]
    name = cluster.rsplit("/", 1)[-1]
    assert arn.startswith("arn:aws:ecs:us-east-1:") and f":container-instance/{name}/" in arn
    assert len(arn.rsplit("/", 1)[-1]) == 32
    assert ci["status"] == "ACTIVE"
    assert ci["agentConnected"] is False
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    assert ci["ec2InstanceId"].startswith("i-")
    assert res(ci, "registeredResources", "CPU") == 2048
    assert res(ci, "registeredResources", "MEMORY") == 3928
    assert res(ci, "registeredResources", "PORTS") == DEFAULT_TCP
    assert res(ci, "remainingResources", "CPU") == 2048
    assert res(ci, "remainingResources", "MEMORY") == 3928
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["ecs.availability-zone"] == "us-east-1a"
    assert attrs["ecs.instance-type"] == "t3.medium"
    assert "com.amazonaws.ecs.capability.docker-remote-api.1.17" in attrs
    assert ci["versionInfo"]["agentVersion"] == "1.80.0"

    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn],
                                         include=["TAGS", "CONTAINER_INSTANCE_HEALTH"])
    assert d["failures"] == []
    got = d["containerInstances"][0]
    assert got["tags"] == [{"key": "team", "value": "a"}]
    assert got["healthStatus"]["overallStatus"] in ("IMPAIRED", "INSUFFICIENT_DATA")
    plain = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn.rsplit("/", 1)[-1]])
    assert plain["containerInstances"][0]["containerInstanceArn"] == arn
    assert "tags" not in plain["containerInstances"][0]
    assert "healthStatus" not in plain["containerInstances"][0]

    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == [arn]
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["registeredContainerInstancesCount"] == 1


def test_register_unknown_cluster(ecs, name):
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        register(ecs, name)


def test_register_rejects_bad_resources(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.register_container_instance(cluster=cluster, totalResources=[
            {"name": "MEMORY", "type": "INTEGER", "integerValue": -5}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.register_container_instance(cluster=cluster, totalResources=[
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["http"]}])


def test_register_custom_attribute_limit(ecs, cluster):
    ten = [{"name": f"custom{i}", "value": "v"} for i in range(10)]
    register(ecs, cluster, attributes=ten)  # ten is fine, built-in ones do not count
    with pytest.raises(ClientError) as e:
        register(ecs, cluster, attributes=ten + [{"name": "custom10", "value": "v"}])
    assert e.value.response["Error"]["Code"] == "AttributeLimitExceededException"


def test_register_rejects_bad_attribute_names(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        register(ecs, cluster, attributes=[{"name": "bad name", "value": "v"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        register(ecs, cluster, attributes=[{"name": "ok", "value": " leading"}])


def test_reregistration_keeps_arn_and_custom_attributes(ecs, cluster):
    ci = register(ecs, cluster, attributes=[{"name": "stack", "value": "prod"}])
    arn = ci["containerInstanceArn"]
    again = ecs.register_container_instance(
        cluster=cluster, containerInstanceArn=arn, instanceIdentityDocument=identity(ci["ec2InstanceId"]),
        totalResources=resources(cpu=4096, memory=7985),
        versionInfo={"agentVersion": "1.81.0"})["containerInstance"]
    assert again["containerInstanceArn"] == arn
    assert again["versionInfo"]["agentVersion"] == "1.81.0"
    assert res(again, "registeredResources", "CPU") == 4096
    assert res(again, "remainingResources", "MEMORY") == 7985
    assert {"name": "stack", "value": "prod"} in again["attributes"]
    assert again["version"] > ci["version"]
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["registeredContainerInstancesCount"] == 1


def test_reregistration_by_ec2_instance_id_is_idempotent(ecs, cluster):
    a = register(ecs, cluster, instance_id="i-0123456789abcdef0")
    b = register(ecs, cluster, instance_id="i-0123456789abcdef0")
    assert a["containerInstanceArn"] == b["containerInstanceArn"]
    assert len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == 1


def test_reregistration_with_instance_type_change_is_refused(ecs, cluster):
    ci = register(ecs, cluster)
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_container_instance(
            cluster=cluster, containerInstanceArn=ci["containerInstanceArn"],
            instanceIdentityDocument=identity(ci["ec2InstanceId"], instance_type="m5.large"),
            totalResources=resources())
    assert "instance type changes are not supported" in str(e.value)


def test_reregistering_a_deregistered_instance_fails(ecs, cluster):
    ci = register(ecs, cluster)
    ecs.deregister_container_instance(cluster=cluster, containerInstance=ci["containerInstanceArn"])
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.register_container_instance(cluster=cluster, containerInstanceArn=ci["containerInstanceArn"],
                                        totalResources=resources())


def test_agent_connected_hook(server, ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    set_connected(server, arn)
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn],
                                         include=["CONTAINER_INSTANCE_HEALTH"])["containerInstances"][0]
    assert d["agentConnected"] is True
    assert d["healthStatus"]["overallStatus"] == "OK"
    set_connected(server, arn, False)
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]
    assert d["agentConnected"] is False


# -- Describe / List ---------------------------------------------------------------------

def test_describe_missing_is_a_failure(ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    bogus = "0" * 32
    r = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn, bogus, "not-an-id"])
    assert [c["containerInstanceArn"] for c in r["containerInstances"]] == [arn]
    assert {f["reason"] for f in r["failures"]} == {"MISSING"}
    assert any(f["arn"].endswith("/" + bogus) for f in r["failures"])


def test_describe_instance_of_another_cluster_is_missing(ecs, cluster, name):
    other = ecs.create_cluster(clusterName=name + "-b")["cluster"]["clusterArn"]
    arn = register(ecs, other)["containerInstanceArn"]
    r = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    assert r["containerInstances"] == [] and r["failures"][0]["reason"] == "MISSING"


def test_describe_limits(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_container_instances(cluster=cluster, containerInstances=["0" * 32] * 101)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.describe_container_instances(cluster="nope-" + uuid.uuid4().hex, containerInstances=["0" * 32])


def test_list_pages_and_status_filter(ecs, cluster):
    arns = sorted(register(ecs, cluster)["containerInstanceArn"] for _ in range(5))
    seen = []
    for page in ecs.get_paginator("list_container_instances").paginate(
            cluster=cluster, PaginationConfig={"PageSize": 2}):
        assert len(page["containerInstanceArns"]) <= 2
        seen += page["containerInstanceArns"]
    assert sorted(seen) == arns
    ecs.update_container_instances_state(cluster=cluster, containerInstances=arns[:2], status="DRAINING")
    assert sorted(ecs.list_container_instances(cluster=cluster, status="DRAINING")["containerInstanceArns"]) \
        == arns[:2]
    assert sorted(ecs.list_container_instances(cluster=cluster, status="ACTIVE")["containerInstanceArns"]) \
        == arns[2:]
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arns[4])
    assert arns[4] not in ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]


def test_list_with_query_filter(server, ecs, cluster):
    a = register(ecs, cluster, az="us-east-1a", attributes=[{"name": "stack", "value": "prod"}])
    b = register(ecs, cluster, az="us-east-1b", attributes=[{"name": "stack", "value": "dev"}])
    c = register(ecs, cluster, az="us-east-1c")
    set_connected(server, c["containerInstanceArn"])

    def q(expr, **kw):
        return sorted(ecs.list_container_instances(cluster=cluster, filter=expr, **kw)["containerInstanceArns"])

    assert q("attribute:stack == prod") == [a["containerInstanceArn"]]
    assert q("attribute:stack exists") == sorted([a["containerInstanceArn"], b["containerInstanceArn"]])
    assert q("attribute:ecs.availability-zone in [us-east-1b, us-east-1c]") == \
        sorted([b["containerInstanceArn"], c["containerInstanceArn"]])
    assert q("agentConnected == true") == [c["containerInstanceArn"]]
    assert q("runningTasksCount == 0 and not attribute:stack == dev") == \
        sorted([a["containerInstanceArn"], c["containerInstanceArn"]])
    assert q(f"ec2InstanceId == {b['ec2InstanceId']}") == [b["containerInstanceArn"]]
    assert q("agentVersion >= 1.80.0") == sorted(x["containerInstanceArn"] for x in (a, b, c))
    assert q("registeredAt > 2020-01-01") == sorted(x["containerInstanceArn"] for x in (a, b, c))
    # Paging with a filter still visits every match once.
    seen = []
    for page in ecs.get_paginator("list_container_instances").paginate(
            cluster=cluster, filter="attribute:ecs.os-type == linux", PaginationConfig={"PageSize": 1}):
        seen += page["containerInstanceArns"]
    assert sorted(seen) == sorted(x["containerInstanceArn"] for x in (a, b, c))
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        q("attribute:stack === prod")


# -- UpdateContainerInstancesState -------------------------------------------------------

def test_drain_and_reactivate(ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    r = ecs.update_container_instances_state(cluster=cluster, containerInstances=[arn], status="DRAINING")
    assert r["containerInstances"][0]["status"] == "DRAINING" and r["failures"] == []
    r = ecs.update_container_instances_state(cluster=cluster, containerInstances=[arn], status="DRAINING")
    assert r["containerInstances"][0]["status"] == "DRAINING"
    r = ecs.update_container_instances_state(cluster=cluster, containerInstances=[arn], status="ACTIVE")
    assert r["containerInstances"][0]["status"] == "ACTIVE"
    # Draining instances still count as registered.
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["registeredContainerInstancesCount"] == 1


def test_bad_state_transitions_are_failures(ecs, cluster):
    live = register(ecs, cluster)["containerInstanceArn"]
    gone = register(ecs, cluster)["containerInstanceArn"]
    ecs.deregister_container_instance(cluster=cluster, containerInstance=gone)
    r = ecs.update_container_instances_state(cluster=cluster, containerInstances=[live, gone, "f" * 32],
                                             status="DRAINING")
    assert [c["containerInstanceArn"] for c in r["containerInstances"]] == [live]
    reasons = {f["arn"].rsplit("/", 1)[-1]: f["reason"] for f in r["failures"]}
    assert reasons[gone.rsplit("/", 1)[-1]] == "INACTIVE"
    assert reasons["f" * 32] == "MISSING"
    for status in ("REGISTERING", "DEREGISTERING"):
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.update_container_instances_state(cluster=cluster, containerInstances=[live], status=status)


# -- DeregisterContainerInstance ------------------------------------------------------------

def test_deregister(ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    d = ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)["containerInstance"]
    assert d["status"] == "INACTIVE"
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["registeredContainerInstancesCount"] == 0
    # Still describable, but gone from lists; the cluster can be deleted now.
    desc = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    assert desc["containerInstances"][0]["status"] == "INACTIVE"
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []
    # Deregistering twice answers the INACTIVE instance and changes no counter.
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["registeredContainerInstancesCount"] == 0
    ecs.delete_cluster(cluster=cluster)


def test_deregister_unknown(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.deregister_container_instance(cluster=cluster, containerInstance="a" * 32)


def test_cluster_with_instances_cannot_be_deleted(ecs, cluster):
    register(ecs, cluster)
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=cluster)
    assert e.value.response["Error"]["Code"] == "ClusterContainsContainerInstancesException"


# -- Attributes ----------------------------------------------------------------------------

def test_put_list_delete_attributes(ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    short = arn.rsplit("/", 1)[-1]
    put = ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "stack", "value": "prod", "targetId": arn},
        {"name": "flag", "targetType": "container-instance", "targetId": short},
    ])["attributes"]
    assert {a["name"] for a in put} == {"stack", "flag"}
    attrs = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])[
        "containerInstances"][0]["attributes"]
    assert {"name": "stack", "value": "prod"} in attrs and {"name": "flag"} in attrs

    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeName="stack")
    assert listed["attributes"] == [{"name": "stack", "value": "prod", "targetType": "container-instance",
                                     "targetId": arn}]
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeName="stack",
                               attributeValue="dev")["attributes"] == []
    everything = ecs.list_attributes(cluster=cluster, targetType="container-instance")["attributes"]
    assert {a["name"] for a in everything} >= {"stack", "flag", "ecs.os-type", "ecs.availability-zone"}

    # Overwrite a value, then delete.
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "stack", "value": "dev", "targetId": arn}])
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeName="stack",
                               attributeValue="dev")["attributes"][0]["targetId"] == arn
    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "stack", "targetId": arn},
                                                       {"name": "flag", "targetId": arn}])
    names = {a["name"] for a in ecs.describe_container_instances(
        cluster=cluster, containerInstances=[arn])["containerInstances"][0]["attributes"]}
    assert "stack" not in names and "flag" not in names and "ecs.os-type" in names


def test_attribute_errors(ecs, cluster):
    arn = register(ecs, cluster)["containerInstanceArn"]
    short = arn.rsplit("/", 1)[-1]
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[{"name": "x", "value": "1", "targetId": "b" * 32,
                                                         "targetType": "container-instance"}])
    assert e.value.response["Error"]["Code"] == "TargetNotFoundException"
    with pytest.raises(ClientError) as e:
        ecs.delete_attributes(cluster=cluster, attributes=[{"name": "x", "targetId": arn.replace(short, "c" * 32)}])
    assert e.value.response["Error"]["Code"] == "TargetNotFoundException"
    for bad in ({"name": "bad name", "value": "1", "targetId": arn},
                {"name": "ok", "value": "trailing ", "targetId": arn},
                {"name": "ok", "value": "x" * 129, "targetId": arn},
                {"name": "ok", "value": "semi;colon", "targetId": arn},
                {"name": "ok", "value": "1", "targetId": short},  # short id needs targetType
                {"name": "ecs.instance-type", "value": "x", "targetId": arn}):  # reserved
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.put_attributes(cluster=cluster, attributes=[bad])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeValue="x")
    # Nothing of a refused call is kept.
    with pytest.raises(ClientError):
        ecs.put_attributes(cluster=cluster, attributes=[{"name": "kept", "value": "1", "targetId": arn},
                                                        {"name": "x", "value": "1", "targetId": "d" * 32,
                                                         "targetType": "container-instance"}])
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance",
                               attributeName="kept")["attributes"] == []


def test_custom_attribute_limit_on_put(ecs, cluster):
    arn = register(ecs, cluster, attributes=[{"name": f"pre{i}", "value": "v"} for i in range(8)])[
        "containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "a8", "targetId": arn},
                                                    {"name": "a9", "targetId": arn}])
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[{"name": "a10", "targetId": arn}])
    assert e.value.response["Error"]["Code"] == "AttributeLimitExceededException"
    # Overwriting an existing one is not adding.
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "a9", "value": "new", "targetId": arn}])
    with pytest.raises(ClientError) as e:
        ecs.put_attributes(cluster=cluster, attributes=[{"name": f"m{i}", "targetId": arn} for i in range(11)])
    assert e.value.response["Error"]["Code"] == "AttributeLimitExceededException"


def test_list_attributes_pages(ecs, cluster):
    arns = [register(ecs, cluster)["containerInstanceArn"] for _ in range(3)]
    for arn in arns:
        ecs.put_attributes(cluster=cluster, attributes=[{"name": "role", "value": "web", "targetId": arn}])
    seen = []
    for page in ecs.get_paginator("list_attributes").paginate(
            cluster=cluster, targetType="container-instance", PaginationConfig={"PageSize": 2}):
        assert len(page["attributes"]) <= 2
        seen += [(a["targetId"], a["name"]) for a in page["attributes"]]
    assert len(seen) == len(set(seen))
    assert {(arn, "role") for arn in arns} <= set(seen)
    per_instance = len(ecs.describe_container_instances(cluster=cluster, containerInstances=[arns[0]])[
        "containerInstances"][0]["attributes"])
    assert len(seen) == 3 * per_instance
