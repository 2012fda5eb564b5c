import datetime

import pytest
from botocore.exceptions import ClientError


def web(name="web", **kw):
    c = {"name": name, "image": "nginx:1.25", "memory": 128}
    c.update(kw)
    return c


def register(ecs, family, containers=None, **kw):
    return ecs.register_task_definition(family=family, containerDefinitions=containers or [web()], **kw)


def error(exc_info):
    return exc_info.value.response["Error"]["Code"], exc_info.value.response["Error"]["Message"]


# -- register and describe -------------------------------------------------------------


def test_register_minimal_fills_aws_defaults(ecs, name):
    r = register(ecs, name)
    td = r["taskDefinition"]
    assert td["family"] == name and td["revision"] == 1 and td["status"] == "ACTIVE"
    assert td["taskDefinitionArn"].endswith(f":task-definition/{name}:1")
    assert td["taskDefinitionArn"].startswith("arn:aws:ecs:us-east-1:")
    assert td["networkMode"] == "bridge"
    assert td["volumes"] == [] and td["placementConstraints"] == []
    assert "requiresCompatibilities" not in td and "cpu" not in td and "memory" not in td
    assert td["compatibilities"] == ["EXTERNAL", "EC2"]
    assert isinstance(td["registeredAt"], datetime.datetime)
    assert td["registeredBy"].startswith("arn:aws:iam::")
    assert td["containerDefinitions"] == [{
        "name": "web", "image": "nginx:1.25", "memory": 128, "cpu": 0, "portMappings": [],
        "essential": True, "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [],
    }]
    assert "tags" not in r


def test_revisions_increase_and_are_never_reused(ecs, name):
    assert register(ecs, name)["taskDefinition"]["revision"] == 1
    assert register(ecs, name)["taskDefinition"]["revision"] == 2
    ecs.deregister_task_definition(taskDefinition=f"{name}:2")
    ecs.delete_task_definitions(taskDefinitions=[f"{name}:2"])
    assert register(ecs, name)["taskDefinition"]["revision"] == 3


def test_describe_by_family_revision_and_arn(ecs, name):
    arn1 = register(ecs, name)["taskDefinition"]["taskDefinitionArn"]
    arn2 = register(ecs, name, [web(image="nginx:2")])["taskDefinition"]["taskDefinitionArn"]
    assert ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]["taskDefinitionArn"] == arn2
    assert ecs.describe_task_definition(taskDefinition=f"{name}:1")["taskDefinition"]["taskDefinitionArn"] == arn1
    d = ecs.describe_task_definition(taskDefinition=arn2)
    assert d["taskDefinition"]["containerDefinitions"][0]["image"] == "nginx:2"
    assert "tags" not in d
    # The bare family is the latest ACTIVE revision.
    ecs.deregister_task_definition(taskDefinition=arn2)
    assert ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]["revision"] == 1
    # A deregistered revision stays describable by revision.
    assert ecs.describe_task_definition(taskDefinition=arn2)["taskDefinition"]["status"] == "INACTIVE"


def test_describe_matches_register(ecs, name):
    r = register(ecs, name, [web(portMappings=[{"containerPort": 80}])],
                 tags=[{"key": "team", "value": "a"}])
    d = ecs.describe_task_definition(taskDefinition=name, include=["TAGS"])
    assert d["taskDefinition"] == r["taskDefinition"]
    assert d["tags"] == r["tags"] == [{"key": "team", "value": "a"}]


@pytest.mark.parametrize("ref", ["{name}x", "{name}:7", "{name}:x", "{name}:",
                                 "arn:aws:ecs:us-east-1:000000000000:task-definition/{name}:1",
                                 "arn:aws:ecs:us-east-1:000000000000:cluster/{name}"])
def test_describe_unknown_is_client_exception(ecs, name, ref):
    register(ecs, name)
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=ref.format(name=name))
    assert error(e) == ("ClientException", "Unable to describe task definition.")


def test_describe_include_tags(ecs, name):
    register(ecs, name, tags=[{"key": "b", "value": "2"}, {"key": "a", "value": "1"}])
    d = ecs.describe_task_definition(taskDefinition=name, include=["TAGS"])
    assert sorted(d["tags"], key=lambda t: t["key"]) == [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    register(ecs, name)
    assert ecs.describe_task_definition(taskDefinition=name, include=["TAGS"])["tags"] == []


def test_tags_rules(ecs, name):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        register(ecs, name, tags=[{"key": "aws:reserved", "value": "x"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        register(ecs, name, tags=[{"key": f"k{i}", "value": "v"} for i in range(51)])
    # Nothing was registered by the failed calls.
    assert register(ecs, name)["taskDefinition"]["revision"] == 1


def test_fargate_definition(ecs, name):
    c = web(memory=None, portMappings=[{"containerPort": 8080}], logConfiguration={
        "logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1",
                                            "awslogs-stream-prefix": "web"}})
    del c["memory"]
    td = register(ecs, name, [c], networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                  cpu="0.25 vCPU", memory="0.5GB",
                  executionRoleArn="arn:aws:iam::123456789012:role/exec")["taskDefinition"]
    assert td["cpu"] == "256" and td["memory"] == "512"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["compatibilities"] == ["EC2", "FARGATE"]
    assert td["containerDefinitions"][0]["portMappings"] == [{"containerPort": 8080, "hostPort": 8080,
                                                              "protocol": "tcp"}]
    attrs = {a["name"] for a in td["requiresAttributes"]}
    assert attrs == {
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "ecs.capability.task-eni",
    }


def test_awsvpc_fargate_sized_definition_lists_fargate_without_requiring_it(ecs, name):
    td = register(ecs, name, networkMode="awsvpc", cpu="512", memory="1024")["taskDefinition"]
    assert td["compatibilities"] == ["EC2", "FARGATE"]
    td = register(ecs, name, networkMode="awsvpc", cpu="512", memory="512")["taskDefinition"]
    assert td["compatibilities"] == ["EC2"]


FARGATE = {"networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"}


@pytest.mark.parametrize("change, message", [
    ({"networkMode": "bridge"}, "Fargate only supports network mode 'awsvpc'."),
    ({"networkMode": None}, "Fargate only supports network mode 'awsvpc'."),
    ({"cpu": None}, "Fargate requires that 'cpu' be defined at the task level."),
    ({"memory": "4096"}, ("No Fargate configuration exists for given values: 256 CPU, 4096 memory. "
                         "See the Amazon ECS documentation for the valid values.")),
    ({"cpu": "300"}, "Invalid 'cpu' setting for task."),
    ({"logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}},
     "Fargate requires task definition to have execution role ARN to support log driver awslogs."),
    ({"volumes": [{"name": "data", "host": {"sourcePath": "/srv"}}]}, "host volumes"),
    ({"volumes": [{"name": "data", "dockerVolumeConfiguration": {"scope": "task"}}]}, "Docker volumes"),
    ({"stopTimeout": 121}, "stopTimeout"),
    ({"pidMode": "host"}, "do not support pidMode 'host'"),
])
def test_fargate_rules(ecs, name, change, message):
    kw = dict(FARGATE)
    c = web()
    for k, v in change.items():
        if k in ("logConfiguration", "stopTimeout"):
            c[k] = v
        elif v is None:
            kw.pop(k)
        else:
            kw[k] = v
    with pytest.raises(ClientError) as e:
        register(ecs, name, [c], **kw)
    code, msg = error(e)
    assert code == "ClientException"
    assert message in msg


def test_task_cpu_and_memory_are_normalised(ecs, name):
    td = register(ecs, name, cpu="2 vcpu", memory="3 GB")["taskDefinition"]
    assert (td["cpu"], td["memory"]) == ("2048", "3072")
    with pytest.raises(ClientError) as e:
        register(ecs, name, cpu="lots")
    assert error(e) == ("ClientException", "Invalid 'cpu' setting for task.")
    with pytest.raises(ClientError) as e:
        register(ecs, name, memory="1TB")
    assert error(e) == ("ClientException", "Invalid 'memory' setting for task.")


@pytest.mark.parametrize("containers, kw, message", [
    ([{"name": "web", "image": "", "memory": 128}], {}, "Container.image should not be null or empty."),
    ([{"name": "web", "image": "$IMAGE:tag", "memory": 128}], {}, "Container.image contains invalid characters."),
    ([{"name": "web", "image": "nginx"}], {},
     "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified."),
    ([web(memoryReservation=256)], {}, "'memory' must be greater than 'memoryReservation'"),
    ([web(essential=False)], {}, "Task definition does not have any essential containers."),
    ([web(), web()], {}, "Duplicate container name 'web'"),
    ([web(name="bad name")], {}, "Container name 'bad name' is invalid"),
    ([web(portMappings=[{"containerPort": 80, "hostPort": 8080}])], {"networkMode": "awsvpc"},
     "When networkMode=awsvpc, the host ports and container ports in port mappings must match."),
    ([web(portMappings=[{"containerPort": 80, "hostPort": 8080}])], {"networkMode": "host"},
     "When networkMode=host, the host ports and container ports in port mappings must match."),
    ([web(portMappings=[{"containerPort": 80}])], {"networkMode": "none"}, "networkMode=none"),
    ([web(portMappings=[{"containerPort": 80}, {"containerPort": 80, "hostPort": 0}])], {},
     "Duplicate containerPort 80/tcp"),
    ([web(portMappings=[{"containerPort": 80}]), web("b", portMappings=[{"containerPort": 80}])],
     {"networkMode": "awsvpc"}, "both map container port 80/tcp"),
    ([web(portMappings=[{"containerPort": 80, "hostPort": 8080}]),
      web("b", portMappings=[{"containerPort": 81, "hostPort": 8080}])], {}, "both map host port 8080/tcp"),
    ([web(links=["b"]), web("b")], {"networkMode": "awsvpc"}, "Links are not supported when networkMode=awsvpc."),
    ([web(links=["nope:alias"])], {}, "Container 'nope' does not exist"),
    ([web(dependsOn=[{"containerName": "nope", "condition": "START"}])], {}, "Container 'nope' does not exist"),
    ([web(dependsOn=[{"containerName": "b", "condition": "COMPLETE"}]), web("b")], {},
     "The COMPLETE condition cannot be used on essential container 'b'"),
    ([web(dependsOn=[{"containerName": "b", "condition": "HEALTHY"}]), web("b")], {},
     "The HEALTHY condition needs a healthCheck on container 'b'"),
    ([web(dependsOn=[{"containerName": "b", "condition": "START"}]),
      web("b", dependsOn=[{"containerName": "web", "condition": "START"}])], {}, "dependency cycle"),
    ([web(healthCheck={"command": ["CMD", "true"], "interval": 1})], {}, "'interval' must be between 5 and 300"),
    ([web(healthCheck={"command": ["true"]})], {}, "must start with CMD or CMD-SHELL"),
    ([web(mountPoints=[{"sourceVolume": "data", "containerPath": "/d"}])], {}, "Unknown volume 'data'"),
    ([web(volumesFrom=[{"sourceContainer": "ghost"}])], {}, "Container 'ghost' does not exist"),
    ([web()], {"volumes": [{"name": "a"}, {"name": "a"}]}, "Duplicate volume name 'a'"),
    ([web()], {"placementConstraints": [{"type": "memberOf", "expression": "attribute:x == y"}] * 11},
     "at most 10"),
    ([web(memory=4096)], {"memory": "1024"}, "cannot be greater than the task memory"),
    ([web(cpu=512)], {"cpu": "256"}, "greater than the task cpu"),
    ([web()] + [web(f"c{i}") for i in range(10)], {}, "at most 10 containers"),
    ([web()], {"requiresCompatibilities": ["EXTERNAL"], "networkMode": "awsvpc"}, "EXTERNAL"),
])
def test_validation_client_exceptions(ecs, name, containers, kw, message):
    with pytest.raises(ClientError) as e:
        register(ecs, name, containers, **kw)
    code, msg = error(e)
    assert code == "ClientException", msg
    assert message in msg


@pytest.mark.parametrize("family", ["bad name", "a" * 256, "x:1"])
def test_family_name_rules(ecs, family):
    with pytest.raises(ecs.exceptions.ClientException):
        register(ecs, family)


@pytest.mark.parametrize("kw", [
    {"networkMode": "overlay"},
    {"requiresCompatibilities": ["LAMBDA"]},
    {"containerDefinitions": [web(portMappings=[{"containerPort": 80, "protocol": "sctp"}])]},
    {"containerDefinitions": [web(logConfiguration={"logDriver": "carrier-pigeon"})]},
    # The model's enum for a task definition's constraint type is [memberOf] only.
    {"placementConstraints": [{"type": "distinctInstance"}]},
])
def test_enum_values_are_invalid_parameters(ecs, name, kw):
    containers = kw.pop("containerDefinitions", [web()])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        register(ecs, name, containers, **kw)


def test_memory_reservation_alone_is_enough_on_ec2(ecs, name):
    c = {"name": "web", "image": "nginx", "memoryReservation": 64}
    td = register(ecs, name, [c], requiresCompatibilities=["EC2"])["taskDefinition"]
    assert td["compatibilities"] == ["EXTERNAL", "EC2"]
    assert {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.21"} in td["requiresAttributes"]


def test_task_memory_replaces_container_memory(ecs, name):
    td = register(ecs, name, [{"name": "web", "image": "nginx"}], memory="512")["taskDefinition"]
    assert "memory" not in td["containerDefinitions"][0]


def test_health_check_defaults_and_feature_attributes(ecs, name):
    containers = [
        web(healthCheck={"command": ["CMD-SHELL", "curl -f localhost || exit 1"]}),
        web("sidecar", essential=False, dependsOn=[{"containerName": "web", "condition": "HEALTHY"}],
            privileged=True, secrets=[
                {"name": "A", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/a"},
                {"name": "B", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:b-AbCdEf"}]),
    ]
    td = register(ecs, name, containers, taskRoleArn="arn:aws:iam::123456789012:role/app",
                  networkMode="host")["taskDefinition"]
    assert td["containerDefinitions"][0]["healthCheck"] == {
        "command": ["CMD-SHELL", "curl -f localhost || exit 1"], "interval": 30, "timeout": 5, "retries": 3}
    attrs = {a["name"] for a in td["requiresAttributes"]}
    assert {
        "ecs.capability.container-health-check",
        "com.amazonaws.ecs.capability.docker-remote-api.1.24",
        "ecs.capability.container-ordering",
        "com.amazonaws.ecs.capability.privileged-container",
        "ecs.capability.secrets.ssm.environment-variables",
        "ecs.capability.secrets.asm.environment-variables",
        "com.amazonaws.ecs.capability.task-iam-role",
        "com.amazonaws.ecs.capability.task-iam-role-network-host",
    } <= attrs
    assert "ecs.capability.task-eni" not in attrs


def test_volumes_defaults(ecs, name):
    volumes = [
        {"name": "scratch"},
        {"name": "host", "host": {"sourcePath": "/srv"}},
        {"name": "dock", "dockerVolumeConfiguration": {"driver": "rexray"}},
        {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1234"}},
    ]
    c = web(mountPoints=[{"sourceVolume": v["name"], "containerPath": f"/{v['name']}"} for v in volumes])
    td = register(ecs, name, [c], volumes=volumes)["taskDefinition"]
    assert td["volumes"] == [
        {"name": "scratch"},
        {"name": "host", "host": {"sourcePath": "/srv"}},
        {"name": "dock", "dockerVolumeConfiguration": {"driver": "rexray", "scope": "task"}},
        {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1234", "rootDirectory": "/"}},
    ]
    assert td["containerDefinitions"][0]["mountPoints"] == c["mountPoints"]
    attrs = {a["name"] for a in td["requiresAttributes"]}
    assert {"ecs.capability.docker-plugin.rexray", "com.amazonaws.ecs.capability.docker-remote-api.1.25",
            "ecs.capability.efs"} <= attrs
    assert td["compatibilities"] == ["EC2"]  # EFS rules out EXTERNAL, host volumes Fargate


def test_what_the_user_sent_round_trips(ecs, name):
    container = {
        "name": "app", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", "cpu": 128,
        "memory": 256, "memoryReservation": 128, "essential": True,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "udp", "name": "p"}],
        "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        "command": ["serve", "--port", "8080"], "entryPoint": ["/bin/app"], "workingDirectory": "/srv",
        "dockerLabels": {"x": "y"}, "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "linuxParameters": {"initProcessEnabled": True}, "stopTimeout": 10, "user": "1000",
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
        "readonlyRootFilesystem": False, "mountPoints": [], "volumesFrom": [], "systemControls": [],
    }
    td = register(ecs, name, [container], executionRoleArn="arn:aws:iam::123456789012:role/exec",
                  pidMode="task", ipcMode="none", runtimePlatform={"operatingSystemFamily": "LINUX"})["taskDefinition"]
    assert td["containerDefinitions"] == [container]
    assert td["pidMode"] == "task" and td["ipcMode"] == "none"
    assert td["runtimePlatform"] == {"operatingSystemFamily": "LINUX"}
    attrs = {a["name"] for a in td["requiresAttributes"]}
    assert {"com.amazonaws.ecs.capability.ecr-auth", "ecs.capability.execution-role-ecr-pull",
            "com.amazonaws.ecs.capability.logging-driver.json-file",
            "com.amazonaws.ecs.capability.docker-remote-api.1.18"} <= attrs


# -- list ----------------------------------------------------------------------------


def _all_pages(ecs, method, key, **kw):
    pages = list(ecs.get_paginator(method).paginate(PaginationConfig={"PageSize": 1}, **kw))
    assert all(len(p[key]) <= 1 for p in pages)
    return [x for p in pages for x in p[key]]


def test_list_task_definitions_filters_sorts_and_pages(ecs, name):
    for fam in (f"{name}-b", f"{name}-a", f"{name}-a"):
        register(ecs, fam)
    ecs.deregister_task_definition(taskDefinition=f"{name}-a:1")
    arns = ecs.list_task_definitions(familyPrefix=f"{name}-a")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == [f"{name}-a:2"]
    # familyPrefix is the whole family name, not a prefix (as AWS).
    assert ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"] == []
    inactive = ecs.list_task_definitions(familyPrefix=f"{name}-a", status="INACTIVE")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in inactive] == [f"{name}-a:1"]
    mine = [a.rsplit("/", 1)[1] for a in _all_pages(ecs, "list_task_definitions", "taskDefinitionArns")
            if f"/{name}-" in a]
    assert mine == [f"{name}-a:2", f"{name}-b:1"]
    desc = [a.rsplit("/", 1)[1] for a in _all_pages(ecs, "list_task_definitions", "taskDefinitionArns",
                                                    sort="DESC") if f"/{name}-" in a]
    assert desc == [f"{name}-b:1", f"{name}-a:2"]
    register(ecs, f"{name}-a")
    register(ecs, f"{name}-a")
    fam = _all_pages(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=f"{name}-a", sort="DESC")
    assert [a.rsplit(":", 1)[1] for a in fam] == ["4", "3", "2"]


def test_list_task_definitions_bad_values(ecs):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definitions(status="GONE")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definitions(sort="UP")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definitions(maxResults=101)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definitions(nextToken="garbage!")


def test_list_task_definition_families(ecs, name):
    for fam in (f"{name}-x", f"{name}-y", f"{name}-z", f"{name}y"):
        register(ecs, fam)
    ecs.deregister_task_definition(taskDefinition=f"{name}-y:1")
    assert ecs.list_task_definition_families(familyPrefix=f"{name}-")["families"] == \
        [f"{name}-x", f"{name}-y", f"{name}-z"]
    assert ecs.list_task_definition_families(familyPrefix=f"{name}-", status="ACTIVE")["families"] == \
        [f"{name}-x", f"{name}-z"]
    assert ecs.list_task_definition_families(familyPrefix=name, status="INACTIVE")["families"] == [f"{name}-y"]
    # The family is ACTIVE again once it has an ACTIVE revision.
    register(ecs, f"{name}-y")
    assert ecs.list_task_definition_families(familyPrefix=name, status="INACTIVE")["families"] == []
    assert ecs.list_task_definition_families(familyPrefix=f"{name}y")["families"] == [f"{name}y"]
    paged = _all_pages(ecs, "list_task_definition_families", "families", familyPrefix=name)
    assert paged == [f"{name}-x", f"{name}-y", f"{name}-z", f"{name}y"]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definition_families(status="DELETE_IN_PROGRESS")


# -- deregister and delete ------------------------------------------------------------


def test_deregister(ecs, name):
    register(ecs, name)
    td = ecs.deregister_task_definition(taskDefinition=f"{name}:1")["taskDefinition"]
    assert td["status"] == "INACTIVE"
    assert isinstance(td["deregisteredAt"], datetime.datetime)
    # Again: answered as it is.
    again = ecs.deregister_task_definition(taskDefinition=td["taskDefinitionArn"])["taskDefinition"]
    assert again == td
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=name)
    assert error(e) == ("ClientException", "Unable to describe task definition.")


def test_deregister_errors(ecs, name):
    register(ecs, name)
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition=name)
    assert error(e) == ("ClientException", "Revision is missing.")
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition=f"{name}:x")
    assert error(e) == ("InvalidParameterException", "Invalid revision number. Number: x")
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition=f"{name}:9")
    assert error(e) == ("ClientException", "Unable to describe task definition.")
    assert ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]["status"] == "ACTIVE"


def test_delete_task_definitions(ecs, name):
    register(ecs, name)
    register(ecs, name)
    ecs.deregister_task_definition(taskDefinition=f"{name}:1")
    r = ecs.delete_task_definitions(taskDefinitions=[f"{name}:1", f"{name}:2", f"{name}:9", name])
    assert [t["taskDefinitionArn"].rsplit("/", 1)[1] for t in r["taskDefinitions"]] == [f"{name}:1"]
    deleted = r["taskDefinitions"][0]
    assert deleted["status"] == "DELETE_IN_PROGRESS"
    assert isinstance(deleted["deleteRequestedAt"], datetime.datetime)
    assert isinstance(deleted["deregisteredAt"], datetime.datetime)
    reasons = {f["arn"].rsplit("/", 1)[-1]: f["reason"] for f in r["failures"]}
    assert "still in ACTIVE status" in reasons[f"{name}:2"]
    assert "does not exist" in reasons[f"{name}:9"]
    assert "identifier is invalid" in reasons[name]
    assert ecs.describe_task_definition(taskDefinition=f"{name}:1")["taskDefinition"]["status"] == \
        "DELETE_IN_PROGRESS"
    listed = ecs.list_task_definitions(familyPrefix=name, status="DELETE_IN_PROGRESS")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in listed] == [f"{name}:1"]
    assert ecs.list_task_definitions(familyPrefix=name, status="INACTIVE")["taskDefinitionArns"] == []


def test_delete_task_definitions_limits(ecs, name):
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.delete_task_definitions(taskDefinitions=[])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.delete_task_definitions(taskDefinitions=[f"{name}:{i}" for i in range(1, 12)])


# -- the same operations on each store backend (no HTTP) -----------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    from dockyard.state.store import Store

    url = (f"sqlite:///{tmp_path / 'dockyard.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg").create_database())
    s = Store(url)
    s.migrate()
    yield s
    s.stop()
    if s._read_conn is not None:
        s._read_conn.close()
    s.engine.dispose()


def test_operations_on_each_backend(store):
    import time

    import orjson

    from dockyard.services.context import Ctx
    from dockyard.services.ecs import task_definitions as tdm

    ctx = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:user/t", "rid", time.time())
    families = ["a-b", "a_b", "ab", "a-c", "b"]
    with store.transaction() as tx:
        for fam in families:
            tdm.register_task_definition(tx, ctx, {"family": fam, "containerDefinitions": [web()],
                                                   "tags": [{"key": "z", "value": "1"}, {"key": "k", "value": "2"}]})
        tdm.register_task_definition(tx, ctx, {"family": "ab", "containerDefinitions": [web()]})
        tdm.deregister_task_definition(tx, ctx, {"taskDefinition": "ab:2"})

    def read(fn, req):
        out = store.read(fn, ctx, req)
        return orjson.loads(out) if isinstance(out, bytes) else out

    d = read(tdm.describe_task_definition, {"taskDefinition": "ab", "include": ["TAGS"]})
    assert d["taskDefinition"]["revision"] == 1
    assert d["tags"] == [{"key": "k", "value": "2"}, {"key": "z", "value": "1"}]
    arn2 = d["taskDefinition"]["taskDefinitionArn"][:-1] + "2"
    d = read(tdm.describe_task_definition, {"taskDefinition": arn2, "include": ["TAGS"]})
    assert (d["taskDefinition"]["status"], d["tags"]) == ("INACTIVE", [])
    assert read(tdm.list_task_definition_families, {"familyPrefix": "a"})["families"] == ["a-b", "a-c", "a_b",
                                                                                           "ab"]
    assert read(tdm.list_task_definition_families, {"familyPrefix": "a-"})["families"] == ["a-b", "a-c"]
    seen, token = [], None
    while True:
        page = read(tdm.list_task_definitions, {"maxResults": 2, "sort": "DESC",
                                                **({"nextToken": token} if token else {})})
        seen += [a.rsplit("/", 1)[1] for a in page["taskDefinitionArns"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == ["b:1", "ab:1", "a_b:1", "a-c:1", "a-b:1"]
    assert store.read(tdm.lookup, ctx, "ab:2")["status"] == "INACTIVE"
    assert store.read(tdm.lookup, ctx, "ab")["revision"] == 1
    assert store.read(tdm.lookup, ctx, "nope") is None
