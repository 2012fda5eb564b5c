import re

import pytest
from botocore.exceptions import ClientError

from tests.helpers.wait import wait_until

NET = {"awsvpcConfiguration": {"subnets": ["subnet-0123456789abcdef0"], "securityGroups": ["sg-0123abcd"]}}


def _error(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


@pytest.fixture
def taskdef(ecs, name):
    """A bridge-mode (EC2) task definition; returns its family:revision."""
    td = ecs.register_task_definition(
        family=name, containerDefinitions=[{"name": "web", "image": "busybox", "memory": 64,
                                            "portMappings": [{"containerPort": 80}]}])["taskDefinition"]
    return f"{td['family']}:{td['revision']}"


@pytest.fixture
def fargate_taskdef(ecs, name):
    td = ecs.register_task_definition(
        family=name + "-fg", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "web", "image": "busybox",
                               "portMappings": [{"containerPort": 80, "name": "http"}]}])["taskDefinition"]
    return td["taskDefinitionArn"]


def test_create_service_echoes_fields_and_defaults(ecs, server, cluster, taskdef, name):
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=2,
                           tags=[{"key": "team", "value": "a"}])["service"]
    cluster_name = cluster.rsplit("/", 1)[1]
    assert s["serviceArn"] == cluster.replace(":cluster/", ":service/") + "/" + name
    assert s["serviceArn"].endswith(f":service/{cluster_name}/{name}")
    assert s["clusterArn"] == cluster
    assert s["status"] == "ACTIVE"
    assert s["desiredCount"] == 2 and s["runningCount"] == 0 and s["pendingCount"] == 0
    assert s["launchType"] == "EC2" and "platformVersion" not in s
    assert s["taskDefinition"].endswith(f":task-definition/{taskdef}")
    assert s["deploymentConfiguration"] == {"deploymentCircuitBreaker": {"enable": False, "rollback": False},
                                            "maximumPercent": 200, "minimumHealthyPercent": 100}
    assert s["roleArn"].endswith(":role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS")
    assert s["events"] == [] and s["loadBalancers"] == [] and s["serviceRegistries"] == []
    assert s["placementConstraints"] == [] and s["placementStrategy"] == []
    assert s["schedulingStrategy"] == "REPLICA"
    assert s["deploymentController"] == {"type": "ECS"}
    assert s["healthCheckGracePeriodSeconds"] == 0
    assert s["propagateTags"] == "NONE" and s["enableECSManagedTags"] is False
    assert s["enableExecuteCommand"] is False
    assert s["createdBy"].startswith("arn:aws:iam::")
    assert s["tags"] == [{"key": "team", "value": "a"}]
    [d] = s["deployments"]
    assert re.fullmatch(r"ecs-svc/\d{19}", d["id"])
    assert d["status"] == "PRIMARY" and d["taskDefinition"] == s["taskDefinition"]
    assert (d["desiredCount"], d["pendingCount"], d["runningCount"], d["failedTasks"]) == (2, 0, 0, 0)
    assert d["launchType"] == "EC2"
    assert d["rolloutState"] == "IN_PROGRESS"
    assert d["rolloutStateReason"] == f"ECS deployment {d['id']} in progress."
    assert d["createdAt"] == d["updatedAt"] == s["createdAt"]

    got = ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])
    assert got["failures"] == []
    [again] = got["services"]
    assert again["tags"] == [{"key": "team", "value": "a"}]
    assert again["deployments"] == s["deployments"]
    assert "tags" not in ecs.describe_services(cluster=cluster, services=[name])["services"][0]
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["activeServicesCount"] == 1


def test_create_same_name_is_not_idempotent_unless_same_client_token(ecs, cluster, taskdef, name):
    first = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                               clientToken="tok-" + name)["service"]
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1)
    assert _error(e) == ("InvalidParameterException", "Creation of service was not idempotent.")
    again = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                               clientToken="tok-" + name)["service"]
    assert again["deployments"][0]["id"] == first["deployments"][0]["id"]
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=3,
                           clientToken="tok-" + name)
    assert _error(e)[1] == "Creation of service was not idempotent."
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 1
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName=name + "x", taskDefinition=taskdef, desiredCount=1,
                           clientToken="x" * 37)


def test_create_service_validation(ecs, cluster, taskdef, name):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName="bad name!", taskDefinition=taskdef, desiredCount=1)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.create_service(cluster=name + "-nope", serviceName=name, taskDefinition=taskdef, desiredCount=1)
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name + "-nope", desiredCount=1)
    assert _error(e) == ("ClientException", "Unable to describe task definition.")
    with pytest.raises(ecs.exceptions.InvalidParameterException):  # REPLICA needs a desiredCount
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef)
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           networkConfiguration=NET)
    assert _error(e) == ("InvalidParameterException",
                         "Network Configuration is not valid for the given networkMode of this task definition.")
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           launchType="EC2", platformVersion="1.4.0")
    assert _error(e)[1] == "The platform version must be null when specifying an EC2 launch type."
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           launchType="EC2", capacityProviderStrategy=[{"capacityProvider": "FARGATE"}])
    assert _error(e)[0] == "InvalidParameterException"
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           placementConstraints=[{"type": "distinctInstance", "expression": "x"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           placementStrategy=[{"type": "random"}] * 6)
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           loadBalancers=[{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:"
                                           "123456789012:targetgroup/tg/abc", "containerName": "web",
                                           "containerPort": 8080}])
    assert _error(e)[1] == "The container web did not have a container port 8080 defined."
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 0


def test_inactive_task_definition(ecs, cluster, taskdef, name):
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=0)
    ecs.deregister_task_definition(taskDefinition=taskdef)
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service=name, taskDefinition=taskdef)
    assert _error(e) == ("ClientException", "TaskDefinition is inactive")
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name + "-2", taskDefinition=taskdef, desiredCount=0)
    assert _error(e) == ("ClientException", "TaskDefinition is inactive")
    # Changing other settings of a service whose task definition went inactive still works.
    assert ecs.update_service(cluster=cluster, service=name, desiredCount=1)["service"]["desiredCount"] == 1


def test_fargate_service(ecs, cluster, fargate_taskdef, name):
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=fargate_taskdef, desiredCount=1,
                           launchType="FARGATE")
    assert _error(e) == ("InvalidParameterException",
                         "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    with pytest.raises(ecs.exceptions.PlatformUnknownException):
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=fargate_taskdef, desiredCount=1,
                           launchType="FARGATE", networkConfiguration=NET, platformVersion="9.9.9")
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=fargate_taskdef, desiredCount=1,
                           launchType="FARGATE", networkConfiguration=NET)["service"]
    assert s["launchType"] == "FARGATE"
    assert s["platformVersion"] == "LATEST" and s["platformFamily"] == "Linux"
    assert s["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-0123456789abcdef0"], "securityGroups": ["sg-0123abcd"], "assignPublicIp": "DISABLED"}
    d = s["deployments"][0]
    assert d["platformVersion"] == "1.4.0" and d["platformFamily"] == "Linux"
    assert d["networkConfiguration"] == s["networkConfiguration"]
    # platformVersion starts a deployment; networkConfiguration too.
    s2 = ecs.update_service(cluster=cluster, service=name, platformVersion="1.3.0")["service"]
    assert len(s2["deployments"]) == 2 and s2["deployments"][0]["platformVersion"] == "1.3.0"
    net2 = {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "ENABLED"}}
    s3 = ecs.update_service(cluster=cluster, service=name, networkConfiguration=net2)["service"]
    # A new PRIMARY; the older ones (no tasks here) leave the list when the scheduler looks.
    assert s3["deployments"][0]["id"] not in {d["id"] for d in s2["deployments"]}
    assert s3["deployments"][0]["networkConfiguration"] == s3["networkConfiguration"]
    assert s3["networkConfiguration"] == {"awsvpcConfiguration": {"subnets": ["subnet-1"],
                                                                  "assignPublicIp": "ENABLED"}}


def test_cluster_default_capacity_provider_strategy(ecs, name, fargate_taskdef):
    strategy = [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}]
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=strategy)
    s = ecs.create_service(cluster=name, serviceName=name, taskDefinition=fargate_taskdef, desiredCount=1,
                           networkConfiguration=NET)["service"]
    assert s["capacityProviderStrategy"] == strategy and "launchType" not in s
    assert s["platformVersion"] == "LATEST"
    assert s["deployments"][0]["capacityProviderStrategy"] == strategy


def test_daemon_service(ecs, cluster, taskdef, name):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, schedulingStrategy="DAEMON",
                           deploymentConfiguration={"maximumPercent": 150})
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, schedulingStrategy="DAEMON",
                           placementStrategy=[{"type": "spread", "field": "instanceId"}])
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, schedulingStrategy="DAEMON",
                           deploymentConfiguration={})["service"]
    assert s["schedulingStrategy"] == "DAEMON" and s["desiredCount"] == 0
    assert s["deploymentConfiguration"]["maximumPercent"] == 100
    assert s["deploymentConfiguration"]["minimumHealthyPercent"] == 0
    assert ecs.list_services(cluster=cluster, schedulingStrategy="DAEMON")["serviceArns"] == [s["serviceArn"]]
    assert ecs.list_services(cluster=cluster, schedulingStrategy="REPLICA")["serviceArns"] == []
    # A DAEMON service is deleted without scaling it down first.
    assert ecs.delete_service(cluster=cluster, service=name)["service"]["status"] == "DRAINING"


def test_update_service_what_starts_a_deployment(ecs, cluster, taskdef, name):
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1)["service"]
    first = s["deployments"][0]["id"]

    s = ecs.update_service(cluster=cluster, service=name, desiredCount=3)["service"]
    assert [d["id"] for d in s["deployments"]] == [first]
    assert s["desiredCount"] == 3 and s["deployments"][0]["desiredCount"] == 3

    s = ecs.update_service(cluster=cluster, service=s["serviceArn"], healthCheckGracePeriodSeconds=30,
                           deploymentConfiguration={"maximumPercent": 150, "minimumHealthyPercent": 50},
                           placementStrategy=[{"type": "binpack", "field": "memory"},
                                              {"type": "spread", "field": "host"}],
                           placementConstraints=[{"type": "memberOf",
                                                  "expression": "attribute:ecs.instance-type =~ t2.*"}],
                           enableExecuteCommand=True, propagateTags="SERVICE")["service"]
    assert [d["id"] for d in s["deployments"]] == [first]
    assert s["healthCheckGracePeriodSeconds"] == 30
    assert s["deploymentConfiguration"] == {"deploymentCircuitBreaker": {"enable": False, "rollback": False},
                                            "maximumPercent": 150, "minimumHealthyPercent": 50}
    assert s["placementStrategy"] == [{"type": "binpack", "field": "MEMORY"},
                                      {"type": "spread", "field": "instanceId"}]
    assert s["enableExecuteCommand"] is True and s["propagateTags"] == "SERVICE"

    family = taskdef.split(":")[0]
    td2 = ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "web", "image": "busybox:2", "memory": 64}])["taskDefinition"]
    s = ecs.update_service(cluster=cluster, service=name, taskDefinition=family)["service"]
    assert s["taskDefinition"] == td2["taskDefinitionArn"]
    assert [d["status"] for d in s["deployments"]] == ["PRIMARY", "ACTIVE"]
    assert s["deployments"][1]["id"] == first
    assert s["deployments"][0]["taskDefinition"] == td2["taskDefinitionArn"]
    assert s["deployments"][0]["desiredCount"] == 3

    # The same task definition again is no change; forceNewDeployment always deploys.
    second = s["deployments"][0]["id"]
    s = ecs.update_service(cluster=cluster, service=name, taskDefinition=td2["taskDefinitionArn"])["service"]
    assert s["deployments"][0]["id"] == second
    s = ecs.update_service(cluster=cluster, service=name, forceNewDeployment=True)["service"]
    third = s["deployments"][0]["id"]
    assert third not in (first, second) and s["deployments"][0]["status"] == "PRIMARY"
    assert all(d["status"] == "ACTIVE" for d in s["deployments"][1:])
    # Older deployments leave the list once none of their tasks is left (this cluster runs none).
    wait_until(lambda: [d["id"] for d in ecs.describe_services(cluster=cluster, services=[name])["services"][0][
        "deployments"]] == [third], 10, "the older deployments gone")


def test_update_service_errors(ecs, cluster, taskdef, name):
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
    assert _error(e) == ("ServiceNotFoundException", "Service not found.")
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=0)
    ecs.delete_service(cluster=cluster, service=name)
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
    assert _error(e) == ("ServiceNotActiveException", "Service was not ACTIVE.")


def test_delete_service_lifecycle(ecs, cluster, taskdef, name):
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=2)["service"]
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster=cluster, service=name)
    assert _error(e) == ("InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
    with pytest.raises(ecs.exceptions.ClusterContainsServicesException):
        ecs.delete_cluster(cluster=cluster)

    gone = ecs.delete_service(cluster=cluster, service=name, force=True)["service"]
    assert gone["status"] == "DRAINING" and gone["desiredCount"] == 0
    # No task of the service runs, so it is INACTIVE at once: still describable, no longer listed.
    d = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
    assert d["status"] == "INACTIVE"
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 0
    with pytest.raises(ecs.exceptions.ServiceNotActiveException):
        ecs.delete_service(cluster=cluster, service=name)

    # The name can be used again: same ARN, a fresh deployment.
    again = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=0)["service"]
    assert again["serviceArn"] == s["serviceArn"] and again["status"] == "ACTIVE"
    assert again["deployments"][0]["id"] != s["deployments"][0]["id"]
    listed = ecs.list_service_deployments(cluster=cluster, service=name)["serviceDeployments"]
    assert len(listed) == 1
    ecs.delete_service(cluster=cluster, service=name)
    assert ecs.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_describe_services_failures_and_limits(ecs, cluster, taskdef, name):
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=0)["service"]
    r = ecs.describe_services(cluster=cluster, services=[s["serviceArn"], name + "-missing"])
    assert [x["serviceName"] for x in r["services"]] == [name]
    assert r["failures"] == [{"arn": s["serviceArn"] + "-missing", "reason": "MISSING"}]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_services(cluster=cluster, services=[f"s{i}" for i in range(11)])
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.describe_services(cluster=name + "-nope", services=[name])
    # A service is found only in its own cluster.
    other = ecs.create_cluster(clusterName=name + "-other")["cluster"]["clusterArn"]
    r = ecs.describe_services(cluster=other, services=[s["serviceArn"]])
    assert r["services"] == [] and r["failures"][0]["reason"] == "MISSING"


def test_list_services_paging_and_filters(ecs, cluster, taskdef, fargate_taskdef, name):
    arns = []
    for i in range(3):
        arns.append(ecs.create_service(cluster=cluster, serviceName=f"{name}-{i}", taskDefinition=taskdef,
                                       desiredCount=0)["service"]["serviceArn"])
    fg = ecs.create_service(cluster=cluster, serviceName=f"{name}-fg", taskDefinition=fargate_taskdef,
                            desiredCount=0, launchType="FARGATE", networkConfiguration=NET)["service"]["serviceArn"]
    seen = []
    for page in ecs.get_paginator("list_services").paginate(cluster=cluster, PaginationConfig={"PageSize": 1}):
        assert len(page["serviceArns"]) <= 1
        seen += page["serviceArns"]
    assert seen == sorted(arns + [fg])
    assert ecs.list_services(cluster=cluster, launchType="FARGATE")["serviceArns"] == [fg]
    assert ecs.list_services(cluster=cluster, launchType="EC2")["serviceArns"] == sorted(arns)
    assert len(ecs.list_services(cluster=cluster, maxResults=2)["serviceArns"]) == 2
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_services(cluster=cluster, maxResults=101)


def test_list_services_by_namespace(ecs, cluster, fargate_taskdef, name):
    ns = "ns-" + name
    scc = {"enabled": True, "namespace": ns,
           "services": [{"portName": "http", "clientAliases": [{"port": 80}]}]}
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=fargate_taskdef, desiredCount=0,
                           launchType="FARGATE", networkConfiguration=NET,
                           serviceConnectConfiguration=scc)["service"]
    assert s["deployments"][0]["serviceConnectConfiguration"]["namespace"] == ns
    assert ecs.list_services_by_namespace(namespace=ns)["serviceArns"] == [s["serviceArn"]]
    assert ecs.list_services_by_namespace(namespace=ns + "-other")["serviceArns"] == []


def test_service_deployment_records(ecs, cluster, taskdef, name):
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True,
                                                                                 "rollback": True}})["service"]
    first_sd = s["currentServiceDeployment"]
    assert re.fullmatch(r"arn:aws:ecs:us-east-1:\d{12}:service-deployment/[^/]+/" + name + r"/[A-Za-z0-9_-]{21}",
                        first_sd)
    s2 = ecs.update_service(cluster=cluster, service=name, forceNewDeployment=True, desiredCount=4)["service"]
    second_sd = s2["currentServiceDeployment"]

    listed = ecs.list_service_deployments(cluster=cluster, service=name)["serviceDeployments"]
    assert [x["serviceDeploymentArn"] for x in listed] == [second_sd, first_sd]
    assert [x["status"] for x in listed] == ["IN_PROGRESS", "STOPPED"]
    digits = s2["deployments"][0]["id"].split("/")[1]
    assert listed[0]["targetServiceRevisionArn"].endswith(f":service-revision/{cluster.rsplit('/', 1)[1]}"
                                                          f"/{name}/{digits}")
    assert ecs.list_service_deployments(cluster=cluster, service=name,
                                        status=["STOPPED"])["serviceDeployments"][0]["serviceDeploymentArn"] \
        == first_sd
    page = ecs.list_service_deployments(cluster=cluster, service=name, maxResults=1)
    assert len(page["serviceDeployments"]) == 1 and page["nextToken"]
    rest = ecs.list_service_deployments(cluster=cluster, service=name, nextToken=page["nextToken"])
    assert [x["serviceDeploymentArn"] for x in rest["serviceDeployments"]] == [first_sd]

    r = ecs.describe_service_deployments(serviceDeploymentArns=[second_sd, second_sd + "x"])
    assert r["failures"] == [{"arn": second_sd + "x", "reason": "MISSING"}]
    [sd] = r["serviceDeployments"]
    assert sd["status"] == "IN_PROGRESS" and sd["serviceArn"] == s["serviceArn"]
    assert sd["targetServiceRevision"]["requestedTaskCount"] == 4
    assert sd["sourceServiceRevisions"][0]["arn"].endswith(s["deployments"][0]["id"].split("/")[1])
    assert sd["deploymentCircuitBreaker"] == {"status": "MONITORING", "failureCount": 0, "threshold": 3}
    assert sd["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    # desiredCount alone retargets the current deployment's revision.
    ecs.update_service(cluster=cluster, service=name, desiredCount=2)
    sd = ecs.describe_service_deployments(serviceDeploymentArns=[second_sd])["serviceDeployments"][0]
    assert sd["targetServiceRevision"]["requestedTaskCount"] == 2

    rev_arn = sd["targetServiceRevision"]["arn"]
    revs = ecs.describe_service_revisions(serviceRevisionArns=[rev_arn, rev_arn + "0"])
    assert revs["failures"][0]["reason"] == "MISSING"
    [rev] = revs["serviceRevisions"]
    assert rev["taskDefinition"] == s["taskDefinition"] and rev["launchType"] == "EC2"
    assert rev["containerImages"] == [{"containerName": "web", "image": "busybox"}]

    with pytest.raises(ClientError) as e:
        ecs.stop_service_deployment(serviceDeploymentArn=first_sd)
    assert _error(e)[0] == "ConflictException"
    with pytest.raises(ClientError) as e:
        ecs.stop_service_deployment(serviceDeploymentArn=first_sd[:-1] + ("A" if first_sd[-1] != "A" else "B"))
    assert _error(e)[0] == "ServiceDeploymentNotFoundException"
    assert ecs.stop_service_deployment(serviceDeploymentArn=second_sd,
                                       stopType="ROLLBACK")["serviceDeploymentArn"] == second_sd
    sd = ecs.describe_service_deployments(serviceDeploymentArns=[second_sd])["serviceDeployments"][0]
    # The service scheduler takes the request up at once (nothing runs here, so it stays in progress).
    assert sd["status"] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
    assert sd["rollback"]["serviceRevisionArn"] == sd["sourceServiceRevisions"][0]["arn"]

    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.list_service_deployments(cluster=cluster, service=name + "-missing")


def test_service_tags(ecs, cluster, taskdef, name):
    arn = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef,
                             desiredCount=0)["service"]["serviceArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "k", "value": "v"}]
    got = ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])["services"][0]
    assert got["tags"] == [{"key": "k", "value": "v"}]


def test_terraform_style_create_and_read_back(ecs, cluster, taskdef, name):
    """What the AWS provider sends for a minimal aws_ecs_service, and what it reads back."""
    s = ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=taskdef, desiredCount=1,
                           clientToken="terraform-20250101000000000000000001",
                           deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 100},
                           enableECSManagedTags=False, enableExecuteCommand=False, schedulingStrategy="REPLICA",
                           availabilityZoneRebalancing="DISABLED")["service"]
    d = ecs.describe_services(cluster=cluster, services=[s["serviceArn"]], include=["TAGS"])["services"][0]
    assert d["availabilityZoneRebalancing"] == "DISABLED"
    assert d["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}
    assert d["launchType"] == "EC2" and d["tags"] == []
    # destroy: scale to 0, delete, wait for INACTIVE
    ecs.update_service(cluster=cluster, service=s["serviceArn"], desiredCount=0)
    ecs.delete_service(cluster=cluster, service=s["serviceArn"])
    waiter = ecs.get_waiter("services_inactive")
    waiter.wait(cluster=cluster, services=[s["serviceArn"]], WaiterConfig={"Delay": 1, "MaxAttempts": 5})


# -- the controller-facing API, in process on a store of its own ------------------------------------

def _task_row(table, **given):
    """A tasks row with ``given`` columns and a placeholder in every other required one."""
    from sqlalchemy import Boolean, Float, Integer, LargeBinary

    row = {}
    for col in table.columns:
        if col.name in given:
            row[col.name] = given[col.name]
        elif not col.nullable and col.default is None:
            t = col.type
            row[col.name] = (0 if isinstance(t, (Integer, Boolean)) else 0.0 if isinstance(t, Float)
                             else b"{}" if isinstance(t, LargeBinary) else "x")
    return row


def test_controller_api_events_counts_and_draining(tmp_path):
    from sqlalchemy import insert, update

    from dockyard.services.context import Ctx
    from dockyard.services.ecs import clusters, services, task_definitions
    from dockyard.state.schema import tasks as tt
    from dockyard.state.store import Store

    store = Store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    store.migrate()
    ctx = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:root", "req", 1000.0)
    with store.transaction() as tx:
        clusters.create_cluster(tx, ctx, {"clusterName": "c"})
        task_definitions.register_task_definition(
            tx, ctx, {"family": "f", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]})
        svc = services.create_service(tx, ctx, {"cluster": "c", "serviceName": "s", "taskDefinition": "f",
                                                "desiredCount": 2})["service"]
        arn, dep = svc["serviceArn"], svc["deployments"][0]["id"]
        for i in range(105):
            services.add_event(tx, 1000.0 + i, arn, f"(service s) event {i}")
        for n, last in enumerate(["RUNNING", "PENDING", "STOPPED"]):
            tx.run(insert(tt).values(_task_row(
                tt, arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/{n}", cluster_arn=svc["clusterArn"],
                family="f", service_name="s", started_by=dep, desired_status="RUNNING", last_status=last,
                created_at=1000.0)))
    with store.transaction() as tx:
        c = clusters.require_cluster(tx, ctx, "c")
        s = services.find_service(tx, ctx, c, "s")
        doc = services.render(tx, s)
        assert len(doc["events"]) == 100
        assert doc["events"][0]["message"] == "(service s) event 104"
        assert doc["events"][-1]["message"] == "(service s) event 5"
        assert (doc["runningCount"], doc["pendingCount"]) == (1, 1)
        assert (doc["deployments"][0]["runningCount"], doc["deployments"][0]["pendingCount"]) == (1, 1)
        # Tasks still live: DeleteService(force) leaves the service DRAINING.
        out = services.delete_service(tx, ctx, {"cluster": "c", "service": "s", "force": True})["service"]
        assert out["status"] == "DRAINING"
        assert services.load(tx, arn).status == "DRAINING"
        assert services.settle_draining(tx, 2000.0, arn) is False
    with store.transaction() as tx:
        tx.run(update(tt).where(tt.c.service_name == "s").values(last_status="STOPPED"))
        assert services.settle_draining(tx, 2000.0, arn) is True
        assert services.load(tx, arn).status == "INACTIVE"
        c = clusters.require_cluster(tx, ctx, "c")
        assert c.active_services == 0
        assert clusters.delete_cluster(tx, ctx, {"cluster": "c"})["cluster"]["status"] == "INACTIVE"
    store.engine.dispose()
