"""Service quotas, lowered with DOCKYARD_QUOTA_<NAME> on a server of this module's own."""

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess

QUOTAS = {
    "DOCKYARD_QUOTA_CLUSTERS_PER_ACCOUNT": "2",
    "DOCKYARD_QUOTA_TAGS_PER_RESOURCE": "3",
    "DOCKYARD_QUOTA_CAPACITY_PROVIDERS_PER_CLUSTER": "2",
}
ASG = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:{0}:autoScalingGroupName/{0}"


@pytest.fixture(scope="module")
def small():
    s = ServerProcess(env=QUOTAS).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def ecs2(small):
    return small.client("ecs")


def code(e):
    return e.value.response["Error"]["Code"]


def test_clusters_per_account(ecs2):
    a = ecs2.create_cluster(clusterName="q-a")["cluster"]["clusterArn"]
    ecs2.create_cluster(clusterName="q-b")
    with pytest.raises(ClientError) as e:
        ecs2.create_cluster(clusterName="q-c", tags=[{"key": "k", "value": "v"}])
    assert code(e) == "LimitExceededException"
    assert "maximum number of clusters" in e.value.response["Error"]["Message"]
    # Nothing was written: no cluster, no tags.
    assert ecs2.describe_clusters(clusters=["q-c"])["failures"][0]["reason"] == "MISSING"
    assert sorted(ecs2.list_clusters()["clusterArns"]) == sorted([a, a.replace("q-a", "q-b")])
    with pytest.raises(ecs2.exceptions.ClusterNotFoundException):
        ecs2.list_tags_for_resource(resourceArn=a.replace("q-a", "q-c"))
    # CreateCluster of an existing name is idempotent, even at the quota.
    assert ecs2.create_cluster(clusterName="q-a")["cluster"]["clusterArn"] == a
    # Deleting one makes room again.
    ecs2.delete_cluster(cluster="q-b")
    ecs2.create_cluster(clusterName="q-c")
    assert len(ecs2.list_clusters()["clusterArns"]) == 2


def test_tags_per_resource(ecs2):
    arn = ecs2.create_cluster(clusterName="q-a")["cluster"]["clusterArn"]
    ecs2.untag_resource(resourceArn=arn, tagKeys=["a", "b", "c", "d"])
    ecs2.tag_resource(resourceArn=arn, tags=[{"key": k, "value": "1"} for k in "abc"])
    with pytest.raises(ClientError) as e:
        ecs2.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "2"}, {"key": "d", "value": "2"}])
    assert code(e) == "LimitExceededException"
    # Nothing was written, not even the overwrite of "a".
    assert ecs2.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": k, "value": "1"} for k in "abc"]
    ecs2.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "2"}])  # overwriting is not adding
    # More tags in one request than a resource may hold: refused before anything is looked at.
    with pytest.raises(ecs2.exceptions.InvalidParameterException):
        ecs2.create_capacity_provider(name="q-many-tags", autoScalingGroupProvider={"autoScalingGroupArn": "g"},
                                      tags=[{"key": k, "value": "1"} for k in "abcd"])
    assert ecs2.describe_capacity_providers(capacityProviders=["q-many-tags"])["failures"][0]["reason"] == \
        "MISSING"


def test_capacity_providers_per_cluster(ecs2):
    ecs2.create_capacity_provider(name="q-cp", autoScalingGroupProvider={"autoScalingGroupArn": ASG.format("q")})
    cluster = ecs2.create_cluster(clusterName="q-a")["cluster"]["clusterArn"]
    ecs2.put_cluster_capacity_providers(cluster=cluster, capacityProviders=["FARGATE", "q-cp"],
                                        defaultCapacityProviderStrategy=[])
    with pytest.raises(ClientError) as e:
        ecs2.put_cluster_capacity_providers(cluster=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT", "q-cp"],
                                            defaultCapacityProviderStrategy=[])
    assert "maximum number of capacity providers for a cluster is 2" in e.value.response["Error"]["Message"]
    got = ecs2.describe_clusters(clusters=[cluster])["clusters"][0]["capacityProviders"]
    assert got == ["FARGATE", "q-cp"]
