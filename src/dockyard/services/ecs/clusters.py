"""Clusters: Create/Describe/List/Update/UpdateClusterSettings/Delete, PutClusterCapacityProviders."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from dockyard.api.errors import (
    ClientException,
    ClusterContainsContainerInstancesException,
    ClusterContainsServicesException,
    ClusterContainsTasksException,
    InvalidParameterException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import account_settings, capacity_providers, quotas
from dockyard.services.ecs.common import (
    NAME_RE,
    ClusterRow,
    Doc,
    cluster_arn_for,
    dumps,
    encode_token,
    find_cluster,
    get_tags,
    loads,
    max_results,
    put_tags,
    remove_tags,
    require_cluster,
    string_token,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns
from dockyard.state.schema import clusters as ct
from dockyard.state.schema import tasks as tt
from dockyard.state.store import Tx, prepare

_INSERT = prepare(insert(ct))
_SET_DOC = prepare(update(ct).where(ct.c.arn == bindparam("a")).values(doc=bindparam("d")))
_SET_STATUS = prepare(update(ct).where(ct.c.arn == bindparam("a"))
                      .values(status=bindparam("s"), doc=bindparam("d")))
_LIST = prepare(select(ct.c.arn).where(ct.c.account_id == bindparam("acct"), ct.c.region == bindparam("r"),
                                       ct.c.status == "ACTIVE", ct.c.arn > bindparam("after"))
                .order_by(ct.c.arn).limit(bindparam("n")))
_COUNT_ACTIVE = prepare(select(func.count()).select_from(ct).where(ct.c.account_id == bindparam("acct"),
                                               ct.c.region == bindparam("r"), ct.c.status == "ACTIVE"))
_SERVICE_COUNTS = prepare(select(ct.c.active_services, ct.c.draining_services)
                          .where(ct.c.arn == bindparam("a")))
_TASK_STATS = prepare(select(tt.c.launch_type, tt.c.last_status)
                      .where(tt.c.cluster_arn == bindparam("a"), tt.c.desired_status == "RUNNING"))

DEFAULT_SETTINGS = [{"name": "containerInsights", "value": "disabled"}]
_INCLUDE = {"ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"}


def _check_settings(settings: list[Doc], defaults: list[Doc] = DEFAULT_SETTINGS) -> list[Doc]:
    out: dict[str, str] = {s["name"]: s["value"] for s in defaults}
    for s in settings:
        if s.get("name") != "containerInsights":
            raise InvalidParameterException("Cluster setting name must be 'containerInsights'.")
        if s.get("value") not in ("enabled", "disabled", "enhanced"):
            raise InvalidParameterException(
                "Cluster setting value for containerInsights must be 'enabled', 'disabled' or 'enhanced'.")
        out[s["name"]] = s["value"]
    return [{"name": k, "value": v} for k, v in out.items()]


def _statistics(tx: Tx, c: ClusterRow) -> list[Doc]:
    counts = {"runningEC2TasksCount": 0, "runningFargateTasksCount": 0, "runningExternalTasksCount": 0,
              "pendingEC2TasksCount": 0, "pendingFargateTasksCount": 0, "pendingExternalTasksCount": 0}
    suffix = {"FARGATE": "Fargate", "EXTERNAL": "External"}
    for launch, last in tx.all(_TASK_STATS, a=c.arn):
        phase = "running" if last == "RUNNING" else "pending"
        counts[f"{phase}{suffix.get(launch or 'EC2', 'EC2')}TasksCount"] += 1
    # Services are not split by launch type in the counters; EC2 holds them all for now.
    counts["activeEC2ServiceCount"] = c.active_services
    counts["activeFargateServiceCount"] = 0
    counts["drainingEC2ServiceCount"] = 0
    counts["drainingFargateServiceCount"] = 0
    return [{"name": k, "value": str(v)} for k, v in counts.items()]


def render(tx: Tx, c: ClusterRow, include: set[str]) -> Doc:
    doc = loads(c.doc_raw)
    doc["status"] = c.status
    doc["registeredContainerInstancesCount"] = c.registered_instances
    doc["runningTasksCount"] = c.running_tasks
    doc["pendingTasksCount"] = c.pending_tasks
    doc["activeServicesCount"] = c.active_services
    doc["statistics"] = _statistics(tx, c) if "STATISTICS" in include else []
    if "TAGS" in include:
        doc["tags"] = get_tags(tx, c.arn)
    if "SETTINGS" not in include:
        doc.pop("settings", None)
    if "CONFIGURATIONS" not in include:
        doc.pop("configuration", None)
    if "ATTACHMENTS" not in include:
        doc.pop("attachments", None)
    return doc


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidParameterException(
            "Cluster name must be 1-255 characters: letters, numbers, hyphens and underscores.")


@ecs.op("CreateCluster", write=True)
def create_cluster(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name = req.get("clusterName") or "default"
    _check_name(name)
    arn = arns.cluster(ctx.region, ctx.account_id, name)
    # A new cluster's containerInsights follows the account setting unless the request sets it.
    insights = account_settings.effective(tx, ctx, "containerInsights")
    settings = _check_settings(req.get("settings", []), [{"name": "containerInsights", "value": insights}])
    providers = req.get("capacityProviders", [])
    strategy = req.get("defaultCapacityProviderStrategy", [])
    capacity_providers.check_cluster_providers(tx, ctx, providers, strategy)
    tags = req.get("tags", [])
    existing = find_cluster(tx, ctx, arn)
    if existing is not None and existing.active:
        # CreateCluster is idempotent: an ACTIVE cluster of that name is returned as it is.
        return {"cluster": render(tx, existing, {"SETTINGS", "CONFIGURATIONS", "TAGS"})}
    doc: Doc = {
        "clusterArn": arn, "clusterName": name, "status": "ACTIVE", "settings": settings,
        "capacityProviders": providers, "defaultCapacityProviderStrategy": strategy,
    }
    for opt in ("configuration", "serviceConnectDefaults"):
        if opt in req:
            doc[opt] = req[opt]
    active = tx.one(_COUNT_ACTIVE, acct=ctx.account_id, r=ctx.region)
    quotas.check(tx, ctx, "clusters_per_account", active[0] if active else 0)
    if existing is None:
        tx.insert(_INSERT, arn=arn, account_id=ctx.account_id, region=ctx.region, name=name,
                  status="ACTIVE", registered_instances=0, running_tasks=0, pending_tasks=0,
                  active_services=0, draining_services=0, doc=dumps(doc))
    else:  # a deleted (INACTIVE) cluster of that name comes back under the same ARN
        tx.run(_SET_STATUS, a=arn, s="ACTIVE", d=dumps(doc))
    if tags:
        put_tags(tx, arn, tags)
    tx.notify("cluster", arn)
    c = require_cluster(tx, ctx, arn)
    return {"cluster": render(tx, c, {"SETTINGS", "CONFIGURATIONS", "TAGS"})}


@ecs.op("DescribeClusters", write=False)
def describe_clusters(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    refs = req.get("clusters") or ["default"]
    if len(refs) > 100:
        raise InvalidParameterException("Clusters cannot have more than 100 elements")
    include = set(req.get("include", []))
    if include - _INCLUDE:
        raise InvalidParameterException("Invalid include value.")
    out: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        try:
            c = find_cluster(tx, ctx, ref)
        except InvalidParameterException:
            c = None
        if c is None:
            failures.append({"arn": cluster_arn_for(ctx, ref) if not ref.startswith("arn:") else ref,
                             "reason": "MISSING"})
        else:
            out.append(render(tx, c, include))
    return {"clusters": out, "failures": failures}


@ecs.op("ListClusters", write=False)
def list_clusters(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    n = max_results(req, 100)
    after = string_token(req)
    rows = tx.all(_LIST, acct=ctx.account_id, r=ctx.region, after=after, n=n + 1)
    page = [r[0] for r in rows[:n]]
    resp: Doc = {"clusterArns": page}
    if len(rows) > n:
        resp["nextToken"] = encode_token(page[-1])
    return resp


def _update_doc(tx: Tx, c: ClusterRow, changes: dict[str, Any]) -> ClusterRow:
    doc = loads(c.doc_raw)
    doc.update(changes)
    tx.run(_SET_DOC, a=c.arn, d=dumps(doc))
    tx.notify("cluster", c.arn)
    c.doc_raw = dumps(doc)
    return c


@ecs.op("UpdateCluster", write=True)
def update_cluster(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req["cluster"])
    changes: dict[str, Any] = {}
    if "settings" in req:
        current = {s["name"]: s["value"] for s in loads(c.doc_raw).get("settings", [])}
        current.update({s["name"]: s["value"] for s in _check_settings(req["settings"])})
        changes["settings"] = [{"name": k, "value": v} for k, v in current.items()]
    for opt in ("configuration", "serviceConnectDefaults"):
        if opt in req:
            changes[opt] = req[opt]
    c = _update_doc(tx, c, changes)
    return {"cluster": render(tx, c, {"SETTINGS", "CONFIGURATIONS"})}


@ecs.op("UpdateClusterSettings", write=True)
def update_cluster_settings(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req["cluster"])
    current = {s["name"]: s["value"] for s in loads(c.doc_raw).get("settings", [])}
    current.update({s["name"]: s["value"] for s in _check_settings(req["settings"])})
    c = _update_doc(tx, c, {"settings": [{"name": k, "value": v} for k, v in current.items()]})
    return {"cluster": render(tx, c, {"SETTINGS"})}


@ecs.op("PutClusterCapacityProviders", write=True)
def put_cluster_capacity_providers(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req["cluster"])
    providers = req["capacityProviders"]
    strategy = req["defaultCapacityProviderStrategy"]
    capacity_providers.check_cluster_providers(tx, ctx, providers, strategy)
    c = _update_doc(tx, c, {"capacityProviders": providers, "defaultCapacityProviderStrategy": strategy})
    return {"cluster": render(tx, c, {"SETTINGS", "CONFIGURATIONS"})}


@ecs.op("DeleteCluster", write=True)
def delete_cluster(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req["cluster"])
    if c.registered_instances > 0:
        raise ClusterContainsContainerInstancesException(
            "The Cluster cannot be deleted while Container Instances are active or draining.")
    row = tx.one(_SERVICE_COUNTS, a=c.arn)
    if row and (row[0] or row[1]):
        raise ClusterContainsServicesException("The Cluster cannot be deleted while Services are active.")
    if c.running_tasks or c.pending_tasks:
        raise ClusterContainsTasksException("The Cluster cannot be deleted while Tasks are active.")
    if capacity_providers.cluster_scoped_providers(tx, ctx, c.name):
        raise ClientException("The Cluster cannot be deleted while Cluster Scoped Capacity Providers are "
                              "attached to the cluster")
    # Tags go with the resource: a cluster created again under this name starts untagged.
    remove_tags(tx, c.arn)
    doc = loads(c.doc_raw)
    doc["status"] = "INACTIVE"
    tx.run(_SET_STATUS, a=c.arn, s="INACTIVE", d=dumps(doc))
    tx.notify("cluster", c.arn)
    c.status = "INACTIVE"
    c.doc_raw = dumps(doc)
    return {"cluster": render(tx, c, {"SETTINGS", "CONFIGURATIONS"})}
