"""TagResource / UntagResource / ListTagsForResource.

Clusters and capacity providers go through the real server. Services, tasks,
container instances and task definitions are created by other modules; their
lookups are exercised in-process against a store with rows put in directly,
so the tag semantics do not wait for those operations to exist.
"""

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import Boolean, Float, Integer, LargeBinary

from dockyard.api.errors import AwsError
from dockyard.services.context import Ctx
from dockyard.services.ecs import tags as tags_mod
from dockyard.state import arns
from dockyard.state.schema import clusters, container_instances, services, task_definitions, tasks
from dockyard.state.store import Store

ASG = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:{}:autoScalingGroupName/{}"


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


def account_of(arn):
    return arn.split(":")[4]


# -- clusters ----------------------------------------------------------------

def test_tag_list_untag_cluster(ecs, cluster):
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == []
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "team", "value": "a"}, {"key": "env", "value": "dev"}])
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [
        {"key": "env", "value": "dev"}, {"key": "team", "value": "a"}]
    # Tagging again merges: existing keys are overwritten, others kept.
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "team", "value": "b"}, {"key": "cost", "value": "1"}])
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [
        {"key": "cost", "value": "1"}, {"key": "env", "value": "dev"}, {"key": "team", "value": "b"}]
    ecs.untag_resource(resourceArn=cluster, tagKeys=["team", "not-there"])
    assert [t["key"] for t in ecs.list_tags_for_resource(resourceArn=cluster)["tags"]] == ["cost", "env"]
    # DescribeClusters sees the same tags.
    d = ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"][0]
    assert d["tags"] == [{"key": "cost", "value": "1"}, {"key": "env", "value": "dev"}]


def test_tags_given_at_create_are_listed_and_merged(ecs, name):
    arn = ecs.create_cluster(clusterName=name, tags=[{"key": "a", "value": "1"}])["cluster"]["clusterArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "b", "value": "2"}])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "a", "value": "1"}, {"key": "b", "value": "2"}]


def test_empty_value_and_unicode_allowed(ecs, cluster):
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "équipe données", "value": "plateforme 1"},
                                                 {"key": "k+-=._:/@", "value": ""}])
    got = {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=cluster)["tags"]}
    assert got == {"équipe données": "plateforme 1", "k+-=._:/@": ""}


def test_unknown_cluster(ecs, cluster, name):
    missing = cluster.rsplit("/", 1)[0] + "/" + name + "-missing"
    for call in (lambda: ecs.list_tags_for_resource(resourceArn=missing),
                 lambda: ecs.tag_resource(resourceArn=missing, tags=[{"key": "a", "value": "b"}]),
                 lambda: ecs.untag_resource(resourceArn=missing, tagKeys=["a"])):
        with pytest.raises(ecs.exceptions.ClusterNotFoundException):
            call()


def test_deleted_cluster_is_not_found(ecs, cluster):
    ecs.delete_cluster(cluster=cluster)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.tag_resource(resourceArn=cluster, tags=[{"key": "a", "value": "b"}])
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_tags_for_resource(resourceArn=cluster)


def test_cluster_of_another_account_is_not_found(ecs, cluster):
    other = cluster.replace(f":{account_of(cluster)}:", ":000000000000:")
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_tags_for_resource(resourceArn=other)


@pytest.mark.parametrize("bad", [
    "not-an-arn",
    "arn:aws:ecr:us-east-1:123456789012:repository/x",
    "arn:aws:ecs:us-east-1:123456789012:container/c/t/u",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/family",
    "arn:aws:ecs:us-east-1:123456789012:cluster/a/b",
])
def test_malformed_arn_is_invalid(ecs, bad):
    with pytest.raises(ClientError) as e:
        ecs.list_tags_for_resource(resourceArn=bad)
    assert code(e) == "InvalidParameterException"
    assert message(e) == "The ARN provided is invalid."
    with pytest.raises(ClientError) as e:
        ecs.tag_resource(resourceArn=bad, tags=[{"key": "a", "value": "b"}])
    assert code(e) == "InvalidParameterException"


def test_short_service_arn_needs_long_format(ecs, cluster):
    short = cluster.replace(":cluster/", ":service/")
    with pytest.raises(ClientError) as e:
        ecs.tag_resource(resourceArn=short, tags=[{"key": "a", "value": "b"}])
    assert code(e) == "InvalidParameterException"
    assert "Long arn format" in message(e)


def test_missing_resources_in_existing_cluster(ecs, cluster):
    cname = cluster.rsplit("/", 1)[1]
    prefix = cluster.split(":cluster/")[0]
    for arn in (f"{prefix}:service/{cname}/nope", f"{prefix}:task/{cname}/0123456789abcdef0123456789abcdef",
                f"{prefix}:container-instance/{cname}/0123456789abcdef0123456789abcdef",
                f"{prefix}:task-set/{cname}/svc/ecs-svc/1234567890123456789",
                f"{prefix}:task-definition/nope-family:1", f"{prefix}:capacity-provider/nope"):
        with pytest.raises(ClientError) as e:
            ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "b"}])
        assert code(e) == "ResourceNotFoundException", arn
        with pytest.raises(ClientError) as e:
            ecs.untag_resource(resourceArn=arn, tagKeys=["a"])
        assert code(e) == "ResourceNotFoundException", arn
        with pytest.raises(ClientError) as e:
            ecs.list_tags_for_resource(resourceArn=arn)
        assert code(e) == "InvalidParameterException", arn


def test_resources_in_missing_cluster(ecs, cluster, name):
    prefix = cluster.split(":cluster/")[0]
    for arn in (f"{prefix}:service/{name}-gone/svc", f"{prefix}:task/{name}-gone/0123456789abcdef0123456789abcdef"):
        with pytest.raises(ecs.exceptions.ClusterNotFoundException):
            ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "b"}])


# -- validation ----------------------------------------------------------------

@pytest.mark.parametrize("tags", [
    [{"key": "aws:reserved", "value": "x"}],
    [{"key": "AWS:Reserved", "value": "x"}],
    [{"key": "k" * 129, "value": "x"}],
    [{"key": "k", "value": "v" * 257}],
    [{"key": "bad!key", "value": "x"}],
    [{"key": "k", "value": "bad#value"}],
    [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}],
    [{"key": f"k{i}", "value": "v"} for i in range(51)],
])
def test_invalid_tags_rejected_and_nothing_written(ecs, cluster, tags):
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "keep", "value": "1"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.tag_resource(resourceArn=cluster, tags=[{"key": "new", "value": "x"}] + tags)
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [{"key": "keep", "value": "1"}]


def test_longest_key_and_value_accepted(ecs, cluster):
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "k" * 128, "value": "v" * 256}])
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [{"key": "k" * 128, "value": "v" * 256}]


def test_untag_reserved_prefix_rejected(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.untag_resource(resourceArn=cluster, tagKeys=["aws:cloudformation:stack-name"])


def test_fifty_tags_then_limit_exceeded(ecs, cluster):
    fifty = [{"key": f"k{i:02}", "value": "v"} for i in range(50)]
    ecs.tag_resource(resourceArn=cluster, tags=fifty)
    assert len(ecs.list_tags_for_resource(resourceArn=cluster)["tags"]) == 50
    with pytest.raises(ecs.exceptions.LimitExceededException):
        ecs.tag_resource(resourceArn=cluster, tags=[{"key": "one-more", "value": "v"}])
    # Overwriting existing keys does not add to the count.
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "k00", "value": "changed"}])
    tags = ecs.list_tags_for_resource(resourceArn=cluster)["tags"]
    assert len(tags) == 50 and tags[0] == {"key": "k00", "value": "changed"}
    ecs.untag_resource(resourceArn=cluster, tagKeys=["k01"])
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "one-more", "value": "v"}])
    assert len(ecs.list_tags_for_resource(resourceArn=cluster)["tags"]) == 50


# -- capacity providers ---------------------------------------------------------

def test_tag_capacity_provider(ecs, name):
    cp = ecs.create_capacity_provider(
        name=name, autoScalingGroupProvider={"autoScalingGroupArn": ASG.format(name, name)},
        tags=[{"key": "a", "value": "1"}])["capacityProvider"]
    arn = cp["capacityProviderArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "b", "value": "2"}])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    ecs.untag_resource(resourceArn=arn, tagKeys=["a"])
    d = ecs.describe_capacity_providers(capacityProviders=[name], include=["TAGS"])["capacityProviders"][0]
    assert d["tags"] == [{"key": "b", "value": "2"}]
    # Deleting the provider drops its tags; it can no longer be tagged.
    ecs.delete_capacity_provider(capacityProvider=arn)
    with pytest.raises(ecs.exceptions.ResourceNotFoundException):
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "c", "value": "3"}])


def test_built_in_capacity_providers(ecs, cluster):
    fargate = cluster.split(":cluster/")[0] + ":capacity-provider/FARGATE"
    assert ecs.list_tags_for_resource(resourceArn=fargate)["tags"] == []
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.tag_resource(resourceArn=fargate, tags=[{"key": "a", "value": "b"}])


# -- other resource types, in-process ------------------------------------------

ACCT, REGION = "123456789012", "us-east-1"


def _row(table, **given):
    """A row for ``table``: the given values, and a placeholder for every other NOT NULL column
    (other engineers add columns to these tables; the tag lookups only need the ARN and status)."""
    fill = {Integer: 0, Float: 0.0, Boolean: False, LargeBinary: b"{}"}
    for col in table.columns:
        if col.name in given or col.nullable:
            continue
        if col.default is not None and getattr(col.default, "is_scalar", False):
            given[col.name] = col.default.arg
            continue
        given[col.name] = next((v for t, v in fill.items() if isinstance(col.type, t)), "x")
    return table, given


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/state.db")
    s.migrate()
    c1 = arns.cluster(REGION, ACCT, "c1")
    rows = [
        _row(clusters, arn=c1, account_id=ACCT, region=REGION, name="c1", status="ACTIVE"),
        _row(clusters, arn=arns.cluster(REGION, ACCT, "gone"), account_id=ACCT, region=REGION, name="gone",
             status="INACTIVE"),
        _row(services, arn=arns.service(REGION, ACCT, "c1", "web"), cluster_arn=c1, name="web",
             status="ACTIVE"),
        _row(services, arn=arns.service(REGION, ACCT, "c1", "old"), cluster_arn=c1, name="old",
             status="INACTIVE"),
        _row(tasks, arn=arns.task(REGION, ACCT, "c1", "a" * 32), cluster_arn=c1, family="fam",
             desired_status="STOPPED", last_status="STOPPED"),
        _row(container_instances, arn=arns.container_instance(REGION, ACCT, "c1", "b" * 32), cluster_arn=c1,
             instance_id="b" * 32, status="ACTIVE"),
        _row(task_definitions, arn=arns.task_definition(REGION, ACCT, "fam", 1), account_id=ACCT,
             region=REGION, family="fam", revision=1, status="INACTIVE"),
    ]
    with s.transaction() as tx:
        for table, values in rows:
            tx.insert(table.insert(), **values)
    yield s


CTX = Ctx(ACCT, REGION, f"arn:aws:iam::{ACCT}:root", "req", 0.0)


def _call(s, fn, **req):
    with s.transaction() as tx:
        return fn(tx, CTX, req)


@pytest.mark.parametrize("arn", [
    arns.service(REGION, ACCT, "c1", "web"),
    arns.task(REGION, ACCT, "c1", "a" * 32),  # stopped tasks can still be tagged
    arns.container_instance(REGION, ACCT, "c1", "b" * 32),
    arns.task_definition(REGION, ACCT, "fam", 1),  # so can INACTIVE revisions
])
def test_every_taggable_kind(store, arn):
    _call(store, tags_mod.tag_resource, resourceArn=arn, tags=[{"key": "k", "value": "v"}])
    assert _call(store, tags_mod.list_tags_for_resource, resourceArn=arn) == {"tags": [{"key": "k", "value": "v"}]}
    _call(store, tags_mod.untag_resource, resourceArn=arn, tagKeys=["k"])
    assert _call(store, tags_mod.list_tags_for_resource, resourceArn=arn) == {"tags": []}


@pytest.mark.parametrize("arn,op,expected", [
    (arns.service(REGION, ACCT, "c1", "old"), tags_mod.tag_resource, "ResourceNotFoundException"),
    (arns.service(REGION, ACCT, "c1", "old"), tags_mod.list_tags_for_resource, "InvalidParameterException"),
    (arns.service(REGION, ACCT, "gone", "web"), tags_mod.tag_resource, "ClusterNotFoundException"),
    (arns.task(REGION, ACCT, "gone", "a" * 32), tags_mod.list_tags_for_resource, "ClusterNotFoundException"),
    (arns.task_definition(REGION, ACCT, "fam", 2), tags_mod.untag_resource, "ResourceNotFoundException"),
])
def test_missing_kinds(store, arn, op, expected):
    req = {"resourceArn": arn, "tags": [{"key": "k", "value": "v"}], "tagKeys": ["k"]}
    with pytest.raises(AwsError) as e, store.transaction() as tx:
        op(tx, CTX, req)
    assert e.value.code == expected


# -- other resource types through the server, when their operations exist ------

def _or_skip(call):
    try:
        return call()
    except ClientError as e:
        if e.response["Error"]["Code"] == "UnknownOperationException":
            pytest.skip(f"{e.operation_name} is not implemented yet")
        raise


def test_task_definition_and_service_through_the_server(ecs, cluster, name):
    td = _or_skip(lambda: ecs.register_task_definition(
        family=name, containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}],
        tags=[{"key": "from", "value": "register"}]))["taskDefinition"]["taskDefinitionArn"]
    ecs.tag_resource(resourceArn=td, tags=[{"key": "b", "value": "2"}])
    assert ecs.list_tags_for_resource(resourceArn=td)["tags"] == [
        {"key": "b", "value": "2"}, {"key": "from", "value": "register"}]
    svc = _or_skip(lambda: ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td,
                                              desiredCount=0))["service"]["serviceArn"]
    ecs.tag_resource(resourceArn=svc, tags=[{"key": "s", "value": "1"}])
    assert ecs.list_tags_for_resource(resourceArn=svc)["tags"] == [{"key": "s", "value": "1"}]
    ecs.untag_resource(resourceArn=svc, tagKeys=["s"])
    assert ecs.list_tags_for_resource(resourceArn=svc)["tags"] == []
