import pytest
from botocore.exceptions import ClientError


def test_create_describe_list_cluster(ecs, name):
    c = ecs.create_cluster(clusterName=name, tags=[{"key": "team", "value": "a"}])["cluster"]
    assert c["clusterArn"].endswith(f":cluster/{name}")
    assert c["status"] == "ACTIVE"
    d = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert d["tags"] == [{"key": "team", "value": "a"}]
    assert d["registeredContainerInstancesCount"] == 0
    assert c["clusterArn"] in ecs.list_clusters()["clusterArns"]


def test_create_cluster_is_idempotent(ecs, name):
    a = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    b = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    assert a == b


def test_describe_missing_cluster_is_a_failure(ecs, name):
    r = ecs.describe_clusters(clusters=[name])
    assert r["clusters"] == []
    assert r["failures"][0]["reason"] == "MISSING"


def test_delete_cluster_then_describe_inactive(ecs, name):
    ecs.create_cluster(clusterName=name)
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=name)
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"


def test_unknown_cluster_errors(ecs, name):
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.update_cluster_settings(cluster=name, settings=[{"name": "containerInsights", "value": "enabled"}])


def test_invalid_cluster_name_rejected(ecs):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_cluster(clusterName="bad name!")


def test_list_clusters_paginates(ecs, name):
    for i in range(3):
        ecs.create_cluster(clusterName=f"{name}-{i}")
    seen = []
    for page in ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 1}):
        assert len(page["clusterArns"]) <= 1
        seen += page["clusterArns"]
    assert all(any(s.endswith(f"{name}-{i}") for s in seen) for i in range(3))


def test_bad_signature_rejected(server):
    bad = server.client("ecs", secret="wrong")
    with pytest.raises(ClientError) as e:
        bad.list_clusters()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_unknown_key_rejected(server):
    bad = server.client("ecs", key="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as e:
        bad.list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_deleted_cluster_recreated_without_its_old_tags(ecs, name):
    ecs.create_cluster(clusterName=name, tags=[{"key": "k", "value": "v"}])
    ecs.delete_cluster(cluster=name)
    ecs.create_cluster(clusterName=name)
    assert ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0].get("tags", []) == []


def test_new_cluster_takes_container_insights_from_account_setting(server, name):
    from tests.integration.test_keys import new_key

    key, secret = new_key(server, "--account-id", "444455556666", "--user", "root")
    client = server.client("ecs", key=key, secret=secret)
    client.put_account_setting_default(name="containerInsights", value="enabled")
    c = client.create_cluster(clusterName=name)["cluster"]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    c2 = client.create_cluster(clusterName=name + "x", settings=[{"name": "containerInsights",
                                                                  "value": "disabled"}])["cluster"]
    assert {"name": "containerInsights", "value": "disabled"} in c2["settings"]
