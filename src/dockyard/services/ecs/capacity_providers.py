"""Capacity providers: FARGATE and FARGATE_SPOT built in, custom ones Create/Update/Delete/Describe.

A custom provider is one row of ``capacity_providers`` (ARN
``arn:aws:ecs:REGION:ACCOUNT:capacity-provider/NAME``) holding its wire shape.
Two kinds exist, as in ECS: an Auto Scaling group provider (account-wide) and
an ECS Managed Instances provider (scoped to the one cluster named at
creation). Dockyard has no EC2 Auto Scaling behind them yet, so the settings
are recorded and reported; nothing scales.

Deleting a provider that a cluster still lists answers 200 with
``updateStatus: DELETE_FAILED`` and a reason, as ECS does; otherwise the
provider becomes INACTIVE (``DELETE_COMPLETE``) at once, since there is no
capacity to drain, and its tags are dropped.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from dockyard.api.errors import (
    ClientException,
    InvalidParameterException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import quotas
from dockyard.services.ecs.common import (
    NAME_RE,
    Doc,
    decode_token,
    dumps,
    encode_token,
    get_tags,
    loads,
    max_results,
    put_tags,
    remove_tags,
    require_cluster,
    validate_tags,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns
from dockyard.state.schema import capacity_providers as cpt
from dockyard.state.schema import clusters as ct
from dockyard.state.store import Tx, prepare

BUILT_IN = ("FARGATE", "FARGATE_SPOT")
_RESERVED_PREFIXES = ("aws", "ecs", "fargate")

_BY_NAME = prepare(select(cpt.c.status).where(cpt.c.account_id == bindparam("acct"),
                                              cpt.c.region == bindparam("r"), cpt.c.name == bindparam("n")))
_GET = prepare(select(cpt.c.arn, cpt.c.name, cpt.c.status, cpt.c.doc).where(cpt.c.arn == bindparam("a")))
_INSERT = prepare(insert(cpt))
_SET = prepare(update(cpt).where(cpt.c.arn == bindparam("a"))
               .values(status=bindparam("s"), doc=bindparam("d")))
_LIST = prepare(select(cpt.c.arn, cpt.c.name, cpt.c.status, cpt.c.doc)
                .where(cpt.c.account_id == bindparam("acct"), cpt.c.region == bindparam("r"),
                       cpt.c.status == "ACTIVE", cpt.c.name > bindparam("after"))
                .order_by(cpt.c.name).limit(bindparam("n")))
_ALL_ACTIVE = prepare(select(cpt.c.name, cpt.c.doc)
                      .where(cpt.c.account_id == bindparam("acct"), cpt.c.region == bindparam("r"),
                             cpt.c.status == "ACTIVE"))
_ACTIVE_CLUSTERS = prepare(select(ct.c.name, ct.c.doc)
                           .where(ct.c.account_id == bindparam("acct"), ct.c.region == bindparam("r"),
                                  ct.c.status == "ACTIVE").order_by(ct.c.name))

_ASG_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:autoscaling:[a-z0-9-]+:\d{12}:autoScalingGroup:[^:]+:autoScalingGroupName/.+$")
_ASG_NAME_RE = re.compile(r"^[^:]{1,255}$")

_NOT_FOUND = "The specified capacity provider does not exist. Specify a valid name or ARN and try again."
_RESERVED = "The FARGATE and FARGATE_SPOT capacity providers are reserved and cannot be {verb}."


# -- shared with clusters, services and RunTask --------------------------------

def provider_exists(tx: Tx, ctx: Ctx, name: str) -> bool:
    if name in BUILT_IN:
        return True
    row = tx.one(_BY_NAME, acct=ctx.account_id, r=ctx.region, n=name)
    return row is not None and row[0] == "ACTIVE"


def check_strategy(strategy: list[Doc], allowed: list[str] | None) -> None:
    """Capacity provider strategy rules shared by clusters, services and RunTask."""
    with_base = [s for s in strategy if s.get("base", 0) > 0]
    if len(with_base) > 1:
        raise InvalidParameterException(
            "You can only specify a base value for one capacity provider in a capacity provider strategy.")
    names = [s["capacityProvider"] for s in strategy]
    if len(set(names)) != len(names):
        raise InvalidParameterException("A capacity provider can only appear once in a capacity provider "
                                        "strategy.")
    for s in strategy:
        if not 0 <= s.get("weight", 0) <= 1000:
            raise InvalidParameterException("The weight must be between 0 and 1000.")
        if not 0 <= s.get("base", 0) <= 100000:
            raise InvalidParameterException("The base must be between 0 and 100000.")
        if allowed is not None and s["capacityProvider"] not in allowed:
            raise InvalidParameterException(
                "The specified capacity provider strategy cannot contain a capacity provider that is not "
                "associated with the cluster. Associate the capacity provider with the cluster or specify "
                "a valid capacity provider and try again.")


def check_cluster_providers(tx: Tx, ctx: Ctx, providers: list[str], strategy: list[Doc]) -> None:
    if len(providers) > quotas.limit("capacity_providers_per_cluster"):
        raise InvalidParameterException(quotas.message("capacity_providers_per_cluster"))
    if len(set(providers)) != len(providers):
        raise InvalidParameterException("A capacity provider can only be specified once for a cluster.")
    for name in providers:
        if not provider_exists(tx, ctx, name):
            raise InvalidParameterException(
                f"The specified capacity provider '{name}' does not exist. Specify a valid capacity "
                f"provider and try again.")
    check_strategy(strategy, providers)


# -- lookups and rendering -----------------------------------------------------

class ProviderRow:
    __slots__ = ("arn", "doc", "name", "status")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.arn, self.name, self.status = row[0], row[1], row[2]
        self.doc: Doc = loads(row[3])


def _name_of(ctx: Ctx, ref: str) -> str | None:
    """The provider name a name-or-ARN reference stands for in this account and region (None: none)."""
    if not arns.is_arn(ref):
        return ref
    a = arns.parse(ref)
    if a is None or a.kind != "capacity-provider" or "/" in a.resource:
        return None
    if (a.account_id, a.region) != (ctx.account_id, ctx.region):
        return None
    return a.resource


def _arn_for(ctx: Ctx, ref: str) -> str:
    return ref if arns.is_arn(ref) else arns.capacity_provider(ctx.region, ctx.account_id, ref)


def _find(tx: Tx, ctx: Ctx, name: str) -> ProviderRow | None:
    row = tx.one(_GET, a=arns.capacity_provider(ctx.region, ctx.account_id, name))
    return ProviderRow(row) if row else None


def _built_in_doc(ctx: Ctx, name: str) -> Doc:
    return {"capacityProviderArn": arns.capacity_provider(ctx.region, ctx.account_id, name),
            "name": name, "status": "ACTIVE", "type": name}


def _render(tx: Tx, doc: Doc, with_tags: bool) -> Doc:
    out = dict(doc)
    out["tags"] = get_tags(tx, out["capacityProviderArn"]) if with_tags else []
    return out


# -- validation ----------------------------------------------------------------

def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidParameterException(
            "The capacity provider name must be 1-255 characters: letters (upper and lowercase), "
            "numbers, underscores and hyphens.")
    if name.lower().startswith(_RESERVED_PREFIXES):
        raise InvalidParameterException(
            "The capacity provider name cannot be prefixed with \"aws\", \"ecs\", or \"fargate\". "
            "Specify a different name and try again.")


def _enum(value: Any, field: str, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise InvalidParameterException(f"Invalid value for {field}: must be one of {', '.join(allowed)}.")


_SCALING_RANGES = {"targetCapacity": (1, 100), "minimumScalingStepSize": (1, 10000),
                   "maximumScalingStepSize": (1, 10000), "instanceWarmupPeriod": (0, 10000)}
_SCALING_DEFAULTS = {"status": "DISABLED", "targetCapacity": 100, "minimumScalingStepSize": 1,
                     "maximumScalingStepSize": 10000, "instanceWarmupPeriod": 300}


def _managed_scaling(given: Doc | None, current: Doc | None) -> Doc:
    ms = dict(current or _SCALING_DEFAULTS)
    for k, v in (given or {}).items():
        ms[k] = v
    _enum(ms.get("status"), "managedScaling.status", ("ENABLED", "DISABLED"))
    for field, (lo, hi) in _SCALING_RANGES.items():
        if not lo <= ms[field] <= hi:
            raise InvalidParameterException(
                f"The managedScaling {field} must be between {lo} and {hi}.")
    if ms["minimumScalingStepSize"] > ms["maximumScalingStepSize"]:
        raise InvalidParameterException(
            "The managedScaling minimumScalingStepSize cannot be greater than maximumScalingStepSize.")
    return ms


def _asg_settings(given: Doc, current: Doc | None) -> Doc:
    """The stored autoScalingGroupProvider after applying ``given`` (a create or an update)."""
    out: Doc = dict(current) if current else {"autoScalingGroupArn": given["autoScalingGroupArn"]}
    out["managedScaling"] = _managed_scaling(given.get("managedScaling"),
                                             current.get("managedScaling") if current else None)
    for field, default in (("managedTerminationProtection", "DISABLED"), ("managedDraining", "ENABLED")):
        value = given.get(field, out.get(field, default))
        _enum(value, field, ("ENABLED", "DISABLED"))
        out[field] = value
    if out["managedTerminationProtection"] == "ENABLED" and out["managedScaling"]["status"] != "ENABLED":
        raise ClientException(
            "The managed termination protection setting for the capacity provider is invalid. To enable "
            "managed termination protection for a capacity provider, managed scaling must also be enabled.")
    return out


def _check_asg_arn(tx: Tx, ctx: Ctx, asg: str) -> None:
    if asg.startswith("arn:"):
        if not _ASG_ARN_RE.match(asg):
            raise InvalidParameterException(
                "The specified Auto Scaling group ARN is not valid. Specify a valid Auto Scaling group "
                "ARN or name and try again.")
    elif not _ASG_NAME_RE.match(asg):
        raise InvalidParameterException(
            "The specified Auto Scaling group name is not valid. Specify a valid Auto Scaling group "
            "ARN or name and try again.")
    for _, raw in tx.all(_ALL_ACTIVE, acct=ctx.account_id, r=ctx.region):
        other = loads(raw).get("autoScalingGroupProvider") or {}
        if other.get("autoScalingGroupArn") == asg:
            raise ClientException(
                "The specified Auto Scaling group ARN is already being used by another capacity provider. "
                "Specify a unique Auto Scaling group ARN and try again.")


def _managed_instances(given: Doc, current: Doc | None) -> Doc:
    if current is None:
        if not given.get("infrastructureRoleArn"):
            raise InvalidParameterException(
                "The managedInstancesProvider infrastructureRoleArn must be specified.")
        if not given.get("instanceLaunchTemplate"):
            raise InvalidParameterException(
                "The managedInstancesProvider instanceLaunchTemplate must be specified.")
        return dict(given)
    out = dict(current)
    for k, v in given.items():
        if k == "instanceLaunchTemplate":
            out[k] = {**current.get(k, {}), **v}
        else:
            out[k] = v
    return out


def _cluster_name(tx: Tx, ctx: Ctx, ref: str) -> str:
    return str(require_cluster(tx, ctx, ref).name)


def _check_scope(tx: Tx, ctx: Ctx, p: ProviderRow, cluster_ref: str | None) -> None:
    """A Managed Instances provider is reached through its cluster; an ASG provider takes none."""
    scoped = p.doc.get("cluster")
    if cluster_ref is None:
        if scoped is not None:
            raise InvalidParameterException(
                "The cluster parameter must be specified for Amazon ECS Managed Instances capacity "
                "providers.")
        return
    name = _cluster_name(tx, ctx, cluster_ref)
    if scoped is None:
        raise InvalidParameterException(
            "The cluster parameter can only be specified for Amazon ECS Managed Instances capacity "
            "providers.")
    if scoped != name:
        raise ClientException(_NOT_FOUND)


def _require(tx: Tx, ctx: Ctx, ref: str, verb: str) -> ProviderRow:
    name = _name_of(ctx, ref)
    if name in BUILT_IN:
        raise ClientException(_RESERVED.format(verb=verb))
    p = _find(tx, ctx, name) if name else None
    if p is None or p.status == "INACTIVE":
        raise ClientException(_NOT_FOUND)
    return p


# -- operations ----------------------------------------------------------------

@ecs.op("CreateCapacityProvider", write=True)
def create_capacity_provider(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name: str = req["name"]
    _check_name(name)
    asg: Doc | None = req.get("autoScalingGroupProvider")
    mip: Doc = req.get("managedInstancesProvider") or {}
    if (asg is None) == (not mip):
        raise InvalidParameterException(
            "Exactly one of autoScalingGroupProvider or managedInstancesProvider must be specified.")
    tags: list[Doc] = req.get("tags", [])
    validate_tags(tags)
    arn = arns.capacity_provider(ctx.region, ctx.account_id, name)
    existing = _find(tx, ctx, name)
    if existing is not None and existing.status != "INACTIVE":
        raise ClientException(
            "The specified capacity provider already exists. To change the configuration of an existing "
            "capacity provider, update the capacity provider.")
    doc: Doc = {"capacityProviderArn": arn, "name": name, "status": "ACTIVE"}
    if asg is not None:
        if req.get("cluster"):
            raise InvalidParameterException(
                "The cluster parameter can only be specified for Amazon ECS Managed Instances capacity "
                "providers.")
        _check_asg_arn(tx, ctx, asg["autoScalingGroupArn"])
        doc["autoScalingGroupProvider"] = _asg_settings(asg, None)
        doc["type"] = "EC2_AUTOSCALING"
    else:
        if not req.get("cluster"):
            raise InvalidParameterException(
                "The cluster parameter must be specified for Amazon ECS Managed Instances capacity "
                "providers.")
        doc["cluster"] = _cluster_name(tx, ctx, req["cluster"])
        doc["managedInstancesProvider"] = _managed_instances(mip, None)
        doc["type"] = "MANAGED_INSTANCES"
    if existing is None:
        tx.insert(_INSERT, arn=arn, account_id=ctx.account_id, region=ctx.region, name=name,
                  status="ACTIVE", doc=dumps(doc))
    else:  # a deleted (INACTIVE) provider of that name is replaced under the same ARN
        remove_tags(tx, arn)
        tx.run(_SET, a=arn, s="ACTIVE", d=dumps(doc))
    if tags:
        put_tags(tx, arn, tags)
    tx.notify("capacity-provider", arn)
    return {"capacityProvider": _render(tx, doc, True)}


@ecs.op("UpdateCapacityProvider", write=True)
def update_capacity_provider(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    p = _require(tx, ctx, req["name"], "updated")
    _check_scope(tx, ctx, p, req.get("cluster"))
    asg: Doc | None = req.get("autoScalingGroupProvider")
    mip: Doc = req.get("managedInstancesProvider") or {}
    if (asg is None) == (not mip):
        raise InvalidParameterException(
            "Exactly one of autoScalingGroupProvider or managedInstancesProvider must be specified.")
    doc = p.doc
    if asg is not None:
        if "autoScalingGroupProvider" not in doc:
            raise InvalidParameterException(
                "The autoScalingGroupProvider can only be updated on an Auto Scaling group capacity "
                "provider.")
        doc["autoScalingGroupProvider"] = _asg_settings(asg, doc["autoScalingGroupProvider"])
    else:
        if "managedInstancesProvider" not in doc:
            raise InvalidParameterException(
                "The managedInstancesProvider can only be updated on an Amazon ECS Managed Instances "
                "capacity provider.")
        doc["managedInstancesProvider"] = _managed_instances(mip, doc["managedInstancesProvider"])
    doc["updateStatus"] = "UPDATE_COMPLETE"
    doc.pop("updateStatusReason", None)
    tx.run(_SET, a=p.arn, s=p.status, d=dumps(doc))
    tx.notify("capacity-provider", p.arn)
    return {"capacityProvider": _render(tx, doc, True)}


def cluster_scoped_providers(tx: Tx, ctx: Ctx, cluster_name: str) -> list[str]:
    """Managed Instances providers that belong to the cluster (they block its deletion)."""
    return [name for name, raw in tx.all(_ALL_ACTIVE, acct=ctx.account_id, r=ctx.region)
            if loads(raw).get("cluster") == cluster_name]


def _associated_clusters(tx: Tx, ctx: Ctx, name: str) -> list[str]:
    return [cname for cname, raw in tx.all(_ACTIVE_CLUSTERS, acct=ctx.account_id, r=ctx.region)
            if name in (loads(raw).get("capacityProviders") or [])]


@ecs.op("DeleteCapacityProvider", write=True)
def delete_capacity_provider(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    p = _require(tx, ctx, req["capacityProvider"], "deleted")
    _check_scope(tx, ctx, p, req.get("cluster"))
    doc = p.doc
    using = _associated_clusters(tx, ctx, p.name)
    if using:
        # ECS answers 200 and records the failure on the provider, which stays ACTIVE.
        doc["updateStatus"] = "DELETE_FAILED"
        doc["updateStatusReason"] = (
            f"The capacity provider cannot be deleted because it is associated with cluster: {using[0]}. "
            f"Remove the capacity provider from the cluster and try again.")
        tx.run(_SET, a=p.arn, s=p.status, d=dumps(doc))
        tx.notify("capacity-provider", p.arn)
        return {"capacityProvider": _render(tx, doc, True)}
    doc["status"] = "INACTIVE"
    doc["updateStatus"] = "DELETE_COMPLETE"
    doc.pop("updateStatusReason", None)
    tx.run(_SET, a=p.arn, s="INACTIVE", d=dumps(doc))
    remove_tags(tx, p.arn)
    tx.notify("capacity-provider", p.arn)
    return {"capacityProvider": _render(tx, doc, False)}


_INCLUDE = {"TAGS"}


@ecs.op("DescribeCapacityProviders", write=False)
def describe_capacity_providers(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    include = set(req.get("include", []))
    if include - _INCLUDE:
        raise InvalidParameterException("Invalid include value: only TAGS is supported.")
    with_tags = "TAGS" in include
    in_cluster: set[str] | None = None
    cluster_name: str | None = None
    if req.get("cluster"):
        c = require_cluster(tx, ctx, req["cluster"])
        cluster_name = str(c.name)
        in_cluster = set(loads(c.doc_raw).get("capacityProviders") or [])

    def visible(name: str, doc: Doc | None) -> bool:
        if in_cluster is None:
            return True
        return name in in_cluster or (doc is not None and doc.get("cluster") == cluster_name)

    refs = req.get("capacityProviders")
    if refs:
        if len(refs) > 100:
            raise InvalidParameterException("capacityProviders cannot have more than 100 elements.")
        out: list[Doc] = []
        failures: list[Doc] = []
        for ref in refs:
            name = _name_of(ctx, ref)
            doc: Doc | None = None
            if name in BUILT_IN:
                doc = _built_in_doc(ctx, name)
            elif name:
                p = _find(tx, ctx, name)
                doc = p.doc if p else None
            if doc is None or not visible(doc["name"], doc):
                failures.append({"arn": _arn_for(ctx, ref), "reason": "MISSING"})
            else:
                out.append(_render(tx, doc, with_tags))
        return {"capacityProviders": out, "failures": failures}

    # All of them: custom ACTIVE providers by name, then FARGATE and FARGATE_SPOT.
    n = max_results(req, 10, 10)
    token = decode_token(req.get("nextToken"))
    if token is not None and not (isinstance(token, list) and len(token) == 2
                                  and token[0] in (0, 1) and isinstance(token[1], str)):
        raise InvalidParameterException("Invalid nextToken")
    group, after = (token[0], token[1]) if token else (0, "")
    page: list[tuple[int, str, Doc]] = []
    if group == 0:
        while len(page) <= n:
            rows = tx.all(_LIST, acct=ctx.account_id, r=ctx.region, after=after, n=n + 1)
            for row in rows:
                p = ProviderRow(row)
                after = p.name
                if visible(p.name, p.doc):
                    page.append((0, p.name, p.doc))
            if len(rows) < n + 1:
                break
        after = ""
    for name in BUILT_IN:
        if len(page) > n:
            break
        if (group == 1 and name <= after) or not visible(name, None):
            continue
        page.append((1, name, _built_in_doc(ctx, name)))
    resp: Doc = {"capacityProviders": [_render(tx, d, with_tags) for _, _, d in page[:n]], "failures": []}
    if len(page) > n:
        last = page[n - 1]
        resp["nextToken"] = encode_token([last[0], last[1]])
    return resp
