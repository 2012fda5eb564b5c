"""ECS ARNs (long format only, as AWS since April 2021) and their parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

PARTITION = "aws"

# arn:aws:ecs:region:account:resource-type/rest
_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:([a-z0-9-]+):(\d{12}):([a-z-]+)/(.+)$")


@dataclass(frozen=True, slots=True)
class Arn:
    region: str
    account_id: str
    kind: str
    resource: str  # everything after "kind/"

    def __str__(self) -> str:
        return f"arn:{PARTITION}:ecs:{self.region}:{self.account_id}:{self.kind}/{self.resource}"


def parse(text: str) -> Arn | None:
    m = _ARN.match(text)
    if m is None:
        return None
    return Arn(m.group(1), m.group(2), m.group(3), m.group(4))


def is_arn(text: str) -> bool:
    return text.startswith("arn:")


def cluster(region: str, account: str, name: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:cluster/{name}"


def task_definition(region: str, account: str, family: str, revision: int) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:task-definition/{family}:{revision}"


def task(region: str, account: str, cluster_name: str, task_id: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:task/{cluster_name}/{task_id}"


def container(region: str, account: str, cluster_name: str, task_id: str, uuid: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:container/{cluster_name}/{task_id}/{uuid}"


def container_instance(region: str, account: str, cluster_name: str, instance_id: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:container-instance/{cluster_name}/{instance_id}"


def service(region: str, account: str, cluster_name: str, name: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:service/{cluster_name}/{name}"


def capacity_provider(region: str, account: str, name: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:capacity-provider/{name}"


def task_set(region: str, account: str, cluster_name: str, service_name: str, ts_id: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:task-set/{cluster_name}/{service_name}/{ts_id}"


def service_deployment(region: str, account: str, cluster_name: str, service_name: str,
                       dep_id: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:service-deployment/{cluster_name}/{service_name}/{dep_id}"


def service_revision(region: str, account: str, cluster_name: str, service_name: str,
                     rev_id: str) -> str:
    return f"arn:{PARTITION}:ecs:{region}:{account}:service-revision/{cluster_name}/{service_name}/{rev_id}"


def iam_user(account: str, user: str) -> str:
    return f"arn:{PARTITION}:iam::{account}:{'root' if user == 'root' else 'user/' + user}"
