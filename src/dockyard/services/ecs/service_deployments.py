"""Service deployments and service revisions: the records behind
DescribeServiceDeployments, ListServiceDeployments, DescribeServiceRevisions and
StopServiceDeployment, plus the pieces ``services`` builds on.

Model (the level-triggered service controller of a later issue works on it):

* ``Service.deployments[]`` (inside the service document, PRIMARY first) is what
  the scheduler reconciles: each entry is one ``ecs-svc/<19 digits>`` deployment
  with its desiredCount, rolloutState and failedTasks. Tasks of a deployment
  carry ``startedBy = <deployment id>`` and ``service_name``, so running and
  pending counts are *counted* from the tasks table when read, never stored.
* Every new PRIMARY deployment records one service revision (what it rolls out:
  task definition, launch type or capacity providers, network, load balancers...)
  with ARN ``service-revision/<cluster>/<service>/<the deployment's digits>``, and
  one service deployment ``service-deployment/<cluster>/<service>/<21-char id>``
  (status PENDING/IN_PROGRESS/SUCCESSFUL/STOPPED/..., source and target revisions).
* A controller finishes a service deployment with ``set_status`` (SUCCESSFUL,
  ROLLBACK_*...); ``StopServiceDeployment`` only records STOP_REQUESTED or
  ROLLBACK_REQUESTED for it to act on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from dockyard.api.errors import (
    AwsError,
    ConflictException,
    InvalidParameterException,
    ServiceNotFoundException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs.common import (
    Doc,
    cluster_name_from_arn,
    decode_token,
    dumps,
    encode_token,
    loads,
    max_results,
    require_cluster,
    require_items,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns, ids
from dockyard.state.schema import service_deployments as sdt
from dockyard.state.schema import service_revisions as srt
from dockyard.state.schema import services as st
from dockyard.state.schema import tasks as tt
from dockyard.state.store import Tx, prepare

# Service deployment states in which the deployment still moves (a controller acts on them).
OPEN_STATES = ("PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
# Task lastStatus values that count as pending / running for a service (and keep it DRAINING).
PENDING_TASK_STATES = ("PROVISIONING", "PENDING", "ACTIVATING")
LIVE_TASK_STATES = PENDING_TASK_STATES + ("RUNNING",)

_SVC_EXISTS = prepare(select(st.c.status).where(st.c.arn == bindparam("a")))
_TASK_COUNTS = prepare(
    select(tt.c.started_by, tt.c.last_status, func.count())
    .where(tt.c.cluster_arn == bindparam("c"), tt.c.service_name == bindparam("n"),
           or_(*(tt.c.last_status == s for s in LIVE_TASK_STATES)))
    .group_by(tt.c.started_by, tt.c.last_status))

_REV_INSERT = prepare(insert(srt))
_REV_GET = prepare(select(srt.c.doc).where(srt.c.arn == bindparam("a")))
_REV_PURGE = prepare(delete(srt).where(srt.c.service_arn == bindparam("svc")))

_SD_INSERT = prepare(insert(sdt))
_SD_GET = prepare(select(sdt.c.arn, sdt.c.service_arn, sdt.c.deployment_id, sdt.c.status, sdt.c.doc)
                  .where(sdt.c.arn == bindparam("a")))
_SD_BY_DEPLOYMENT = prepare(select(sdt.c.arn).where(sdt.c.service_arn == bindparam("svc"),
                                                    sdt.c.deployment_id == bindparam("dep")))
_SD_OF_SERVICE = prepare(select(sdt.c.arn, sdt.c.status, sdt.c.created_at)
                         .where(sdt.c.service_arn == bindparam("svc"))
                         .order_by(sdt.c.created_at.desc(), sdt.c.arn.desc()))
_SD_SET = prepare(update(sdt).where(sdt.c.arn == bindparam("a"))
                  .values(status=bindparam("s"), doc=bindparam("d")))
_SD_PURGE = prepare(delete(sdt).where(sdt.c.service_arn == bindparam("svc")))


class ServiceDeploymentNotFoundException(AwsError):
    code = "ServiceDeploymentNotFoundException"


# -- references ----------------------------------------------------------------

def service_arn_for(ctx: Ctx, cluster_arn: str, ref: str) -> str:
    """The ARN a service reference names inside a cluster: a name, a long ARN, or a
    short (pre-2021, ``service/<name>``) ARN, which is read as a name in that cluster."""
    if arns.is_arn(ref):
        a = arns.parse(ref)
        if a is None or a.kind != "service":
            raise InvalidParameterException("Invalid identifier: Unexpected number of separators")
        if "/" in a.resource:
            return ref
        return arns.service(a.region, a.account_id, cluster_name_from_arn(cluster_arn), a.resource)
    return arns.service(ctx.region, ctx.account_id, cluster_name_from_arn(cluster_arn), ref)


def revision_arn_for(service_arn: str, deployment_id: str) -> str:
    """``service-revision/<cluster>/<service>/<digits of ecs-svc/...>``."""
    return service_arn.replace(":service/", ":service-revision/", 1) + "/" + deployment_id.rsplit("/", 1)[-1]


def _new_sd_arn(service_arn: str) -> str:
    return service_arn.replace(":service/", ":service-deployment/", 1) + "/" + ids.url_safe(21)


def _own(ctx: Ctx, arn: str, kind: str) -> bool:
    a = arns.parse(arn)
    return (a is not None and a.kind == kind and a.account_id == ctx.account_id
            and a.region == ctx.region and a.resource.count("/") == 2)


# -- live counts -------------------------------------------------------------

def task_counts(tx: Tx, cluster_arn: str, service_name: str) -> dict[str | None, list[int]]:
    """startedBy -> [running, pending] over the service's tasks that are not stopping."""
    out: dict[str | None, list[int]] = {}
    for started_by, last, n in tx.all(_TASK_COUNTS, c=cluster_arn, n=service_name):
        slot = out.setdefault(started_by, [0, 0])
        slot[0 if last == "RUNNING" else 1] += int(n)
    return out


def circuit_breaker_threshold(desired: int) -> int:
    return min(200, max(3, math.ceil(0.5 * desired)))


# -- recording (called by services) ------------------------------------------

def record(tx: Tx, ctx: Ctx, service: Doc, deployment: Doc, task_definition: Doc | None,
           sources: list[Doc], *, new_service: bool = False) -> tuple[str, Doc]:
    """Record the revision a new PRIMARY ``deployment`` of ``service`` rolls out and its
    service deployment; earlier open service deployments are STOPPED (superseded).
    ``sources`` are the service's other deployments still in Service.deployments.
    Returns the service deployment's ARN and document.

    ``new_service``: the service has no records yet (CreateService), so there is nothing to
    look up or supersede, and the caller inserts the service deployment itself
    (``store``) once the scheduler's first step has moved it on: each row written once.
    """
    now = ctx.now
    svc_arn = service["serviceArn"]
    rev_arn = revision_arn_for(svc_arn, deployment["id"])
    rev: Doc = {"serviceRevisionArn": rev_arn, "serviceArn": svc_arn, "clusterArn": service["clusterArn"],
                "taskDefinition": deployment.get("taskDefinition")}
    for k in ("capacityProviderStrategy", "launchType", "platformVersion", "platformFamily"):
        if k in deployment:
            rev[k] = deployment[k]
    rev["loadBalancers"] = service.get("loadBalancers", [])
    rev["serviceRegistries"] = service.get("serviceRegistries", [])
    for k in ("networkConfiguration", "serviceConnectConfiguration", "volumeConfigurations",
              "vpcLatticeConfigurations"):
        if k in deployment:
            rev[k] = deployment[k]
    if task_definition is not None:
        rev["containerImages"] = [{"containerName": c.get("name"), "image": c.get("image")}
                                  for c in task_definition.get("containerDefinitions", [])]
    rev["guardDutyEnabled"] = False
    rev["createdAt"] = now
    if new_service or tx.one(_REV_GET, a=rev_arn) is None:
        tx.insert(_REV_INSERT, arn=rev_arn, service_arn=svc_arn, created_at=now, doc=dumps(rev))
    if not new_service:
        supersede(tx, now, svc_arn, "Service deployment stopped: a newer service deployment started.")
    dc = service.get("deploymentConfiguration", {})
    breaker = dc.get("deploymentCircuitBreaker") or {}
    alarms = dc.get("alarms") or {}
    sd_arn = _new_sd_arn(svc_arn)
    sd: Doc = {"serviceDeploymentArn": sd_arn, "serviceArn": svc_arn, "clusterArn": service["clusterArn"],
               "createdAt": now, "startedAt": now, "updatedAt": now}
    if sources:
        sd["sourceServiceRevisions"] = [
            {"arn": revision_arn_for(svc_arn, d["id"]), "requestedTaskCount": d.get("desiredCount", 0),
             "runningTaskCount": d.get("runningCount", 0), "pendingTaskCount": d.get("pendingCount", 0)}
            for d in sources]
    sd["targetServiceRevision"] = {"arn": rev_arn, "requestedTaskCount": deployment.get("desiredCount", 0),
                                   "runningTaskCount": 0, "pendingTaskCount": 0}
    sd["status"] = "IN_PROGRESS"
    sd["deploymentConfiguration"] = dc
    sd["deploymentCircuitBreaker"] = {
        "status": "MONITORING" if breaker.get("enable") else "DISABLED", "failureCount": 0,
        "threshold": circuit_breaker_threshold(deployment.get("desiredCount", 0))}
    sd["alarms"] = ({"status": "MONITORING", "alarmNames": alarms.get("alarmNames", []),
                     "triggeredAlarmNames": []} if alarms.get("enable") else {"status": "DISABLED"})
    if not new_service:
        store(tx, sd, deployment["id"])
    return sd_arn, sd


def store(tx: Tx, sd: Doc, deployment_id: str) -> None:
    """Insert a service deployment document ``record`` built."""
    sd_arn = sd["serviceDeploymentArn"]
    tx.insert(_SD_INSERT, arn=sd_arn, service_arn=sd["serviceArn"], deployment_id=deployment_id,
              status=sd["status"], created_at=sd["createdAt"], doc=dumps(sd))
    tx.notify("service-deployment", sd_arn)


def rewrite(tx: Tx, sd_arn: str, fn: Any) -> Doc | None:
    """Apply ``fn`` to a service deployment's document and save it (controller API)."""
    row = tx.one(_SD_GET, a=sd_arn)
    if row is None:
        return None
    doc = loads(row[4])
    fn(doc)
    tx.run(_SD_SET, a=sd_arn, s=doc["status"], d=dumps(doc))
    tx.notify("service-deployment", sd_arn)
    return doc


def set_status(tx: Tx, now: float, sd_arn: str, status: str, reason: str | None = None) -> Doc | None:
    """Move a service deployment to ``status`` (controller API); finished states stamp
    finishedAt (SUCCESSFUL, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED) or stoppedAt (STOPPED)."""
    return rewrite(tx, sd_arn, status_change(now, status, reason))


def status_change(now: float, status: str, reason: str | None = None) -> Callable[[Doc], None]:
    """What ``set_status`` does to the document."""
    def apply(doc: Doc) -> None:
        doc["status"] = status
        doc["updatedAt"] = now
        if reason is not None:
            doc["statusReason"] = reason
        if status == "STOPPED":
            doc["stoppedAt"] = now
        elif status in ("SUCCESSFUL", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"):
            doc["finishedAt"] = now
        if status not in OPEN_STATES:
            for monitor in (doc.get("deploymentCircuitBreaker"), doc.get("alarms")):
                if monitor and monitor.get("status") == "MONITORING":
                    monitor["status"] = "MONITORING_COMPLETE"
    return apply


def supersede(tx: Tx, now: float, service_arn: str, reason: str) -> None:
    """STOP every open service deployment of the service (a newer one starts, or the service goes)."""
    for arn, status, _ in tx.all(_SD_OF_SERVICE, svc=service_arn):
        if status in OPEN_STATES:
            set_status(tx, now, arn, "STOPPED", reason)


def retarget(tx: Tx, now: float, service_arn: str, deployment_id: str, desired: int) -> None:
    """desiredCount of the PRIMARY changed: the target revision's requestedTaskCount follows."""
    row = tx.one(_SD_BY_DEPLOYMENT, svc=service_arn, dep=deployment_id)
    if row is None:
        return

    def apply(doc: Doc) -> None:
        doc["targetServiceRevision"]["requestedTaskCount"] = desired
        doc["updatedAt"] = now
    rewrite(tx, row[0], apply)


def status_of(tx: Tx, sd_arn: str) -> tuple[str, Doc] | None:
    """A service deployment's status and document."""
    row = tx.one(_SD_GET, a=sd_arn)
    return (row[3], loads(row[4])) if row else None


def revision(tx: Tx, revision_arn: str) -> Doc | None:
    row = tx.one(_REV_GET, a=revision_arn)
    return loads(row[0]) if row else None


def arn_of_deployment(tx: Tx, service_arn: str, deployment_id: str) -> str | None:
    row = tx.one(_SD_BY_DEPLOYMENT, svc=service_arn, dep=deployment_id)
    return row[0] if row else None


def purge(tx: Tx, service_arn: str) -> None:
    """Forget the records of a deleted service whose name is being used again."""
    tx.run(_SD_PURGE, svc=service_arn)
    tx.run(_REV_PURGE, svc=service_arn)


# -- rendering -----------------------------------------------------------------

def _render_sd(tx: Tx, status: str, doc: Doc, dep_id: str) -> Doc:
    """Open deployments report live task counts of their revisions."""
    if status not in OPEN_STATES:
        return doc
    svc = arns.parse(doc["serviceArn"])
    if svc is None:
        return doc
    cluster_name, service_name = svc.resource.split("/", 1)
    cluster_arn = arns.cluster(svc.region, svc.account_id, cluster_name)
    counts = task_counts(tx, cluster_arn, service_name)
    prefix = "ecs-svc/"

    def fill(summary: Doc) -> None:
        running, pending = counts.get(prefix + summary["arn"].rsplit("/", 1)[-1], [0, 0])
        summary["runningTaskCount"] = running
        summary["pendingTaskCount"] = pending

    target = doc.get("targetServiceRevision")
    if target:
        running, pending = counts.get(dep_id, [0, 0])
        target["runningTaskCount"] = running
        target["pendingTaskCount"] = pending
    for s in doc.get("sourceServiceRevisions", []):
        fill(s)
    return doc


# -- operations ----------------------------------------------------------------

@ecs.op("DescribeServiceDeployments", write=False)
def describe_service_deployments(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    refs = req["serviceDeploymentArns"]
    require_items(refs, "serviceDeploymentArns", 20)
    out: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        row = tx.one(_SD_GET, a=ref) if _own(ctx, ref, "service-deployment") else None
        if row is None:
            failures.append({"arn": ref, "reason": "MISSING"})
            continue
        out.append(_render_sd(tx, row[3], loads(row[4]), row[2]))
    return {"serviceDeployments": out, "failures": failures}


@ecs.op("DescribeServiceRevisions", write=False)
def describe_service_revisions(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    refs = req["serviceRevisionArns"]
    require_items(refs, "serviceRevisionArns", 20)
    out: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        row = tx.one(_REV_GET, a=ref) if _own(ctx, ref, "service-revision") else None
        if row is None:
            failures.append({"arn": ref, "reason": "MISSING"})
        else:
            out.append(loads(row[0]))
    return {"serviceRevisions": out, "failures": failures}


_BRIEF = ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt", "createdAt", "finishedAt")


@ecs.op("ListServiceDeployments", write=False)
def list_service_deployments(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    svc_arn = service_arn_for(ctx, cluster.arn, req["service"])
    if tx.one(_SVC_EXISTS, a=svc_arn) is None:
        raise ServiceNotFoundException("Service not found.")
    n = max_results(req, 20)
    after = decode_token(req.get("nextToken"))
    if after is not None and not (isinstance(after, list) and len(after) == 2):
        raise InvalidParameterException("Invalid nextToken")
    statuses = set(req.get("status") or [])
    window = req.get("createdAt") or {}
    lo, hi = window.get("after"), window.get("before")
    picked: list[tuple[str, float]] = []
    for arn, status, created in tx.all(_SD_OF_SERVICE, svc=svc_arn):  # newest first
        if after is not None and (created, arn) >= (after[0], after[1]):
            continue
        if statuses and status not in statuses:
            continue
        if (lo is not None and created < lo) or (hi is not None and created > hi):
            continue
        picked.append((arn, created))
        if len(picked) > n:
            break
    out: list[Doc] = []
    for arn, _ in picked[:n]:
        row = tx.one(_SD_GET, a=arn)
        assert row is not None
        doc = loads(row[4])
        brief = {k: doc[k] for k in _BRIEF if k in doc}
        brief["targetServiceRevisionArn"] = doc["targetServiceRevision"]["arn"]
        brief["status"] = doc["status"]
        if "statusReason" in doc:
            brief["statusReason"] = doc["statusReason"]
        out.append(brief)
    resp: Doc = {"serviceDeployments": out}
    if len(picked) > n:
        last_arn, last_created = picked[n - 1]
        resp["nextToken"] = encode_token([last_created, last_arn])
    return resp


@ecs.op("StopServiceDeployment", write=True)
def stop_service_deployment(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    """Records the request (STOP_REQUESTED for ABORT, ROLLBACK_REQUESTED for ROLLBACK,
    the default); the service controller carries it out. A deployment that is no
    longer in progress cannot be stopped: ConflictException."""
    arn = req["serviceDeploymentArn"]
    row = tx.one(_SD_GET, a=arn) if _own(ctx, arn, "service-deployment") else None
    if row is None:
        raise ServiceDeploymentNotFoundException(
            "The service deployment ARN that you specified doesn't exist.")
    if row[3] not in ("PENDING", "IN_PROGRESS"):
        raise ConflictException(f"The service deployment is {row[3]} and can no longer be stopped.")
    stop_type = req.get("stopType", "ROLLBACK")
    doc = loads(row[4])
    if stop_type == "ROLLBACK":
        sources = doc.get("sourceServiceRevisions") or []
        if not sources:
            raise InvalidParameterException(
                "The service deployment cannot be rolled back: there is no previous service revision.")

        def apply(d: Doc) -> None:
            d["status"] = "ROLLBACK_REQUESTED"
            d["updatedAt"] = ctx.now
            d["rollback"] = {"reason": "Rollback requested with StopServiceDeployment.",
                             "startedAt": ctx.now, "serviceRevisionArn": sources[0]["arn"]}
    else:
        def apply(d: Doc) -> None:
            d["status"] = "STOP_REQUESTED"
            d["updatedAt"] = ctx.now
    rewrite(tx, arn, apply)
    return {"serviceDeploymentArn": arn}
