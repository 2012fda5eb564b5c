"""Tags: TagResource, UntagResource, ListTagsForResource on every taggable ECS resource.

Taggable: clusters, services, tasks, task definitions, container instances and
capacity providers (task-set ARNs are understood, but none exist yet, so they
answer not found). The resource is looked up by its ARN in its own table; the
tags themselves live in the ``tags`` table (see ``common``), so a resource
type's module only has to call ``common.remove_tags`` when it deletes one.

Errors, per each operation's list in the botocore model:
- an ARN that is not an ECS resource ARN: InvalidParameterException
  "The ARN provided is invalid." (as AWS answers for, e.g., an ECR ARN);
- a short (pre-2021) service, task or container-instance ARN:
  InvalidParameterException "Long arn format must be used for tagging operations";
- a cluster (or the cluster of a service/task/instance) that does not exist:
  ClusterNotFoundException;
- any other missing resource: ResourceNotFoundException for Tag/UntagResource,
  InvalidParameterException for ListTagsForResource (whose model has no
  ResourceNotFoundException).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, select

from dockyard.api.errors import (
    AwsError,
    ClusterNotFoundException,
    InvalidParameterException,
    LimitExceededException,
    ResourceNotFoundException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import quotas
from dockyard.services.ecs.capacity_providers import BUILT_IN
from dockyard.services.ecs.common import Doc, get_tags, put_tags, remove_tags, validate_tags
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns
from dockyard.state.schema import capacity_providers as cpt
from dockyard.state.schema import clusters as ct
from dockyard.state.schema import container_instances as cit
from dockyard.state.schema import services as st
from dockyard.state.schema import tags as tgt
from dockyard.state.schema import task_definitions as tdt
from dockyard.state.schema import tasks as tkt
from dockyard.state.store import Tx, prepare

# kind -> statement answering one status-like column for the row with that ARN.
_STATUS_OF = {
    "cluster": prepare(select(ct.c.status).where(ct.c.arn == bindparam("a"))),
    "service": prepare(select(st.c.status).where(st.c.arn == bindparam("a"))),
    "task": prepare(select(tkt.c.last_status).where(tkt.c.arn == bindparam("a"))),
    "container-instance": prepare(select(cit.c.status).where(cit.c.arn == bindparam("a"))),
    "task-definition": prepare(select(tdt.c.status).where(tdt.c.arn == bindparam("a"))),
    "capacity-provider": prepare(select(cpt.c.status).where(cpt.c.arn == bindparam("a"))),
}
# Statuses in which a resource no longer exists as far as tagging is concerned.
_GONE = {"cluster": {"INACTIVE"}, "service": {"INACTIVE"}, "capacity-provider": {"INACTIVE"},
         "task-definition": {"DELETE_IN_PROGRESS"}}
# Kinds whose ARN carries the cluster name as its first segment, and how many
# segments follow "kind/" in the long format (a task set's id is "ecs-svc/<number>").
_IN_CLUSTER = {"service": 2, "task": 2, "container-instance": 2, "task-set": 4}
_TASKDEF_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}:[1-9][0-9]*$")
_TAG_KEYS = prepare(select(tgt.c.key).where(tgt.c.resource_arn == bindparam("a")))

_INVALID_ARN = "The ARN provided is invalid."


def _not_found(op: str) -> AwsError:
    if op == "ListTagsForResource":
        return InvalidParameterException("The specified resource is not found.")
    return ResourceNotFoundException("The specified resource is not found.")


def resolve(tx: Tx, ctx: Ctx, resource_arn: str, op: str) -> tuple[str, str]:
    """(ARN, kind) of an existing taggable resource, or the error AWS answers for it."""
    a = arns.parse(resource_arn)
    if a is None:
        raise InvalidParameterException(_INVALID_ARN)
    kind = a.kind
    parts = a.resource.split("/")
    if kind in _IN_CLUSTER:
        if len(parts) == 1 and kind != "task-set":
            raise InvalidParameterException("Long arn format must be used for tagging operations")
        if len(parts) != _IN_CLUSTER[kind] or not all(parts):
            raise InvalidParameterException(_INVALID_ARN)
        row = tx.one(_STATUS_OF["cluster"], a=arns.cluster(a.region, a.account_id, parts[0]))
        if row is None or row[0] == "INACTIVE":
            raise ClusterNotFoundException("Cluster not found.")
        if kind == "task-set":  # no task sets are stored yet
            raise _not_found(op)
    elif kind == "cluster":
        if len(parts) != 1:
            raise InvalidParameterException(_INVALID_ARN)
        row = tx.one(_STATUS_OF["cluster"], a=resource_arn)
        if row is None or row[0] == "INACTIVE":
            raise ClusterNotFoundException("Cluster not found.")
        return resource_arn, kind
    elif kind == "task-definition":
        if not _TASKDEF_RE.match(a.resource):
            raise InvalidParameterException(_INVALID_ARN)
    elif kind == "capacity-provider":
        if len(parts) != 1:
            raise InvalidParameterException(_INVALID_ARN)
        if a.resource in BUILT_IN and (a.account_id, a.region) == (ctx.account_id, ctx.region):
            return resource_arn, kind
    else:
        raise InvalidParameterException(_INVALID_ARN)
    row = tx.one(_STATUS_OF[kind], a=resource_arn)
    if row is None or row[0] in _GONE.get(kind, ()):
        raise _not_found(op)
    return resource_arn, kind


def _built_in_provider(arn: str, kind: str) -> bool:
    return kind == "capacity-provider" and arn.rsplit("/", 1)[-1] in BUILT_IN


def _check_keys(keys: list[str]) -> None:
    for k in keys:
        if not k or len(k) > 128:
            raise InvalidParameterException("Tag keys must be between 1 and 128 characters.")
        if k.lower().startswith("aws:"):
            raise InvalidParameterException("Tag keys cannot start with the reserved prefix 'aws:'.")


def tag(tx: Tx, arn: str, tags: list[Doc]) -> None:
    """Merge ``tags`` into the resource's tags, within the tags_per_resource quota."""
    validate_tags(tags)
    existing = {r[0] for r in tx.all(_TAG_KEYS, a=arn)}
    new_keys = {t["key"] for t in tags} - existing
    if len(existing) + len(new_keys) > quotas.limit("tags_per_resource"):
        raise LimitExceededException(quotas.message("tags_per_resource"))
    put_tags(tx, arn, tags)


@ecs.op("TagResource", write=True)
def tag_resource(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    arn, kind = resolve(tx, ctx, req["resourceArn"], "TagResource")
    if _built_in_provider(arn, kind):
        raise InvalidParameterException(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and cannot be tagged.")
    tags: list[Doc] = req["tags"]
    if tags:
        tag(tx, arn, tags)
        tx.notify("tags", arn)
    return {}


@ecs.op("UntagResource", write=True)
def untag_resource(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    arn, kind = resolve(tx, ctx, req["resourceArn"], "UntagResource")
    keys: list[str] = req["tagKeys"]
    _check_keys(keys)
    if _built_in_provider(arn, kind):
        raise InvalidParameterException(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and cannot be tagged.")
    if keys:
        remove_tags(tx, arn, keys)
        tx.notify("tags", arn)
    return {}


@ecs.op("ListTagsForResource", write=False)
def list_tags_for_resource(tx: Tx, ctx: Ctx, req: Doc) -> dict[str, Any]:
    arn, _ = resolve(tx, ctx, req["resourceArn"], "ListTagsForResource")
    return {"tags": get_tags(tx, arn)}
