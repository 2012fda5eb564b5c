"""CreateCapacityProvider / UpdateCapacityProvider / DeleteCapacityProvider / DescribeCapacityProviders."""

import pytest
from botocore.exceptions import ClientError

ASG = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:{}:autoScalingGroupName/{}"


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


def asg(name, **kw):
    return {"autoScalingGroupArn": ASG.format(name, name), **kw}


@pytest.fixture
def provider(ecs, name):
    return ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg(name))["capacityProvider"]


def describe_one(ecs, ref, **kw):
    r = ecs.describe_capacity_providers(capacityProviders=[ref], **kw)
    assert r["failures"] == []
    return r["capacityProviders"][0]


def test_built_ins_always_present(ecs, cluster):
    region, account = cluster.split(":")[3:5]
    r = ecs.describe_capacity_providers(capacityProviders=["FARGATE", "FARGATE_SPOT"])
    assert [(p["name"], p["status"], p["type"]) for p in r["capacityProviders"]] == [
        ("FARGATE", "ACTIVE", "FARGATE"), ("FARGATE_SPOT", "ACTIVE", "FARGATE_SPOT")]
    assert r["capacityProviders"][0]["capacityProviderArn"] == \
        f"arn:aws:ecs:{region}:{account}:capacity-provider/FARGATE"
    everything = []
    token = None
    while True:
        page = ecs.describe_capacity_providers(**({"nextToken": token} if token else {}))
        everything += [p["name"] for p in page["capacityProviders"]]
        token = page.get("nextToken")
        if not token:
            break
    assert {"FARGATE", "FARGATE_SPOT"} <= set(everything)


def test_create_defaults_and_describe(ecs, name, cluster):
    account = cluster.split(":")[4]
    cp = ecs.create_capacity_provider(
        name=name, autoScalingGroupProvider=asg(name, managedScaling={"status": "ENABLED", "targetCapacity": 90},
                                                managedTerminationProtection="ENABLED"),
        tags=[{"key": "team", "value": "a"}])["capacityProvider"]
    assert cp["capacityProviderArn"] == f"arn:aws:ecs:us-east-1:{account}:capacity-provider/{name}"
    assert cp["status"] == "ACTIVE" and cp["type"] == "EC2_AUTOSCALING"
    assert cp["autoScalingGroupProvider"] == {
        "autoScalingGroupArn": ASG.format(name, name),
        "managedScaling": {"status": "ENABLED", "targetCapacity": 90, "minimumScalingStepSize": 1,
                           "maximumScalingStepSize": 10000, "instanceWarmupPeriod": 300},
        "managedTerminationProtection": "ENABLED", "managedDraining": "ENABLED"}
    assert cp["tags"] == [{"key": "team", "value": "a"}]
    by_name = describe_one(ecs, name, include=["TAGS"])
    by_arn = describe_one(ecs, cp["capacityProviderArn"], include=["TAGS"])
    assert by_name == by_arn == cp
    assert describe_one(ecs, name)["tags"] == []  # tags only with include=TAGS


def test_minimal_asg_provider_defaults(ecs, name):
    cp = ecs.create_capacity_provider(name=name, autoScalingGroupProvider={"autoScalingGroupArn": name})
    p = cp["capacityProvider"]["autoScalingGroupProvider"]
    assert p["managedScaling"]["status"] == "DISABLED"
    assert p["managedTerminationProtection"] == "DISABLED"
    assert p["managedDraining"] == "ENABLED"


def test_unknown_names_are_missing_failures(ecs, provider, name):
    region, account = provider["capacityProviderArn"].split(":")[3:5]
    r = ecs.describe_capacity_providers(capacityProviders=[name, f"{name}-nope"])
    assert [p["name"] for p in r["capacityProviders"]] == [name]
    assert r["failures"] == [{"arn": f"arn:aws:ecs:{region}:{account}:capacity-provider/{name}-nope",
                              "reason": "MISSING"}]


def test_duplicate_name_is_refused(ecs, provider, name):
    with pytest.raises(ClientError) as e:
        ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg(name + "-other"))
    assert code(e) == "ClientException"
    assert message(e).startswith("The specified capacity provider already exists.")


@pytest.mark.parametrize("bad", ["aws-x", "AWS_x", "ecs1", "Ecs", "fargate-x", "FARGATE", "FARGATE_SPOT",
                                 "bad name", "bad/name", "x" * 256])
def test_invalid_names(ecs, bad):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_capacity_provider(name=bad, autoScalingGroupProvider=asg("n"))
    assert ecs.describe_capacity_providers(capacityProviders=["FARGATE"])["capacityProviders"]


def test_asg_cannot_be_shared(ecs, provider, name):
    with pytest.raises(ClientError) as e:
        ecs.create_capacity_provider(name=name + "-2", autoScalingGroupProvider=asg(name))
    assert code(e) == "ClientException"
    assert "already being used by another capacity provider" in message(e)
    r = ecs.describe_capacity_providers(capacityProviders=[name + "-2"])
    assert r["failures"][0]["reason"] == "MISSING"


@pytest.mark.parametrize("provider_conf,err", [
    ({"managedTerminationProtection": "ENABLED"}, "ClientException"),  # needs managed scaling
    ({"managedScaling": {"status": "ENABLED", "targetCapacity": 101}}, "InvalidParameterException"),
    ({"managedScaling": {"minimumScalingStepSize": 10, "maximumScalingStepSize": 5}},
     "InvalidParameterException"),
    ({"managedScaling": {"instanceWarmupPeriod": 10001}}, "InvalidParameterException"),
    ({"managedScaling": {"status": "SOMETIMES"}}, "InvalidParameterException"),
    ({"managedDraining": "MAYBE"}, "InvalidParameterException"),
])
def test_invalid_asg_settings(ecs, name, provider_conf, err):
    with pytest.raises(ClientError) as e:
        ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg(name, **provider_conf))
    assert code(e) == err


def test_invalid_asg_arn(ecs, name):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_capacity_provider(
            name=name, autoScalingGroupProvider={"autoScalingGroupArn": "arn:aws:ecs:us-east-1:1:cluster/x"})


def test_exactly_one_provider_kind(ecs, name, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_capacity_provider(name=name)
    with pytest.raises(ecs.exceptions.InvalidParameterException):  # an ASG provider takes no cluster
        ecs.create_capacity_provider(name=name, cluster=cluster, autoScalingGroupProvider=asg(name))


def test_update(ecs, provider, name):
    cp = ecs.update_capacity_provider(
        name=name, autoScalingGroupProvider={"managedScaling": {"status": "ENABLED", "targetCapacity": 75},
                                             "managedDraining": "DISABLED"})["capacityProvider"]
    assert cp["updateStatus"] == "UPDATE_COMPLETE"
    p = cp["autoScalingGroupProvider"]
    assert p["managedScaling"] == {"status": "ENABLED", "targetCapacity": 75, "minimumScalingStepSize": 1,
                                   "maximumScalingStepSize": 10000, "instanceWarmupPeriod": 300}
    assert p["managedDraining"] == "DISABLED"
    assert p["managedTerminationProtection"] == "DISABLED"
    assert p["autoScalingGroupArn"] == ASG.format(name, name)
    assert describe_one(ecs, provider["capacityProviderArn"]) == {**cp, "tags": []}
    # An invalid update changes nothing.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.update_capacity_provider(name=name, autoScalingGroupProvider={"managedScaling": {"targetCapacity": 101}})
    assert describe_one(ecs, name)["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] == 75


def test_update_unknown_or_built_in(ecs, name):
    for ref in (name, "FARGATE"):
        with pytest.raises(ClientError) as e:
            ecs.update_capacity_provider(name=ref, autoScalingGroupProvider={"managedDraining": "ENABLED"})
        assert code(e) == "ClientException"


def test_delete(ecs, provider, name):
    arn = provider["capacityProviderArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "b"}])
    cp = ecs.delete_capacity_provider(capacityProvider=name)["capacityProvider"]
    assert (cp["status"], cp["updateStatus"]) == ("INACTIVE", "DELETE_COMPLETE")
    d = describe_one(ecs, arn, include=["TAGS"])
    assert (d["status"], d["updateStatus"], d["tags"]) == ("INACTIVE", "DELETE_COMPLETE", [])
    # Gone from the listing, and a second delete finds nothing.
    listed = []
    token = None
    while True:
        page = ecs.describe_capacity_providers(**({"nextToken": token} if token else {}))
        listed += [p["name"] for p in page["capacityProviders"]]
        token = page.get("nextToken")
        if not token:
            break
    assert name not in listed
    with pytest.raises(ClientError) as e:
        ecs.delete_capacity_provider(capacityProvider=arn)
    assert code(e) == "ClientException" and "does not exist" in message(e)
    # The name can be used again, with fresh tags and settings.
    again = ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg(name))["capacityProvider"]
    assert again["status"] == "ACTIVE" and again["tags"] == [] and "updateStatus" not in again


def test_delete_refused_while_a_cluster_uses_it(ecs, provider, name):
    cluster = ecs.create_cluster(clusterName=name, capacityProviders=[name, "FARGATE"])["cluster"]
    cp = ecs.delete_capacity_provider(capacityProvider=name)["capacityProvider"]
    assert cp["status"] == "ACTIVE"
    assert cp["updateStatus"] == "DELETE_FAILED"
    assert f"associated with cluster: {name}" in cp["updateStatusReason"]
    assert describe_one(ecs, name)["updateStatus"] == "DELETE_FAILED"
    ecs.put_cluster_capacity_providers(cluster=cluster["clusterArn"], capacityProviders=["FARGATE"],
                                       defaultCapacityProviderStrategy=[])
    assert ecs.delete_capacity_provider(capacityProvider=name)["capacityProvider"]["status"] == "INACTIVE"
    # An INACTIVE provider can no longer be associated with a cluster.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.put_cluster_capacity_providers(cluster=cluster["clusterArn"], capacityProviders=[name],
                                           defaultCapacityProviderStrategy=[])


def test_delete_unknown_or_built_in(ecs, name):
    for ref in (name, "FARGATE_SPOT"):
        with pytest.raises(ClientError) as e:
            ecs.delete_capacity_provider(capacityProvider=ref)
        assert code(e) == "ClientException"


def test_cluster_can_use_custom_provider(ecs, provider, name):
    c = ecs.create_cluster(clusterName=name, capacityProviders=[name],
                           defaultCapacityProviderStrategy=[{"capacityProvider": name, "weight": 1}])["cluster"]
    assert c["capacityProviders"] == [name]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_cluster(clusterName=name + "-x", capacityProviders=[name + "-nope"])


def test_describe_filtered_by_cluster(ecs, provider, name):
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE_SPOT", name])
    r = ecs.describe_capacity_providers(cluster=name)
    assert sorted(p["name"] for p in r["capacityProviders"]) == sorted(["FARGATE_SPOT", name])
    r = ecs.describe_capacity_providers(cluster=name, capacityProviders=["FARGATE", name])
    assert [p["name"] for p in r["capacityProviders"]] == [name]
    assert r["failures"][0]["reason"] == "MISSING"
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.describe_capacity_providers(cluster=name + "-nope")


def test_paging(ecs, name):
    names = [f"{name}-{i}" for i in range(4)]
    for n in names:
        ecs.create_capacity_provider(name=n, autoScalingGroupProvider=asg(n))
    cluster = ecs.create_cluster(clusterName=name, capacityProviders=names + ["FARGATE"])["cluster"]["clusterName"]
    seen = []
    token = None
    pages = 0
    while True:
        kw = {"cluster": cluster, "maxResults": 2}
        if token:
            kw["nextToken"] = token
        page = ecs.describe_capacity_providers(**kw)
        pages += 1
        assert len(page["capacityProviders"]) <= 2
        seen += [p["name"] for p in page["capacityProviders"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == names + ["FARGATE"]
    assert pages == 3
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_capacity_providers(maxResults=11)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_capacity_providers(nextToken="garbage!")


def test_invalid_include(ecs):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_capacity_providers(include=["EVERYTHING"])


MIP = {"infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfra",
       "instanceLaunchTemplate": {"ec2InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/p",
                                  "networkConfiguration": {"subnets": ["subnet-1"]}}}


def test_managed_instances_provider(ecs, cluster, name):
    cname = cluster.rsplit("/", 1)[1]
    with pytest.raises(ecs.exceptions.InvalidParameterException):  # needs its cluster
        ecs.create_capacity_provider(name=name, managedInstancesProvider=MIP)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.create_capacity_provider(name=name, cluster=name + "-nope", managedInstancesProvider=MIP)
    cp = ecs.create_capacity_provider(name=name, cluster=cname, managedInstancesProvider=MIP)["capacityProvider"]
    assert (cp["type"], cp["cluster"], cp["status"]) == ("MANAGED_INSTANCES", cname, "ACTIVE")
    assert cp["managedInstancesProvider"] == MIP
    assert name in [p["name"] for p in ecs.describe_capacity_providers(cluster=cname)["capacityProviders"]]
    up = ecs.update_capacity_provider(name=name, cluster=cname,
                                      managedInstancesProvider={**MIP, "propagateTags": "CAPACITY_PROVIDER"})
    assert up["capacityProvider"]["managedInstancesProvider"]["propagateTags"] == "CAPACITY_PROVIDER"
    with pytest.raises(ecs.exceptions.InvalidParameterException):  # reached through its cluster only
        ecs.delete_capacity_provider(capacityProvider=name)
    assert ecs.delete_capacity_provider(capacityProvider=name, cluster=cname)["capacityProvider"]["status"] \
        == "INACTIVE"
