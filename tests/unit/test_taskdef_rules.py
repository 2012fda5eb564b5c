"""taskdef_rules without a server: parsing, the Fargate table, defaults, computed fields, errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api.errors import ClientException, InvalidParameterException
from dockyard.services.ecs import taskdef_rules as rules

# The reference's own statement of the Fargate table (ecs-semantics.md 4.4).
REFERENCE_TABLE = {256: [512, 1024, 2048], 512: [1024, 2048, 3072, 4096], 1024: list(range(2048, 8193, 1024)),
                   2048: list(range(4096, 16385, 1024)), 4096: list(range(8192, 30721, 1024)),
                   8192: list(range(16384, 61441, 4096)), 16384: list(range(32768, 122881, 8192))}


def req(*containers, **kw):
    return {"family": "f", "containerDefinitions": list(containers) or [c()], **kw}


def c(name="app", **kw):
    d = {"name": name, "image": "busybox", "memory": 64}
    d.update(kw)
    return d


def fails(kind, text, r):
    with pytest.raises(kind) as e:
        rules.build(r)
    assert text in e.value.message, e.value.message


# -- cpu and memory strings --------------------------------------------------------------

@pytest.mark.parametrize("text, units", [
    ("1024", 1024), ("128", 128), (" 256 ", 256), ("1 vCPU", 1024), ("1 vcpu", 1024), ("1vcpu", 1024),
    ("0.25 vCPU", 256), (".5 vCPU", 512), ("2 vCPUs", 2048), ("192 vCPU", 196608),
])
def test_parse_cpu(text, units):
    assert rules.parse_cpu(text) == units


@pytest.mark.parametrize("text", ["", "abc", "64", "196609", "0.1 vCPU", "-1", "1 GB", "1.5"])
def test_parse_cpu_rejects(text):
    with pytest.raises(ClientException, match="Invalid 'cpu' setting for task."):
        rules.parse_cpu(text)


@pytest.mark.parametrize("text, mib", [
    ("512", 512), ("1GB", 1024), ("1 GB", 1024), ("1 gb", 1024), ("0.5GB", 512), ("2 GiB", 2048),
    ("300 MiB", 300), ("300MB", 300),
])
def test_parse_memory(text, mib):
    assert rules.parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "big", "5", "1 TB", "0.0001GB", "-512"])
def test_parse_memory_rejects(text):
    with pytest.raises(ClientException, match="Invalid 'memory' setting for task."):
        rules.parse_memory(text)


@given(st.integers(0, 20000), st.integers(0, 130000))
def test_fargate_table_matches_reference(cpu, memory):
    assert rules.fargate_size_ok(cpu, memory) == (memory in REFERENCE_TABLE.get(cpu, []))


def test_every_reference_size_is_accepted():
    for cpu, mems in REFERENCE_TABLE.items():
        for mem in mems:
            body = rules.build(req(c(memory=None), networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                                   cpu=str(cpu), memory=str(mem)))
            assert body["compatibilities"] == ["EC2", "FARGATE"]


# -- defaults and echo ---------------------------------------------------------------------

def test_defaults_added_and_nothing_else():
    body = rules.build(req(c(portMappings=[{"containerPort": 80}])))
    assert body["containerDefinitions"] == [{
        "name": "app", "image": "busybox", "memory": 64, "cpu": 0,
        "portMappings": [{"containerPort": 80, "protocol": "tcp"}], "essential": True,
        "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": []}]
    assert body["networkMode"] == "bridge"
    assert body["volumes"] == [] and body["placementConstraints"] == []
    assert body["requiresAttributes"] == []
    assert body["compatibilities"] == ["EXTERNAL", "EC2"]
    assert set(body) == {"containerDefinitions", "family", "networkMode", "volumes", "requiresAttributes",
                         "placementConstraints", "compatibilities"}


def test_request_is_not_mutated():
    r = req(c(portMappings=[{"containerPort": 80}], healthCheck={"command": ["CMD", "true"]}),
            networkMode="awsvpc", volumes=[{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}])
    before = repr(r)
    rules.build(r)
    assert repr(r) == before


@pytest.mark.parametrize("mode, host_port", [("awsvpc", 8080), ("host", 8080), ("bridge", None)])
def test_host_port_filled_in_awsvpc_and_host(mode, host_port):
    pm = rules.build(req(c(portMappings=[{"containerPort": 8080}]), networkMode=mode))[
        "containerDefinitions"][0]["portMappings"][0]
    assert pm.get("hostPort") == host_port


def test_awsvpc_host_port_zero_means_omitted():
    pm = rules.build(req(c(portMappings=[{"containerPort": 53, "hostPort": 0, "protocol": "udp"}]),
                         networkMode="awsvpc"))["containerDefinitions"][0]["portMappings"][0]
    assert pm == {"containerPort": 53, "hostPort": 53, "protocol": "udp"}


def test_same_port_two_protocols_is_allowed():
    pms = [{"containerPort": 53, "protocol": "udp"}, {"containerPort": 53, "protocol": "tcp"}]
    body = rules.build(req(c(portMappings=pms), networkMode="awsvpc"))
    assert len(body["containerDefinitions"][0]["portMappings"]) == 2


def test_bridge_dynamic_ports_do_not_collide():
    pms = [{"containerPort": 80, "hostPort": 0}]
    rules.build(req(c("a", portMappings=pms), c("b", portMappings=pms)))


def test_container_port_range():
    body = rules.build(req(c(portMappings=[{"containerPortRange": "8000-8010"}]), networkMode="awsvpc"))
    assert body["containerDefinitions"][0]["portMappings"] == [{"containerPortRange": "8000-8010",
                                                                 "protocol": "tcp"}]
    assert "ecs.capability.network.container-port-range" in [a["name"] for a in body["requiresAttributes"]]
    fails(ClientException, "containerPortRange", req(c(portMappings=[{"containerPortRange": "9-8"}])))
    fails(ClientException, "only supported when networkMode is bridge or awsvpc",
          req(c(portMappings=[{"containerPortRange": "1-2"}]), networkMode="host"))


def test_health_check_defaults_keep_given_values():
    hc = rules.build(req(c(healthCheck={"command": ["CMD", "true"], "retries": 10, "startPeriod": 0})))[
        "containerDefinitions"][0]["healthCheck"]
    assert hc == {"command": ["CMD", "true"], "retries": 10, "startPeriod": 0, "interval": 30, "timeout": 5}


@pytest.mark.parametrize("field, bad", [("interval", 4), ("interval", 301), ("timeout", 1), ("timeout", 61),
                                        ("retries", 0), ("retries", 11), ("startPeriod", -1),
                                        ("startPeriod", 301)])
def test_health_check_ranges(field, bad):
    fails(ClientException, f"'{field}' must be between",
          req(c(healthCheck={"command": ["CMD", "true"], field: bad})))


def test_task_cpu_memory_normalised_strings():
    body = rules.build(req(c(memory=None), cpu="1 vCPU", memory="2GB"))
    assert (body["cpu"], body["memory"]) == ("1024", "2048")


def test_requires_compatibilities_echoed_only_when_given():
    assert "requiresCompatibilities" not in rules.build(req())
    assert rules.build(req(requiresCompatibilities=["EC2"]))["requiresCompatibilities"] == ["EC2"]


def test_volume_defaults_do_not_touch_input():
    vols = [{"name": "d", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}},
            {"name": "e", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "rootDirectory": "/data"}}]
    body = rules.build(req(volumes=vols))
    assert body["volumes"] == vols
    fails(ClientException, "autoprovision", req(volumes=[{"name": "d", "dockerVolumeConfiguration": {
        "autoprovision": True}}]))
    fails(ClientException, "rootDirectory", req(volumes=[{"name": "e", "efsVolumeConfiguration": {
        "fileSystemId": "fs-1", "rootDirectory": "/x", "authorizationConfig": {"accessPointId": "fsap-1"}}}]))
    fails(ClientException, "transit", req(volumes=[{"name": "e", "efsVolumeConfiguration": {
        "fileSystemId": "fs-1", "authorizationConfig": {"iam": "ENABLED"}}}]))
    fails(ClientException, "Only one volume configuration type", req(volumes=[{
        "name": "x", "host": {}, "dockerVolumeConfiguration": {}}]))


# -- compatibilities -----------------------------------------------------------------------

FARGATE = {"networkMode": "awsvpc", "cpu": "256", "memory": "512"}


@pytest.mark.parametrize("kw, expected", [
    ({}, ["EXTERNAL", "EC2"]),
    ({"networkMode": "host"}, ["EXTERNAL", "EC2"]),
    ({"networkMode": "awsvpc"}, ["EC2"]),
    (FARGATE, ["EC2", "FARGATE"]),
    ({**FARGATE, "memory": "4096"}, ["EC2"]),
    ({**FARGATE, "placementConstraints": [{"type": "memberOf", "expression": "attribute:a == b"}]}, ["EC2"]),
    ({**FARGATE, "volumes": [{"name": "v", "host": {"sourcePath": "/x"}}]}, ["EC2"]),
    ({**FARGATE, "volumes": [{"name": "v", "host": {}}]}, ["EC2", "FARGATE"]),
    ({"volumes": [{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]}, ["EC2"]),
    ({**FARGATE, "requiresCompatibilities": ["FARGATE", "MANAGED_INSTANCES"]},
     ["EC2", "FARGATE", "MANAGED_INSTANCES"]),
])
def test_compatibilities(kw, expected):
    assert rules.build(req(c(), **kw))["compatibilities"] == expected


def test_fargate_log_drivers_and_roles():
    base = {**FARGATE, "requiresCompatibilities": ["FARGATE"]}
    fails(ClientException, "Log driver json-file is not supported on Fargate",
          req(c(logConfiguration={"logDriver": "json-file"}), **base))
    fails(ClientException, "to support ECR images",
          req(c(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1"), **base))
    rules.build(req(c(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1"),
                    executionRoleArn="arn:aws:iam::123456789012:role/x", **base))
    fails(ClientException, "privileged", req(c(privileged=True), **base))
    fails(ClientException, "ipcMode", req(c(), ipcMode="host", **base))


def test_ec2_memory_rule_only_when_ec2_is_possible():
    msg = "At least one of 'memory' or 'memoryReservation' must be specified."
    fails(ClientException, msg, req(c(memory=None)))
    fails(ClientException, msg, req(c(memory=None), requiresCompatibilities=["EXTERNAL"]))
    # With only FARGATE required the task memory covers it (and Fargate requires it anyway).
    rules.build(req(c(memory=None), requiresCompatibilities=["FARGATE"], **FARGATE))


# -- requiresAttributes --------------------------------------------------------------------

def attrs(r):
    return [a["name"] for a in rules.build(r)["requiresAttributes"]]


def test_attributes_are_unique_and_ordered():
    names = attrs(req(c("a", logConfiguration={"logDriver": "awslogs"}),
                      c("b", logConfiguration={"logDriver": "awslogs"}),
                      executionRoleArn="arn:aws:iam::1:role/x", networkMode="awsvpc"))
    assert names == ["com.amazonaws.ecs.capability.logging-driver.awslogs",
                     "com.amazonaws.ecs.capability.docker-remote-api.1.19",
                     "ecs.capability.execution-role-awslogs",
                     "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                     "ecs.capability.task-eni"]


@pytest.mark.parametrize("container, kw, expected", [
    ({"environmentFiles": [{"value": "arn:aws:s3:::b/k.env", "type": "s3"}]}, {}, "ecs.capability.env-files.s3"),
    ({"firelensConfiguration": {"type": "fluentbit"}}, {}, "ecs.capability.firelens.fluentbit"),
    ({"repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:x"}}, {},
     "ecs.capability.private-registry-authentication.secretsmanager"),
    ({"restartPolicy": {"enabled": True}}, {}, "ecs.capability.container-restart-policy"),
    ({"stopTimeout": 5}, {}, "ecs.capability.container-ordering"),
    ({}, {"taskRoleArn": "arn:aws:iam::1:role/t"}, "com.amazonaws.ecs.capability.task-iam-role"),
    ({}, {"proxyConfiguration": {"containerName": "app", "type": "APPMESH"}}, "ecs.capability.aws-appmesh"),
    ({}, {"volumes": [{"name": "v", "efsVolumeConfiguration": {
        "fileSystemId": "fs-1", "transitEncryption": "ENABLED", "authorizationConfig": {"iam": "ENABLED"}}}]},
     "ecs.capability.efsAuth"),
])
def test_feature_attributes(container, kw, expected):
    assert expected in attrs(req(c(**container), **kw))


def test_local_docker_volume_driver_needs_no_plugin():
    names = attrs(req(volumes=[{"name": "v", "dockerVolumeConfiguration": {"driver": "local"}}]))
    assert names == ["com.amazonaws.ecs.capability.docker-remote-api.1.25"]


# -- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("r, kind, text", [
    (req(family=""), ClientException, "Family contains invalid characters"),
    ({"family": "f", "containerDefinitions": []}, ClientException, "Container list cannot be empty."),
    (req(c(name="")), ClientException, "Container.name should not be null or empty."),
    (req(c(image=None)), ClientException, "Container.image should not be null or empty."),
    (req(c(memory=5)), ClientException, "minimum 'memory' is 6 MiB"),
    (req(c(memory=64, memoryReservation=64)), ClientException, "'memory' must be greater"),
    (req(c(cpu=-1)), ClientException, "'cpu' must not be negative"),
    (req(c(), c("b", essential=False, dependsOn=[{"containerName": "app", "condition": "SUCCESS"}])),
     ClientException, "The SUCCESS condition cannot be used on essential container 'app'"),
    (req(c(dependsOn=[{"containerName": "app", "condition": "START"}])), ClientException, "does not exist"),
    (req(c(dependsOn=[{"containerName": "app", "condition": "SOON"}])), InvalidParameterException,
     "dependsOn condition"),
    (req(c(portMappings=[{"containerPort": 0}])), ClientException, "containerPort must be between 1 and 65535"),
    (req(c(portMappings=[{"containerPort": 80, "hostPort": 70000}])), ClientException, "hostPort must be"),
    (req(c(portMappings=[{"containerPort": 80, "name": "p"}]), c("b", portMappings=[{"containerPort": 81,
                                                                                     "name": "p"}])),
     ClientException, "Port mapping names must be unique"),
    (req(c(mountPoints=[{"sourceVolume": "v"}]), volumes=[{"name": "v"}]), ClientException, "containerPath"),
    (req(volumes=[{"name": "bad name"}]), ClientException, "Invalid volume name"),
    (req(placementConstraints=[{"type": "memberOf"}]), ClientException, "needs an expression"),
    (req(proxyConfiguration={"containerName": "ghost"}), ClientException, "'ghost' does not exist"),
    (req(ephemeralStorage={"sizeInGiB": 20}), ClientException, "between 21 and 200"),
    (req(runtimePlatform={"operatingSystemFamily": "BEOS"}), InvalidParameterException, "operatingSystemFamily"),
    (req(pidMode="vm"), InvalidParameterException, "pidMode"),
    (req(c(resourceRequirements=[{"type": "TPU", "value": "1"}])), InvalidParameterException, "resourceRequirements"),
    (req(c(image="nginx:" + "x" * 70000)), ClientException, "64 KiB"),
])
def test_errors(r, kind, text):
    fails(kind, text, r)


def test_benchmark_shaped_definition():
    """The shape bench/ registers: web + FireLens router, bridge, awslogs, health check, host volume."""
    web = c("web", image="public.ecr.aws/nginx/nginx:1.27", cpu=256, memory=512, memoryReservation=256,
            portMappings=[{"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
                          {"containerPort": 443, "hostPort": 0, "protocol": "tcp"}],
            environment=[{"name": "APP_ENV", "value": "production"}], command=["nginx", "-g", "daemon off;"],
            healthCheck={"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "interval": 30,
                         "timeout": 5, "retries": 3, "startPeriod": 10},
            logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web"}},
            dependsOn=[{"containerName": "log_router", "condition": "START"}],
            mountPoints=[{"sourceVolume": "cache", "containerPath": "/var/cache/nginx", "readOnly": False}],
            ulimits=[{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}])
    router = c("log_router", image="public.ecr.aws/aws-observability/aws-for-fluent-bit:stable", cpu=64,
               memory=128, firelensConfiguration={"type": "fluentbit"},
               logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/firelens"}})
    body = rules.build(req(web, router, taskRoleArn="arn:aws:iam::123456789012:role/web-task",
                           executionRoleArn="arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
                           networkMode="bridge", requiresCompatibilities=["EC2"],
                           volumes=[{"name": "cache", "host": {"sourcePath": "/var/cache/web"}}]))
    assert body["compatibilities"] == ["EXTERNAL", "EC2"]
    assert body["containerDefinitions"][0]["portMappings"] == web["portMappings"]
    tiny = rules.build(req(c("job", cpu=1, memory=8, command=["true"]), requiresCompatibilities=["EC2"]))
    assert tiny["requiresAttributes"] == []
