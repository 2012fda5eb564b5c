"""The ECS calls of the mix, and the fixtures both servers need before they are measured."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from lib.capture import PLACEHOLDER

CLUSTER = "bench"
WEB = "web"         # the large task definition (Register / Describe)
RUNNER = "runner"   # a tiny one for RunTask (8 MiB, 1 CPU unit), so capacity lasts the whole run
# ListTasks lists this family: its task count is fixed by the setup (100) or the big-store preload,
# whatever RunTask adds to 'runner' during the run. moto's ListTasks ignores maxResults and returns
# every match, so an unfiltered list would grow with each RunTask and slow moto down unfairly.
LISTER = "lister"
SERVICE_FMT = "svc-{:04d}"
SETUP_SERVICES = 10
SETUP_TASKS = 100   # a full default ListTasks page, as in the big store

WEB_TASK_DEFINITION: dict[str, Any] = {
    "family": WEB,
    "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "networkMode": "bridge",
    "requiresCompatibilities": ["EC2"],
    "containerDefinitions": [
        {
            "name": "web",
            "image": "public.ecr.aws/nginx/nginx:1.27",
            "cpu": 256,
            "memory": 512,
            "memoryReservation": 256,
            "essential": True,
            "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
                             {"containerPort": 443, "hostPort": 0, "protocol": "tcp"}],
            "environment": [{"name": "APP_ENV", "value": "production"},
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "FEATURE_FLAGS", "value": "a,b,c"}],
            "command": ["nginx", "-g", "daemon off;"],
            "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                            "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 10},
            "logConfiguration": {"logDriver": "awslogs",
                                 "options": {"awslogs-group": "/ecs/web", "awslogs-region": "us-east-1",
                                             "awslogs-stream-prefix": "web"}},
            "dependsOn": [{"containerName": "log_router", "condition": "START"}],
            "mountPoints": [{"sourceVolume": "cache", "containerPath": "/var/cache/nginx",
                             "readOnly": False}],
            "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        },
        {
            "name": "log_router",
            "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
            "cpu": 64,
            "memory": 128,
            "essential": True,
            "firelensConfiguration": {"type": "fluentbit",
                                      "options": {"enable-ecs-log-metadata": "true"}},
            "logConfiguration": {"logDriver": "awslogs",
                                 "options": {"awslogs-group": "/ecs/firelens", "awslogs-region": "us-east-1",
                                             "awslogs-stream-prefix": "firelens"}},
        },
    ],
    "volumes": [{"name": "cache", "host": {"sourcePath": "/var/cache/web"}}],
    "tags": [{"key": "team", "value": "platform"}, {"key": "env", "value": "bench"}],
}

RUNNER_TASK_DEFINITION: dict[str, Any] = {
    "family": RUNNER,
    "requiresCompatibilities": ["EC2"],
    "containerDefinitions": [{"name": "job", "image": "public.ecr.aws/docker/library/busybox:1.36",
                              "cpu": 1, "memory": 8, "essential": True, "command": ["true"]}],
}
LISTER_TASK_DEFINITION: dict[str, Any] = {**RUNNER_TASK_DEFINITION, "family": LISTER}


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    params: dict[str, Any]
    write: bool
    unique: bool = False  # the body must differ per request (PLACEHOLDER in it)
    check: bool = False   # a 2xx may still not have done the work (RunTask failures, Describe failures)


OPS: dict[str, Op] = {o.name: o for o in [
    Op("RegisterTaskDefinition", "register_task_definition", WEB_TASK_DEFINITION, write=True),
    Op("DescribeTaskDefinition", "describe_task_definition",
       {"taskDefinition": f"{WEB}:1", "include": ["TAGS"]}, write=False),
    Op("CreateService", "create_service",
       {"cluster": CLUSTER, "serviceName": PLACEHOLDER, "taskDefinition": f"{WEB}:1", "desiredCount": 0,
        "launchType": "EC2"}, write=True, unique=True),
    Op("DescribeServices", "describe_services",
       {"cluster": CLUSTER, "services": [SERVICE_FMT.format(0)]}, write=False, check=True),
    Op("ListTasks", "list_tasks", {"cluster": CLUSTER, "family": LISTER}, write=False),
    Op("DescribeClusters", "describe_clusters", {"clusters": [CLUSTER]}, write=False, check=True),
    Op("RunTask", "run_task",
       # botocore fills clientToken with a fresh uuid4 on every call; a captured request would
       # repeat one token, and every RunTask after the first would be an idempotent replay.
       {"cluster": CLUSTER, "taskDefinition": f"{RUNNER}:1", "count": 1, "launchType": "EC2",
        "clientToken": PLACEHOLDER},
       write=True, unique=True, check=True),
]}

MIX = ["RegisterTaskDefinition", "DescribeTaskDefinition", "CreateService", "DescribeServices",
       "ListTasks", "DescribeClusters", "RunTask"]
READS = [n for n in MIX if not OPS[n].write]
WRITES = [n for n in MIX if OPS[n].write]


def is_unimplemented(err: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(err, ClientError) and err.response["Error"]["Code"] == "UnknownOperationException"


def _err(e: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        return f"{e.response['Error']['Code']}: {e.response['Error'].get('Message', '')}"
    return f"{type(e).__name__}: {e}"


class Fixtures:
    """Creates the same starting state on Dockyard or moto and records what worked."""

    def __init__(self, client: Any, label: str, log: Callable[[str], None]) -> None:
        self.c = client
        self.label = label
        self.log = log
        self.problems: dict[str, str] = {}   # op -> why it can't be measured / is degraded
        self.missing: set[str] = set()       # ops the server does not implement
        self.retried: dict[str, int] = {}    # op -> 5xx answers retried in setup

    def _try(self, op: str, fn: Callable[[], Any], retries: int = 3) -> Any:
        """``fn()``; 5xx answers are retried as an SDK would (retries are off in the bench clients)."""
        from botocore.exceptions import ClientError

        err: Exception | None = None
        for attempt in range(retries + 1):
            try:
                return fn()
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                err = e
                if status >= 500 and attempt < retries:
                    self.retried[op] = self.retried.get(op, 0) + 1
                    time.sleep(0.05 * (attempt + 1))
                    continue
                break
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                err = e
                break
        assert err is not None
        if is_unimplemented(err):
            self.missing.add(op)
        self.problems.setdefault(op, _err(err))
        self.log(f"  {self.label}: {op} failed in setup: {_err(err)}")
        return None

    def base(self) -> None:
        c = self.c
        self._try("CreateCluster", lambda: c.create_cluster(clusterName=CLUSTER))
        self._try("RegisterTaskDefinition", lambda: c.register_task_definition(**WEB_TASK_DEFINITION))
        self._try("RegisterTaskDefinition", lambda: c.register_task_definition(**RUNNER_TASK_DEFINITION))
        self._try("RegisterTaskDefinition", lambda: c.register_task_definition(**LISTER_TASK_DEFINITION))
        self._try("DescribeTaskDefinition",
                  lambda: c.describe_task_definition(taskDefinition=f"{WEB}:1", include=["TAGS"]))
        self.services(0, SETUP_SERVICES)

    def services(self, start: int, count: int) -> None:
        for i in range(start, start + count):
            if "CreateService" in self.missing:
                return
            self._try("CreateService", partial(
                self.c.create_service, cluster=CLUSTER, serviceName=SERVICE_FMT.format(i),
                taskDefinition=f"{WEB}:1", desiredCount=0, launchType="EC2"))

    def run_tasks(self, count: int, family: str = LISTER) -> int:
        """Start ``count`` tasks of ``family`` (RunTask, 10 at a time); returns how many were placed."""
        placed = 0
        calls = 0
        while placed < count and calls < count:  # stop if the server places nothing
            if "RunTask" in self.missing:
                break
            n = min(10, count - placed)
            r = self._try("RunTask", partial(self.c.run_task, cluster=CLUSTER, taskDefinition=f"{family}:1",
                                             count=n, launchType="EC2"))
            calls += 1
            if r is None:
                break
            placed += len(r.get("tasks", []))
            if r.get("failures") and not r.get("tasks"):
                self.problems.setdefault("RunTask", f"failures: {r['failures'][:1]}")
                break
        return placed

    def probe_reads(self) -> None:
        c = self.c
        self._try("DescribeServices", lambda: c.describe_services(cluster=CLUSTER,
                                                                  services=[SERVICE_FMT.format(0)]))
        self._try("ListTasks", lambda: c.list_tasks(cluster=CLUSTER, family=LISTER))
        self._try("DescribeClusters", lambda: c.describe_clusters(clusters=[CLUSTER]))


# -- container instances ----------------------------------------------------------

def identity_document(instance_id: str, region: str = "us-east-1") -> str:
    return json.dumps({
        "accountId": "123456789012", "architecture": "x86_64", "availabilityZone": f"{region}a",
        "imageId": "ami-0123456789abcdef0", "instanceId": instance_id, "instanceType": "m5.large",
        "pendingTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "privateIp": "10.0.0.10",
        "region": region, "version": "2017-09-30"})


def big_resources(cpu: int, memory: int) -> list[dict[str, Any]]:
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]


def register_dockyard_instances(fx: Fixtures, data_dir: Any, count: int) -> list[str]:
    """RegisterContainerInstance ``count`` big instances, then mark their agents connected in the store.

    Agents come later; ``container_instances.set_agent_connected`` flips the flag directly in the
    server's SQLite file while the server runs. Problems are recorded in ``fx.problems``.
    """
    arns: list[str] = []
    for i in range(count):
        iid = f"i-{i:017x}"
        r = fx._try("RegisterContainerInstance", partial(
            fx.c.register_container_instance, cluster=CLUSTER,
            instanceIdentityDocument=identity_document(iid), instanceIdentityDocumentSignature="bench",
            totalResources=big_resources(2_000_000_000, 2_000_000_000),
            versionInfo={"agentVersion": "1.89.0", "agentHash": "bench",
                         "dockerVersion": "DockerVersion: 27.3.1"},
            attributes=[{"name": "ecs.os-type", "value": "linux"}]))
        if r is None:
            break
        arns.append(r["containerInstance"]["containerInstanceArn"])
    if not arns:
        return arns
    try:
        from dockyard.services.ecs import container_instances as ci
        from dockyard.state.store import Store

        set_connected = getattr(ci, "set_agent_connected", None)
        if set_connected is None:
            fx.problems.setdefault("RunTask", "container_instances.set_agent_connected is not available yet; "
                                              "instances stay disconnected")
            fx.log(f"  {fx.label}: set_agent_connected not available; RunTask may not place")
            return arns
        store = Store(f"sqlite:///{data_dir}/dockyard.db")
        with store.transaction() as tx:
            for arn in arns:
                set_connected(tx, arn, True)
        store.engine.dispose()
    except Exception as e:  # noqa: BLE001
        fx.problems.setdefault("RunTask", f"could not mark agents connected: {_err(e)}")
        fx.log(f"  {fx.label}: marking agents connected failed: {_err(e)}")
    return arns


def register_moto_instances(fx: Fixtures, endpoint: str, count: int, cluster: str = CLUSTER) -> int:
    """moto needs a (moto) EC2 instance per container instance; its instances have fixed resources
    (4096 CPU, 7482 MiB: 935 RunTask 'runner' tasks each)."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    try:
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    except Exception:  # noqa: BLE001
        image = "ami-12c6146b"
    done = 0
    while done < count:
        n = min(50, count - done)
        res = ec2.run_instances(ImageId=image, MinCount=n, MaxCount=n, InstanceType="m5.large")
        for inst in res["Instances"]:
            fx._try("RegisterContainerInstance", partial(
                fx.c.register_container_instance, cluster=cluster,
                instanceIdentityDocument=identity_document(inst["InstanceId"]),
                instanceIdentityDocumentSignature="bench",
                totalResources=big_resources(4096, 7482)))
        done += n
    return done
