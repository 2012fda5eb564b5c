"""ECS task → Docker ContainerCreate translation (agent/docker_config.py) and runtime_support.unsupported."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from dockyard.agent.docker_config import (
    PlanError,
    cpu_shares,
    engine_name,
    parse_task_cpu,
    parse_task_memory,
    plan_task,
    stop_timeout,
    task_id,
)
from dockyard.agent.protocol import (
    LABEL_CLUSTER,
    LABEL_CONTAINER_NAME,
    LABEL_FAMILY,
    LABEL_INSTANCE,
    LABEL_REVISION,
    LABEL_TASK_ARN,
    TaskPayload,
)
from dockyard.services.ecs.runtime_support import unsupported

MIB = 1024 * 1024
NS = 1_000_000_000
TASK_ID = "0123456789abcdef0123456789abcdef"
TASK_ARN = f"arn:aws:ecs:us-east-1:123456789012:task/prod/{TASK_ID}"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
INSTANCE_ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/abc"
HOST_DIR = Path("/var/lib/dockyard/volumes")


def payload(containers: list[dict[str, Any]], overrides: dict[str, Any] | None = None,
            task_arn: str = TASK_ARN, **td: Any) -> TaskPayload:
    return {
        "taskArn": task_arn, "clusterArn": CLUSTER_ARN, "desiredStatus": "RUNNING",
        "family": "web", "revision": 7,
        "taskDefinition": {"family": "web", "containerDefinitions": containers, **td},
        "overrides": overrides or {},
        "containers": [{"name": c["name"], "containerArn": f"arn:c/{c['name']}"} for c in containers],
    }


def container(name: str = "app", **kw: Any) -> dict[str, Any]:
    return {"name": name, "image": "127.0.0.1:5999/dockyard-test/busybox:abc", "memory": 64, **kw}


def plan(containers: list[dict[str, Any]], overrides: dict[str, Any] | None = None, bind_ip: str = "0.0.0.0",
         **td: Any):
    return plan_task(payload(containers, overrides, **td), INSTANCE_ARN, HOST_DIR, bind_ip=bind_ip)


def body(containers: list[dict[str, Any]] | dict[str, Any], name: str = "app", **kw: Any) -> dict[str, Any]:
    if isinstance(containers, dict):
        containers = [containers]
    return plan(containers, **kw).containers[name].config


# -- names -------------------------------------------------------------------------

def test_engine_name_is_deterministic_per_task():
    p = payload([container()])
    assert engine_name(p, "app") == f"ecs-web-7-app-{TASK_ID[:20]}"
    assert engine_name(p, "app") == engine_name(copy.deepcopy(p), "app")
    other = payload([container()], task_arn=TASK_ARN.replace("0123", "ffff"))
    assert engine_name(other, "app") != engine_name(p, "app")
    assert plan([container()]).containers["app"].name == engine_name(p, "app")


def test_engine_name_sanitised():
    p = payload([container()])
    p["family"] = "we b/x"
    assert engine_name(p, "a:b") == f"ecs-we-b-x-7-a-b-{TASK_ID[:20]}"


def test_task_id():
    assert task_id(TASK_ARN) == TASK_ID
    assert task_id("arn:aws:ecs:us-east-1:1:task/abc") == "abc"


# -- basic fields ------------------------------------------------------------------

def test_basic_fields():
    b = body(container(command=["sh", "-c", "echo hi"], entryPoint=["/bin/env"], workingDirectory="/tmp",
                       user="nobody", hostname="h1", environment=[{"name": "A", "value": "1"},
                                                                  {"name": "B", "value": ""}],
                       dockerLabels={"team": "x", LABEL_TASK_ARN: "forged"}))
    assert b["Image"] == "127.0.0.1:5999/dockyard-test/busybox:abc"
    assert b["Cmd"] == ["sh", "-c", "echo hi"]
    assert b["Entrypoint"] == ["/bin/env"]
    assert b["WorkingDir"] == "/tmp"
    assert b["User"] == "nobody"
    assert b["Hostname"] == "h1"
    assert b["Env"] == ["A=1", "B="]
    assert b["Labels"] == {
        "team": "x", LABEL_CLUSTER: CLUSTER_ARN, LABEL_TASK_ARN: TASK_ARN, LABEL_FAMILY: "web",
        LABEL_REVISION: "7", LABEL_INSTANCE: INSTANCE_ARN, LABEL_CONTAINER_NAME: "app"}
    assert b["Healthcheck"] == {"Test": ["NONE"]}  # the image's HEALTHCHECK is not ECS's
    assert b["HostConfig"]["NetworkMode"] == "bridge"


def test_minimal_definition_sets_nothing_else():
    b = body({"name": "app", "image": "img"})
    assert "Cmd" not in b and "Entrypoint" not in b and "User" not in b
    hc = b["HostConfig"]
    assert hc == {"NetworkMode": "bridge", "CpuShares": 2}


def test_interactive_tty_networking():
    b = body(container(interactive=True, pseudoTerminal=True, disableNetworking=True))
    assert b["OpenStdin"] is True and b["Tty"] is True and b["NetworkDisabled"] is True


# -- resources ---------------------------------------------------------------------

@pytest.mark.parametrize(("cpu", "shares"), [(None, 2), (0, 2), (1, 2), (2, 2), (512, 512), (300000, 262144)])
def test_cpu_shares_rule(cpu, shares):
    assert cpu_shares(cpu) == shares
    c = container()
    if cpu is not None:
        c["cpu"] = cpu
    assert body(c)["HostConfig"]["CpuShares"] == shares


def test_memory_and_reservation():
    hc = body(container(memory=128, memoryReservation=64))["HostConfig"]
    assert hc["Memory"] == 128 * MIB
    assert hc["MemoryReservation"] == 64 * MIB
    hc = body({"name": "app", "image": "i", "memoryReservation": 32})["HostConfig"]
    assert "Memory" not in hc and hc["MemoryReservation"] == 32 * MIB


def test_task_level_limits_single_container():
    hc = body({"name": "app", "image": "i", "cpu": 0}, cpu="512", memory="1GB")["HostConfig"]
    assert hc["CpuShares"] == 512
    assert hc["NanoCpus"] == NS // 2
    assert hc["Memory"] == 1024 * MIB
    # A container limit below the task's stays.
    hc = body(container(memory=100), cpu="1 vCPU", memory="512")["HostConfig"]
    assert hc["Memory"] == 100 * MIB and hc["NanoCpus"] == NS


def test_task_level_limits_several_containers():
    p = plan([container("a", cpu=256, memory=None), container("b", cpu=768, memory=200)], cpu="2048", memory="1024")
    a, b = p.containers["a"].config["HostConfig"], p.containers["b"].config["HostConfig"]
    # The task's units shared in the ratio of the containers' own shares (sum == task cpu).
    assert (a["CpuShares"], b["CpuShares"]) == (512, 1536)
    assert a["NanoCpus"] == b["NanoCpus"] == 2 * NS
    assert a["Memory"] == 1024 * MIB and b["Memory"] == 200 * MIB


def test_swap_and_ulimits():
    hc = body(container(memory=64, linuxParameters={"maxSwap": 32, "swappiness": 10},
                        ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]))["HostConfig"]
    assert hc["MemorySwap"] == 96 * MIB
    assert hc["MemorySwappiness"] == 10
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]
    hc = body(container(memory=64, linuxParameters={"maxSwap": 0}))["HostConfig"]
    assert hc["MemorySwap"] == 64 * MIB  # no swap


def test_parse_task_sizes():
    assert parse_task_cpu("0.25 vCPU") == 256 and parse_task_cpu("1024") == 1024 and parse_task_cpu(None) is None
    assert parse_task_memory("2GB") == 2048 and parse_task_memory("512 MiB") == 512
    assert parse_task_memory("300") == 300 and parse_task_memory("") is None


# -- security and kernel -------------------------------------------------------------

def test_linux_parameters_and_security():
    hc = body(container(
        readonlyRootFilesystem=True, privileged=True,
        dockerSecurityOptions=["no-new-privileges"],
        systemControls=[{"namespace": "net.core.somaxconn", "value": "1024"}],
        linuxParameters={
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD", "CHOWN"]},
            "initProcessEnabled": True, "sharedMemorySize": 128,
            "tmpfs": [{"containerPath": "/scratch", "size": 64, "mountOptions": ["noexec", "nosuid"]},
                      {"containerPath": "/t2", "size": 8}],
            "devices": [{"hostPath": "/dev/fuse", "permissions": ["read", "write"]},
                        {"hostPath": "/dev/null", "containerPath": "/dev/n2"}],
        }))["HostConfig"]
    assert hc["ReadonlyRootfs"] is True and hc["Privileged"] is True
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["MKNOD", "CHOWN"]
    assert hc["Init"] is True
    assert hc["ShmSize"] == 128 * MIB
    assert hc["Tmpfs"] == {"/scratch": "size=64m,noexec,nosuid", "/t2": "size=8m"}
    assert hc["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"},
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/n2", "CgroupPermissions": "rwm"}]
    assert hc["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert hc["SecurityOpt"] == ["no-new-privileges"]


# -- network -----------------------------------------------------------------------

def test_port_mappings_bridge():
    b = body(container(portMappings=[
        {"containerPort": 80},                                   # dynamic (absent)
        {"containerPort": 81, "hostPort": 0, "protocol": "tcp"},  # dynamic (0)
        {"containerPort": 53, "hostPort": 5353, "protocol": "udp"},  # static
    ]), bind_ip="127.0.0.1")
    assert b["ExposedPorts"] == {"80/tcp": {}, "81/tcp": {}, "53/udp": {}}
    assert b["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}


def test_port_bind_ip_defaults_to_all():
    b = body(container(portMappings=[{"containerPort": 80, "hostPort": 8080}]))
    assert b["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}


def test_container_port_range():
    b = body(container(portMappings=[{"containerPortRange": "7000-7002", "protocol": "udp"}]))
    assert b["HostConfig"]["PortBindings"] == {f"{p}/udp": [{"HostIp": "0.0.0.0", "HostPort": ""}]
                                               for p in (7000, 7001, 7002)}


@pytest.mark.parametrize("mode", ["host", "none"])
def test_network_modes_without_bindings(mode):
    pms = [{"containerPort": 80, "hostPort": 80}] if mode == "host" else []
    b = body(container(portMappings=pms), networkMode=mode)
    assert b["HostConfig"]["NetworkMode"] == mode
    assert "PortBindings" not in b["HostConfig"]


def test_dns_hosts_links():
    p = plan([container("web", links=["db:database", "cache"],
                        extraHosts=[{"hostname": "api.local", "ipAddress": "10.0.0.5"}],
                        dnsServers=["10.0.0.2"], dnsSearchDomains=["corp.local"]),
              container("db"), container("cache")])
    hc = p.containers["web"].config["HostConfig"]
    pl = payload([container()])
    assert hc["Links"] == [f"{engine_name(pl, 'db')}:database", f"{engine_name(pl, 'cache')}:cache"]
    assert hc["ExtraHosts"] == ["api.local:10.0.0.5"]
    assert hc["Dns"] == ["10.0.0.2"] and hc["DnsSearch"] == ["corp.local"]
    assert p.requires_running == {"web": ["db", "cache"]}


# -- storage -----------------------------------------------------------------------

def test_volumes_and_mounts():
    volumes = [
        {"name": "hostvol", "host": {"sourcePath": "/srv/data"}},
        {"name": "scratch", "host": {}},
        {"name": "bare"},
        {"name": "taskvol", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                                                          "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
                                                          "labels": {"k": "v"}}},
        {"name": "sharedvol", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}},
        {"name": "existing", "dockerVolumeConfiguration": {"scope": "shared"}},
    ]
    c = container(mountPoints=[
        {"sourceVolume": "hostvol", "containerPath": "/data", "readOnly": True},
        {"sourceVolume": "scratch", "containerPath": "/scratch"},
        {"sourceVolume": "bare", "containerPath": "/bare"},
        {"sourceVolume": "taskvol", "containerPath": "/tv"},
        {"sourceVolume": "sharedvol", "containerPath": "/sv", "readOnly": False},
        {"sourceVolume": "existing", "containerPath": "/ex"},
    ])
    p = plan([c], volumes=volumes)
    taskvol = engine_name(payload([c]), "taskvol")
    assert p.containers["app"].config["HostConfig"]["Binds"] == [
        "/srv/data:/data:ro",
        f"{HOST_DIR}/{TASK_ID}/scratch:/scratch",
        f"{HOST_DIR}/{TASK_ID}/bare:/bare",
        f"{taskvol}:/tv", "sharedvol:/sv", "existing:/ex"]
    assert p.host_dirs == [HOST_DIR / TASK_ID / "scratch", HOST_DIR / TASK_ID / "bare"]
    by_name = {v.source: v for v in p.volumes}
    tv = by_name["taskvol"]
    assert (tv.name, tv.scope, tv.driver, tv.driver_opts, tv.autoprovision) == (
        taskvol, "task", "local", {"type": "tmpfs", "device": "tmpfs"}, False)
    assert tv.labels["k"] == "v" and tv.labels[LABEL_TASK_ARN] == TASK_ARN and tv.labels[LABEL_INSTANCE]
    sv = by_name["sharedvol"]
    assert (sv.name, sv.scope, sv.autoprovision, sv.driver, sv.labels) == ("sharedvol", "shared", True, "local", {})
    assert by_name["existing"].autoprovision is False


def test_volumes_from():
    p = plan([container("data"), container("app", volumesFrom=[{"sourceContainer": "data", "readOnly": True}]),
              container("b", volumesFrom=[{"sourceContainer": "data"}])])
    data = engine_name(payload([container()]), "data")
    assert p.containers["app"].config["HostConfig"]["VolumesFrom"] == [f"{data}:ro"]
    assert p.containers["b"].config["HostConfig"]["VolumesFrom"] == [data]
    assert p.requires_created == {"app": ["data"], "b": ["data"]}


def test_unknown_references_are_plan_errors():
    with pytest.raises(PlanError, match="unknown volume 'nope'"):
        plan([container(mountPoints=[{"sourceVolume": "nope", "containerPath": "/x"}])])
    with pytest.raises(PlanError, match="unknown container 'ghost'"):
        plan([container(volumesFrom=[{"sourceContainer": "ghost"}])])


# -- health, logs, namespaces --------------------------------------------------------

def test_health_check():
    hc = body(container(healthCheck={"command": ["CMD-SHELL", "wget -q localhost || exit 1"], "interval": 5,
                                     "timeout": 2, "retries": 4, "startPeriod": 10}))["Healthcheck"]
    assert hc == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 5 * NS, "Timeout": 2 * NS,
                  "Retries": 4, "StartPeriod": 10 * NS}
    hc = body(container(healthCheck={"command": ["CMD", "/bin/true"]}))["Healthcheck"]
    assert hc == {"Test": ["CMD", "/bin/true"], "Interval": 30 * NS, "Timeout": 5 * NS, "Retries": 3}


@pytest.mark.parametrize("driver", ["json-file", "local", "none", "syslog", "journald"])
def test_log_configuration(driver):
    opts = {"max-size": "10m"} if driver in ("json-file", "local") else {}
    lc = body(container(logConfiguration={"logDriver": driver, "options": opts}))["HostConfig"]["LogConfig"]
    assert lc == {"Type": driver, "Config": opts}


def test_pid_ipc_host():
    hc = body(container(), pidMode="host", ipcMode="host")["HostConfig"]
    assert hc["PidMode"] == "host" and hc["IpcMode"] == "host"
    assert body(container(), ipcMode="none")["HostConfig"]["IpcMode"] == "none"


def test_pid_ipc_task():
    # Single container: its own namespace, nothing to set.
    hc = body(container(), pidMode="task", ipcMode="task")["HostConfig"]
    assert "PidMode" not in hc and "IpcMode" not in hc
    # Several: the first container that depends on nothing owns the namespaces.
    p = plan([container("a", dependsOn=[{"containerName": "b", "condition": "START"}]), container("b"),
              container("c")], pidMode="task", ipcMode="task")
    owner = p.containers["b"].name
    hb = p.containers["b"].config["HostConfig"]
    assert "PidMode" not in hb and hb["IpcMode"] == "shareable"
    for n in ("a", "c"):
        h = p.containers[n].config["HostConfig"]
        assert h["PidMode"] == h["IpcMode"] == f"container:{owner}"
    assert p.requires_running == {"a": ["b"], "c": ["b"]}


# -- overrides ---------------------------------------------------------------------

def test_container_overrides():
    c = container(command=["a"], cpu=128, memory=256, memoryReservation=128,
                  environment=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    ov = {"containerOverrides": [{"name": "app", "command": ["b", "c"], "cpu": 512, "memory": 512,
                                  "memoryReservation": 200,
                                  "environment": [{"name": "B", "value": "over"}, {"name": "C", "value": "3"}]},
                                 {"name": "other", "command": ["x"]}]}
    b = body(c, overrides=ov)
    assert b["Cmd"] == ["b", "c"]
    assert b["Env"] == ["A=1", "B=over", "C=3"]
    hc = b["HostConfig"]
    assert (hc["CpuShares"], hc["Memory"], hc["MemoryReservation"]) == (512, 512 * MIB, 200 * MIB)


def test_task_overrides_cpu_memory():
    hc = body(container(memory=None), overrides={"cpu": "1024", "memory": "256"}, cpu="512", memory="512")["HostConfig"]
    assert hc["NanoCpus"] == NS and hc["Memory"] == 256 * MIB


def test_stop_timeout():
    assert stop_timeout({"stopTimeout": 5}, 30) == 5.0
    assert stop_timeout({"stopTimeout": 0}, 30) == 0.0
    assert stop_timeout({}, 30) == 30.0


# -- unsupported -------------------------------------------------------------------

PLAIN = {
    "family": "web", "networkMode": "bridge", "cpu": "256", "memory": "512",
    "executionRoleArn": "arn:aws:iam::1:role/exec", "requiresCompatibilities": ["EC2"],
    "placementConstraints": [], "pidMode": "task", "ipcMode": "host",
    "volumes": [{"name": "v", "host": {"sourcePath": "/tmp"}},
                {"name": "d", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}}],
    "containerDefinitions": [container(
        essential=True, dependsOn=[], startTimeout=10, stopTimeout=5, versionConsistency="enabled",
        healthCheck={"command": ["CMD", "true"]}, portMappings=[{"containerPort": 80, "name": "web",
                                                                 "appProtocol": "http"}],
        logConfiguration={"logDriver": "json-file", "options": {}},
        linuxParameters={"initProcessEnabled": True}, interactive=True, pseudoTerminal=True,
        restartPolicy={"enabled": False})],
}


def test_unsupported_empty_for_plain_definition():
    assert unsupported(PLAIN) == []
    assert unsupported(PLAIN, {"containerOverrides": [{"name": "app", "command": ["x"]}], "cpu": "512"}) == []


@pytest.mark.parametrize(("change", "needle"), [
    ({"networkMode": "awsvpc"}, "networkMode awsvpc"),
    ({"proxyConfiguration": {"type": "APPMESH", "containerName": "envoy"}}, "proxyConfiguration"),
    ({"inferenceAccelerators": [{"deviceName": "d", "deviceType": "eia2.medium"}]}, "inferenceAccelerators"),
    ({"taskRoleArn": "arn:aws:iam::1:role/app"}, "taskRoleArn"),
    ({"enableFaultInjection": True}, "enableFaultInjection"),
    ({"trustedExecutionConfiguration": {"isolationMode": "ISOLATED_SANDBOX"}}, "trustedExecutionConfiguration"),
    ({"runtimePlatform": {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}}, "operatingSystemFamily"),
    ({"volumes": [{"name": "e", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]}, "efsVolumeConfiguration"),
    ({"volumes": [{"name": "f", "fsxWindowsFileServerVolumeConfiguration": {"fileSystemId": "fs-1"}}]},
     "fsxWindowsFileServerVolumeConfiguration"),
    ({"volumes": [{"name": "s", "s3filesVolumeConfiguration": {"fileSystemArn": "arn"}}]},
     "s3filesVolumeConfiguration"),
    ({"volumes": [{"name": "b", "configuredAtLaunch": True}]}, "configuredAtLaunch"),
])
def test_unsupported_task_features(change, needle):
    td = {**PLAIN, **change}
    out = unsupported(td)
    assert len(out) == 1 and needle in out[0], out
    with pytest.raises(PlanError, match=needle):
        plan_task(payload(td["containerDefinitions"], **{k: v for k, v in td.items()
                                                         if k not in ("family", "containerDefinitions")}),
                  INSTANCE_ARN, HOST_DIR)


@pytest.mark.parametrize(("change", "needle"), [
    ({"secrets": [{"name": "P", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/p"}]}, "secrets"),
    ({"repositoryCredentials": {"credentialsParameter": "arn:x"}}, "repositoryCredentials"),
    ({"environmentFiles": [{"value": "arn:aws:s3:::b/f.env", "type": "s3"}]}, "environmentFiles"),
    ({"firelensConfiguration": {"type": "fluentbit"}}, "firelensConfiguration"),
    ({"credentialSpecs": ["credentialspecdomainless:arn"]}, "credentialSpecs"),
    ({"dockerSecurityOptions": ["credentialspec:file://x.json"]}, "credentialspec"),
    ({"resourceRequirements": [{"type": "GPU", "value": "1"}]}, "resourceRequirements GPU"),
    ({"restartPolicy": {"enabled": True}}, "restartPolicy"),
    ({"logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}, "logDriver awslogs"),
    ({"logConfiguration": {"logDriver": "awsfirelens"}}, "logDriver awsfirelens"),
    ({"logConfiguration": {"logDriver": "json-file", "secretOptions": [{"name": "a", "valueFrom": "b"}]}},
     "secretOptions"),
])
def test_unsupported_container_features(change, needle):
    td = {**PLAIN, "containerDefinitions": [{**PLAIN["containerDefinitions"][0], **change}]}
    out = unsupported(td)
    assert len(out) == 1 and needle in out[0] and "container 'app'" in out[0], out


@pytest.mark.parametrize(("ov", "needle"), [
    ({"taskRoleArn": "arn:aws:iam::1:role/x"}, "taskRoleArn"),
    ({"inferenceAcceleratorOverrides": [{"deviceName": "d"}]}, "inferenceAcceleratorOverrides"),
    ({"containerOverrides": [{"name": "app", "environmentFiles": [{"value": "arn", "type": "s3"}]}]},
     "environmentFiles"),
    ({"containerOverrides": [{"name": "app", "resourceRequirements": [{"type": "GPU", "value": "1"}]}]},
     "resourceRequirements GPU"),
])
def test_unsupported_overrides(ov, needle):
    out = unsupported(PLAIN, ov)
    assert len(out) == 1 and needle in out[0], out
    with pytest.raises(PlanError, match=needle):
        plan([container()], overrides=ov)


def test_plain_definition_plans():
    p = plan_task(payload(PLAIN["containerDefinitions"], **{k: v for k, v in PLAIN.items()
                                                            if k not in ("family", "containerDefinitions")}),
                  INSTANCE_ARN, HOST_DIR)
    assert list(p.containers) == ["app"]
    assert [v.name for v in p.volumes] == ["d"]
