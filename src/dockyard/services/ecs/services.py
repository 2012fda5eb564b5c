"""ECS services: CreateService, UpdateService, DeleteService, DescribeServices,
ListServices, ListServicesByNamespace.

These calls record desired state only. A service row holds the Service in its
wire shape: its settings, ``deployments`` (PRIMARY first, each an ``ecs-svc/…``
id with the task definition, desiredCount and rollout state it aims for) and
the newest 100 ``events``. The service controller (a later issue) reads ACTIVE
and DRAINING services, starts and stops tasks with ``startedBy`` set to a
deployment id, and writes back through ``add_event``, ``save_doc`` and
``settle_draining``; ``service_deployments.set_status`` finishes service
deployments. runningCount and pendingCount are never stored: they are counted
from the service's tasks each time the service is read.

Choices worth knowing:

* A new deployment starts when UpdateService *changes* one of taskDefinition,
  networkConfiguration, platformVersion, loadBalancers, serviceRegistries,
  serviceConnectConfiguration, volumeConfigurations, vpcLatticeConfigurations,
  or when forceNewDeployment is true. The old PRIMARY becomes ACTIVE; a
  desiredCount change only retargets the PRIMARY.
* DeleteService answers the service as DRAINING, as ECS does. When none of its
  tasks is still pending or running the service becomes INACTIVE in the same
  transaction (what ECS shows moments later when nothing runs, and what
  Terraform waits for); otherwise it stays DRAINING until ``settle_draining``
  sees its last task stop.
* Only the ECS deployment controller gets ``deployments``; CODE_DEPLOY and
  EXTERNAL services are recorded with no deployments and no task sets yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update

from dockyard.api.errors import (
    ClientException,
    InvalidParameterException,
    PlatformUnknownException,
    ServiceNotActiveException,
    ServiceNotFoundException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import capacity_providers, idempotency, quotas, service_deployments, task_definitions
from dockyard.services.ecs.common import (
    NAME_RE,
    ClusterRow,
    Doc,
    bump_cluster,
    dumps,
    encode_token,
    get_tags,
    loads,
    max_results,
    put_tags,
    remove_tags,
    require_cluster,
    require_items,
    string_token,
    validate_tags,
)
from dockyard.services.ecs.registry import ecs
from dockyard.services.ecs.service_deployments import service_arn_for, task_counts
from dockyard.state import arns, ids
from dockyard.state.schema import services as st
from dockyard.state.store import Tx, prepare

MAX_EVENTS = 100
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
FARGATE_PLATFORM_VERSIONS = ("LATEST", "1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0")
SERVICE_LINKED_ROLE = "role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"

# Fields of a service revision: changing one of them starts a new deployment.
DEPLOYMENT_FIELDS = ("taskDefinition", "platformVersion", "networkConfiguration", "loadBalancers",
                     "serviceRegistries", "serviceConnectConfiguration", "volumeConfigurations",
                     "vpcLatticeConfigurations")
# Kept on the deployments (the Service shape has no place for them).
_DEPLOYMENT_ONLY = ("serviceConnectConfiguration", "volumeConfigurations", "vpcLatticeConfigurations")
# UpdateService members copied onto the desired spec as given.
_UPDATABLE = ("desiredCount", "taskDefinition", "networkConfiguration", "placementConstraints",
              "placementStrategy", "platformVersion", "healthCheckGracePeriodSeconds", "deploymentController",
              "enableExecuteCommand", "enableECSManagedTags", "loadBalancers", "propagateTags",
              "serviceRegistries", "serviceConnectConfiguration", "volumeConfigurations",
              "vpcLatticeConfigurations", "availabilityZoneRebalancing")

_INSERT = prepare(insert(st))
_GET = prepare(select(st.c.arn, st.c.cluster_arn, st.c.name, st.c.status, st.c.doc)
               .where(st.c.arn == bindparam("a")))
_SAVE = prepare(update(st).where(st.c.arn == bindparam("a"))
                .values(status=bindparam("s"), namespace=bindparam("ns"), launch_type=bindparam("lt"),
                        doc=bindparam("d")))
_RECREATE = prepare(update(st).where(st.c.arn == bindparam("a"))
                    .values(status=bindparam("s"), namespace=bindparam("ns"), launch_type=bindparam("lt"),
                            scheduling_strategy=bindparam("ss"), created_at=bindparam("t"),
                            doc=bindparam("d")))


def _list_stmt(by_launch: bool, by_strategy: bool) -> Any:
    q = select(st.c.arn).where(st.c.cluster_arn == bindparam("c"), st.c.status == "ACTIVE",
                               st.c.name > bindparam("after"))
    if by_launch:
        q = q.where(st.c.launch_type == bindparam("lt"))
    if by_strategy:
        q = q.where(st.c.scheduling_strategy == bindparam("ss"))
    return prepare(q.order_by(st.c.name).limit(bindparam("n")))


_LIST = {(lt, ss): _list_stmt(lt, ss) for lt in (False, True) for ss in (False, True)}
_BY_NAMESPACE = prepare(
    select(st.c.arn).where(st.c.namespace == bindparam("ns"), st.c.status == "ACTIVE",
                           st.c.arn > bindparam("after"), st.c.cluster_arn.like(bindparam("pfx")))
    .order_by(st.c.arn).limit(bindparam("n")))


class ServiceRow:
    __slots__ = ("arn", "cluster_arn", "doc_raw", "name", "status")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.arn, self.cluster_arn, self.name, self.status, self.doc_raw = row


# -- lookups -------------------------------------------------------------------

def load(tx: Tx, arn: str) -> ServiceRow | None:
    row = tx.one(_GET, a=arn)
    return ServiceRow(row) if row else None


def find_service(tx: Tx, ctx: Ctx, cluster: ClusterRow, ref: str) -> ServiceRow | None:
    """The service ``ref`` (name or ARN) names in ``cluster``, in any status."""
    try:
        arn = service_arn_for(ctx, cluster.arn, ref)
    except InvalidParameterException:
        return None
    s = load(tx, arn)
    return s if s is not None and s.cluster_arn == cluster.arn else None


def require_service(tx: Tx, ctx: Ctx, cluster: ClusterRow, ref: str) -> ServiceRow:
    s = find_service(tx, ctx, cluster, ref)
    if s is None:
        raise ServiceNotFoundException("Service not found.")
    return s


# -- rendering and saving ------------------------------------------------------

def render(tx: Tx, s: ServiceRow, *, tags: bool = False, doc: Doc | None = None, no_tasks: bool = False) -> Doc:
    """The Service as the API answers it: task counts filled in from the tasks table
    (``no_tasks``: the service is being created and has none yet)."""
    doc = loads(s.doc_raw) if doc is None else doc
    doc.pop("_ctl", None)  # the service scheduler's bookkeeping
    counts = task_counts(tx, s.cluster_arn, s.name) if s.status != "INACTIVE" and not no_tasks else {}
    doc["runningCount"] = sum(c[0] for c in counts.values())
    doc["pendingCount"] = sum(c[1] for c in counts.values())
    for d in doc.get("deployments", []):
        running, pending = counts.get(d["id"], [0, 0])
        d["runningCount"] = running
        d["pendingCount"] = pending
    if tags:
        doc["tags"] = get_tags(tx, s.arn)
    return doc


def _namespace_of(doc: Doc) -> str | None:
    deps = doc.get("deployments") or []
    scc = deps[0].get("serviceConnectConfiguration") if deps else None
    return scc.get("namespace") if scc and scc.get("enabled") else None


def save_doc(tx: Tx, s: ServiceRow, doc: Doc, *, notify: bool = True) -> None:
    """Write the service document back (controller API); status comes from ``doc``.
    The service scheduler saves with ``notify=False``: its own step needs no second look."""
    raw = dumps(doc)
    tx.run(_SAVE, a=s.arn, s=doc["status"], ns=_namespace_of(doc), lt=doc.get("launchType"), d=raw)
    s.status = doc["status"]
    s.doc_raw = raw
    if notify:
        tx.notify("service", s.arn)


def add_event(tx: Tx, now: float, service_arn: str, message: str) -> None:
    """Prepend a service event (controller API); the newest 100 are kept."""
    s = load(tx, service_arn)
    if s is None:
        return
    doc = loads(s.doc_raw)
    doc["events"] = [{"id": ids.uuid(), "createdAt": now, "message": message}] + doc.get("events", [])
    del doc["events"][MAX_EVENTS:]
    save_doc(tx, s, doc)


def settle_draining(tx: Tx, now: float, service_arn: str) -> bool:
    """DRAINING -> INACTIVE once none of its tasks is pending or running (controller API).
    Returns True when the service is INACTIVE afterwards."""
    s = load(tx, service_arn)
    if s is None or s.status == "INACTIVE":
        return True
    if s.status != "DRAINING" or _has_live_tasks(tx, s):
        return False
    doc = loads(s.doc_raw)
    _make_inactive(tx, now, s, doc)
    bump_cluster(tx, s.cluster_arn, draining_services=-1)
    return True


def _has_live_tasks(tx: Tx, s: ServiceRow) -> bool:
    return any(sum(c) for c in task_counts(tx, s.cluster_arn, s.name).values())


def _make_inactive(tx: Tx, now: float, s: ServiceRow, doc: Doc) -> None:
    doc["status"] = "INACTIVE"
    save_doc(tx, s, doc)
    service_deployments.supersede(tx, now, s.arn, "Service deployment stopped: the service was deleted.")


# -- validation and normalisation ----------------------------------------------

def _role_arn(ctx: Ctx, role: str | None) -> str:
    iam = f"arn:{arns.PARTITION}:iam::{ctx.account_id}:"
    if not role:
        return iam + SERVICE_LINKED_ROLE
    if role.startswith("arn:"):
        return role
    return iam + "role" + (role if role.startswith("/") else "/" + role)


def _default_deployment_configuration(scheduling: str) -> Doc:
    mx, mn = (100, 0) if scheduling == "DAEMON" else (200, 100)
    return {"deploymentCircuitBreaker": {"enable": False, "rollback": False},
            "maximumPercent": mx, "minimumHealthyPercent": mn}


def _merge_deployment_configuration(current: Doc, given: Doc | None, scheduling: str) -> Doc:
    dc = dict(current)
    for k, v in (given or {}).items():
        dc[k] = v
    if scheduling == "DAEMON" and (given or {}).get("maximumPercent", 100) != 100:
        raise InvalidParameterException(
            "The maximumPercent parameter must be 100 for services that use the DAEMON scheduling strategy.")
    mn, mx = dc.get("minimumHealthyPercent"), dc.get("maximumPercent")
    if mn is not None and not 0 <= mn <= 100:
        raise InvalidParameterException("minimumHealthyPercent must be between 0 and 100.")
    if mx is not None and mx < 0:
        raise InvalidParameterException("maximumPercent must not be negative.")
    if mn is not None and mx is not None and mx < mn:
        raise InvalidParameterException("maximumPercent must be greater than or equal to minimumHealthyPercent.")
    return dc


def _placement_constraints(items: list[Doc]) -> list[Doc]:
    if len(items) > 10:
        raise InvalidParameterException("Placement constraints cannot have more than 10 elements.")
    out: list[Doc] = []
    for pc in items:
        kind, expr = pc.get("type"), pc.get("expression")
        if kind == "distinctInstance":
            if expr:
                raise InvalidParameterException(
                    "An expression is not allowed for placement constraints of type distinctInstance.")
            out.append({"type": kind})
        elif kind == "memberOf":
            if not expr:
                raise InvalidParameterException(
                    "An expression is required for placement constraints of type memberOf.")
            from dockyard.scheduler.query import QuerySyntaxError, compile_query
            try:
                compile_query(expr)
            except QuerySyntaxError as err:
                raise InvalidParameterException(f"Invalid placement constraint expression: {err}") from None
            out.append({"type": kind, "expression": expr})
        else:
            raise InvalidParameterException("Placement constraint type must be distinctInstance or memberOf.")
    return out


def _placement_strategy(items: list[Doc]) -> list[Doc]:
    if len(items) > 5:
        raise InvalidParameterException("Placement strategies cannot have more than 5 elements.")
    out: list[Doc] = []
    for ps in items:
        kind, field = ps.get("type"), ps.get("field")
        if kind == "random":
            out.append({"type": kind})
        elif kind == "spread":
            if not field:
                raise InvalidParameterException("A field is required for placement strategies of type spread.")
            # "host" is an alias ECS stores as instanceId.
            out.append({"type": kind, "field": "instanceId" if field.lower() in ("host", "instanceid")
                        else field})
        elif kind == "binpack":
            if not field or field.lower() not in ("cpu", "memory"):
                raise InvalidParameterException(
                    "The field for placement strategies of type binpack must be cpu or memory.")
            out.append({"type": kind, "field": field.upper()})
        else:
            raise InvalidParameterException("Placement strategy type must be random, spread or binpack.")
    return out


def _network(nc: Doc | None) -> Doc | None:
    if not nc or not nc.get("awsvpcConfiguration"):
        return None
    a = nc["awsvpcConfiguration"]
    subnets = a.get("subnets") or []
    if not subnets:
        raise InvalidParameterException("subnets can not be empty.")
    if len(subnets) > 16:
        raise InvalidParameterException("subnets can have at most 16 items.")
    out: Doc = {"subnets": list(subnets)}
    if a.get("securityGroups") is not None:
        if len(a["securityGroups"]) > 5:
            raise InvalidParameterException("securityGroups can have at most 5 items.")
        out["securityGroups"] = list(a["securityGroups"])
    out["assignPublicIp"] = a.get("assignPublicIp") or "DISABLED"
    return {"awsvpcConfiguration": out}


def _is_fargate(spec: Doc) -> bool:
    if spec.get("launchType") == "FARGATE":
        return True
    return any(s.get("capacityProvider") in FARGATE_PROVIDERS for s in spec.get("capacityProviderStrategy") or [])


def _check_load_balancers(lbs: list[Doc], td: Doc) -> None:
    containers = {c.get("name"): c for c in td.get("containerDefinitions", [])}
    for lb in lbs:
        if not lb.get("targetGroupArn") and not lb.get("loadBalancerName"):
            raise InvalidParameterException("A load balancer needs either a targetGroupArn or a loadBalancerName.")
        name, port = lb.get("containerName"), lb.get("containerPort")
        if name not in containers:
            raise InvalidParameterException(f"The container {name} does not exist in the task definition.")
        ports = [pm.get("containerPort") for pm in containers[name].get("portMappings", [])]
        if port not in ports:
            raise InvalidParameterException(
                f"The container {name} did not have a container port {port} defined.")


def _resolve(tx: Tx, ctx: Ctx, c: ClusterRow, spec: Doc, *, td_given: bool) -> Doc | None:
    """Validate the desired ``spec`` (service-level wire fields plus the deployment-only
    ones) in place, filling in what ECS derives. Returns the task definition."""
    cluster_doc = loads(c.doc_raw)
    scheduling = spec["schedulingStrategy"]
    controller = spec["deploymentController"]["type"]

    if spec.get("launchType") and spec.get("capacityProviderStrategy"):
        raise InvalidParameterException("Specifying both a launch type and capacity provider strategy is not "
                                        "supported. Remove one and try again.")
    if not spec.get("launchType") and not spec.get("capacityProviderStrategy"):
        spec.pop("capacityProviderStrategy", None)
        default = cluster_doc.get("defaultCapacityProviderStrategy") or []
        if default and controller != "EXTERNAL":
            spec["capacityProviderStrategy"] = default
        elif controller != "EXTERNAL":
            spec["launchType"] = "EC2"
    if spec.get("capacityProviderStrategy"):
        spec.pop("launchType", None)
        capacity_providers.check_strategy(spec["capacityProviderStrategy"],
                                          cluster_doc.get("capacityProviders", []))
    fargate = _is_fargate(spec)

    if spec.get("platformVersion") is not None and not fargate:
        kind = spec.get("launchType") or "EC2"
        raise InvalidParameterException(f"The platform version must be null when specifying an {kind} launch type.")
    if fargate:
        spec["platformVersion"] = spec.get("platformVersion") or "LATEST"
        if spec["platformVersion"] not in FARGATE_PLATFORM_VERSIONS:
            raise PlatformUnknownException("The specified platform version does not exist.")

    if scheduling == "DAEMON":
        if spec.get("placementStrategy"):
            raise InvalidParameterException(
                "Placement strategies are not supported for services that use the DAEMON scheduling strategy.")
        if fargate:
            raise InvalidParameterException("The DAEMON scheduling strategy is not supported by Fargate.")
        if controller != "ECS":
            raise InvalidParameterException(
                "The DAEMON scheduling strategy is supported only by the ECS deployment controller.")
    elif spec.get("desiredCount") is None:
        raise InvalidParameterException(
            "desiredCount is required for services that use the REPLICA scheduling strategy.")
    elif spec["desiredCount"] < 0:
        raise InvalidParameterException("desiredCount must not be negative.")

    spec["placementConstraints"] = _placement_constraints(spec.get("placementConstraints") or [])
    spec["placementStrategy"] = _placement_strategy(spec.get("placementStrategy") or [])
    grace = spec.get("healthCheckGracePeriodSeconds") or 0
    if not 0 <= grace <= 2147483647:
        raise InvalidParameterException("healthCheckGracePeriodSeconds must be between 0 and 2147483647.")
    spec["healthCheckGracePeriodSeconds"] = grace

    nc = _network(spec.get("networkConfiguration"))
    if nc is None:
        spec.pop("networkConfiguration", None)
    else:
        spec["networkConfiguration"] = nc
        if nc["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED" and not fargate:
            raise InvalidParameterException("Assign public IP is not supported for this launch type.")

    td: Doc | None = None
    ref = spec.get("taskDefinition")
    if ref:
        td = task_definitions.lookup(tx, ctx, ref)
        if td is None and td_given:
            raise ClientException("Unable to describe task definition.")
        if td is not None and td_given and td.get("status") != "ACTIVE":
            raise ClientException("TaskDefinition is inactive")
        if td is not None:
            spec["taskDefinition"] = td["taskDefinitionArn"]
    elif controller in ("ECS", "CODE_DEPLOY"):
        raise InvalidParameterException(
            "A task definition is required for services that use the ECS or CODE_DEPLOY deployment controller.")
    if td is not None:
        need = "FARGATE" if fargate else (spec.get("launchType") or "EC2")
        compat = td.get("compatibilities")
        if compat is not None and need not in compat:
            raise InvalidParameterException(f"Task definition does not support launch_type {need}.")
        awsvpc = td.get("networkMode") == "awsvpc"
        if awsvpc and nc is None:
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        if nc is not None and not awsvpc:
            raise InvalidParameterException(
                "Network Configuration is not valid for the given networkMode of this task definition.")
        _check_load_balancers(spec.get("loadBalancers") or [], td)

    scc = spec.get("serviceConnectConfiguration")
    if scc and scc.get("enabled") and not scc.get("namespace"):
        ns = (cluster_doc.get("serviceConnectDefaults") or {}).get("namespace")
        if not ns:
            raise InvalidParameterException("Service Connect requires a namespace: set one in the service's "
                                            "serviceConnectConfiguration or the cluster's serviceConnectDefaults.")
        spec["serviceConnectConfiguration"] = {"enabled": True, "namespace": ns,
                                               **{k: v for k, v in scc.items() if k not in ("enabled", "namespace")}}
    return td


def _platform_family(td: Doc | None) -> str:
    family = ((td or {}).get("runtimePlatform") or {}).get("operatingSystemFamily")
    return family if family and family != "LINUX" else "Linux"


def _new_deployment(ctx: Ctx, spec: Doc, td: Doc | None) -> Doc:
    dep_id = ids.deployment_id()
    now = ctx.now
    d: Doc = {"id": dep_id, "status": "PRIMARY", "taskDefinition": spec.get("taskDefinition"),
              "desiredCount": spec.get("desiredCount") or 0, "pendingCount": 0, "runningCount": 0,
              "failedTasks": 0, "createdAt": now, "updatedAt": now}
    if spec.get("capacityProviderStrategy"):
        d["capacityProviderStrategy"] = spec["capacityProviderStrategy"]
    elif spec.get("launchType"):
        d["launchType"] = spec["launchType"]
    if _is_fargate(spec):
        family = _platform_family(td)
        pv = spec["platformVersion"]
        d["platformVersion"] = ("1.4.0" if family == "Linux" else "1.0.0") if pv == "LATEST" else pv
        d["platformFamily"] = family
    if "networkConfiguration" in spec:
        d["networkConfiguration"] = spec["networkConfiguration"]
    d["rolloutState"] = "IN_PROGRESS"
    d["rolloutStateReason"] = f"ECS deployment {dep_id} in progress."
    for k in _DEPLOYMENT_ONLY:
        if spec.get(k) is not None:
            d[k] = spec[k]
    return d


def _service_doc(spec: Doc, td: Doc | None) -> Doc:
    """The Service document in ECS's field order (runningCount/pendingCount filled on read)."""
    doc: Doc = {k: spec[k] for k in ("serviceArn", "serviceName", "clusterArn")}
    doc["loadBalancers"] = spec.get("loadBalancers") or []
    doc["serviceRegistries"] = spec.get("serviceRegistries") or []
    doc["status"] = spec["status"]
    doc["desiredCount"] = spec.get("desiredCount") or 0
    doc["runningCount"] = 0
    doc["pendingCount"] = 0
    if spec.get("capacityProviderStrategy"):
        doc["capacityProviderStrategy"] = spec["capacityProviderStrategy"]
    elif spec.get("launchType"):
        doc["launchType"] = spec["launchType"]
    if spec.get("platformVersion"):
        doc["platformVersion"] = spec["platformVersion"]
        doc["platformFamily"] = _platform_family(td)
    if spec.get("taskDefinition"):
        doc["taskDefinition"] = spec["taskDefinition"]
    for k in ("deploymentConfiguration", "deployments", "roleArn", "events", "createdAt",
              "currentServiceDeployment", "placementConstraints", "placementStrategy", "networkConfiguration",
              "healthCheckGracePeriodSeconds", "schedulingStrategy", "deploymentController", "createdBy",
              "enableECSManagedTags", "propagateTags", "enableExecuteCommand", "availabilityZoneRebalancing",
              "_ctl"):
        if spec.get(k) is not None:
            doc[k] = spec[k]
    return doc


def _spec_of(doc: Doc) -> Doc:
    """The desired spec a stored service document describes (inverse of ``_service_doc``)."""
    spec = {k: v for k, v in doc.items() if k not in ("runningCount", "pendingCount", "platformFamily")}
    primary = (doc.get("deployments") or [{}])[0]
    for k in _DEPLOYMENT_ONLY:
        if k in primary:
            spec[k] = primary[k]
    return spec


def _start_deployment(tx: Tx, ctx: Ctx, spec: Doc, td: Doc | None, *, new_service: bool = False) -> Doc:
    """Put a new PRIMARY deployment on ``spec`` (older ones become ACTIVE) and record it;
    returns the service deployment (``new_service``: not stored yet, see ``record``)."""
    dep = _new_deployment(ctx, spec, td)
    older = spec.get("deployments") or []
    for d in older:
        if d["status"] == "PRIMARY":
            d["status"] = "ACTIVE"
            d["updatedAt"] = ctx.now
    spec["deployments"] = [dep] + older
    spec["currentServiceDeployment"], sd = service_deployments.record(tx, ctx, spec, dep, td, older,
                                                                      new_service=new_service)
    return sd


# -- operations ----------------------------------------------------------------

@ecs.op("CreateService", write=True)
def create_service(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name = req["serviceName"]
    if not NAME_RE.match(name):
        raise InvalidParameterException("Service name must be 1-255 characters: letters, numbers, hyphens and "
                                        "underscores.")
    token = req.get("clientToken")
    if token is not None:
        idempotency.check_token(token, 36)
    c = require_cluster(tx, ctx, req.get("cluster"))
    arn = arns.service(ctx.region, ctx.account_id, c.name, name)
    existing = load(tx, arn)
    req_hash = idempotency.request_hash(req, cluster=c.arn) if token is not None else None
    if existing is not None and existing.status != "INACTIVE":
        if token is not None and existing.status == "ACTIVE":
            seen = idempotency.seen(tx, ctx, "CreateService", token)
            if seen is not None and seen[0] == req_hash and seen[1].decode() == arn:
                return {"service": render(tx, existing, tags=True)}
        raise InvalidParameterException("Creation of service was not idempotent.")

    scheduling = req.get("schedulingStrategy") or "REPLICA"
    controller = req.get("deploymentController") or {"type": "ECS"}
    if scheduling == "DAEMON" and (req.get("desiredCount") or 0) > 0:
        raise InvalidParameterException("The daemon scheduling strategy does not support a desired count for "
                                        "services.")
    tags = req.get("tags") or []
    validate_tags(tags)
    spec: Doc = {k: req[k] for k in ("taskDefinition", "loadBalancers", "serviceRegistries", "desiredCount",
                                     "launchType", "capacityProviderStrategy", "platformVersion",
                                     "placementConstraints", "placementStrategy", "networkConfiguration",
                                     "healthCheckGracePeriodSeconds", "serviceConnectConfiguration",
                                     "volumeConfigurations", "vpcLatticeConfigurations") if k in req}
    spec.update(serviceArn=arn, serviceName=name, clusterArn=c.arn, status="ACTIVE",
                schedulingStrategy=scheduling, deploymentController=controller)
    if scheduling == "DAEMON":
        spec["desiredCount"] = 0
    spec["deploymentConfiguration"] = _merge_deployment_configuration(
        _default_deployment_configuration(scheduling), req.get("deploymentConfiguration"), scheduling)
    td = _resolve(tx, ctx, c, spec, td_given=True)
    quotas.check(tx, ctx, "services_per_cluster", c.active_services)
    spec.update(roleArn=_role_arn(ctx, req.get("role")), events=[], createdAt=ctx.now,
                createdBy=ctx.principal_arn, enableECSManagedTags=bool(req.get("enableECSManagedTags")),
                propagateTags=req.get("propagateTags") or "NONE",
                enableExecuteCommand=bool(req.get("enableExecuteCommand")),
                availabilityZoneRebalancing=req.get("availabilityZoneRebalancing")
                or ("DISABLED" if scheduling == "DAEMON" else "ENABLED"))

    if existing is not None:  # a deleted service's name comes back under the same ARN
        service_deployments.purge(tx, arn)
        remove_tags(tx, arn)
    spec["deployments"] = []
    sd: Doc | None = None
    if controller["type"] == "ECS":
        sd = _start_deployment(tx, ctx, spec, td, new_service=True)
    doc = _service_doc(spec, td)
    raw = dumps(doc)
    if tags:
        put_tags(tx, arn, tags)
    if token is not None and req_hash is not None:
        idempotency.remember(tx, ctx, "CreateService", token, req_hash, arn.encode(), replace=True)
    bump_cluster(tx, c.arn, active_services=1)
    tx.notify("service", arn)
    row = ServiceRow((arn, c.arn, name, "ACTIVE", raw))
    # The answer shows the service as created (rolloutState IN_PROGRESS, no tasks yet, as ECS
    # answers).
    out = render(tx, row, tags=bool(tags), no_tasks=True)
    # The scheduler's first step then runs in this same transaction, which spares a second group
    # commit per CreateService, on what this call holds: the service row and its service
    # deployment are written once, after it, with what it changed (or as created, if it failed).
    # (Imported here: the scheduler builds on this module.)
    from dockyard.services.ecs import service_scheduler

    ok, nxt = False, None
    if sd is not None:
        sd_raw = dumps(sd)
        new = service_scheduler.NewService(row, doc, c, td, sd, recreated=existing is not None)
        ok, nxt = service_scheduler.first_step(tx, arn, ctx.now, new)
        if ok:
            raw = dumps(doc)
        else:  # its changes are undone: as created
            doc, sd = loads(raw), loads(sd_raw)
        service_deployments.store(tx, sd, spec["deployments"][0]["id"])
    if existing is None:
        tx.insert(_INSERT, arn=arn, cluster_arn=c.arn, name=name, status="ACTIVE", namespace=_namespace_of(doc),
                  launch_type=doc.get("launchType"), scheduling_strategy=scheduling, created_at=ctx.now, doc=raw)
    else:
        tx.run(_RECREATE, a=arn, s="ACTIVE", ns=_namespace_of(doc), lt=doc.get("launchType"), ss=scheduling,
               t=ctx.now, d=raw)
    if ok:
        service_scheduler.stepped(tx, arn, nxt)
    return {"service": out}


@ecs.op("UpdateService", write=True)
def update_service(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req.get("cluster"))
    s = require_service(tx, ctx, c, req["service"])
    if s.status != "ACTIVE":
        raise ServiceNotActiveException("Service was not ACTIVE.")
    doc = loads(s.doc_raw)
    current = _spec_of(doc)
    scheduling = current["schedulingStrategy"]
    if scheduling == "DAEMON" and (req.get("desiredCount") or 0) > 0:
        raise InvalidParameterException("The daemon scheduling strategy does not support a desired count for "
                                        "services.")
    spec = dict(current)
    for k in _UPDATABLE:
        if k in req and not (k == "desiredCount" and scheduling == "DAEMON"):
            spec[k] = req[k]
    if "capacityProviderStrategy" in req:
        if req["capacityProviderStrategy"]:
            spec["capacityProviderStrategy"] = req["capacityProviderStrategy"]
            spec.pop("launchType", None)
        elif current.get("capacityProviderStrategy"):  # an empty list goes back to a launch type
            spec.pop("capacityProviderStrategy", None)
            spec["launchType"] = "FARGATE" if _is_fargate(current) else "EC2"
    if _is_fargate(current) and not _is_fargate(spec) and "platformVersion" not in req:
        spec.pop("platformVersion", None)
    spec["deploymentConfiguration"] = _merge_deployment_configuration(
        current["deploymentConfiguration"], req.get("deploymentConfiguration"), scheduling)
    td = _resolve(tx, ctx, c, spec, td_given="taskDefinition" in req)

    changed = [k for k in DEPLOYMENT_FIELDS if spec.get(k) != current.get(k)]
    new_deployment = spec["deploymentController"]["type"] == "ECS" and (
        bool(changed) or bool(req.get("forceNewDeployment")) or not doc.get("deployments"))
    deployments = spec.get("deployments") or []
    if new_deployment:
        _start_deployment(tx, ctx, spec, td)
    elif deployments and spec.get("desiredCount") != current.get("desiredCount"):
        primary = deployments[0]
        primary["desiredCount"] = spec["desiredCount"]
        primary["updatedAt"] = ctx.now
        service_deployments.retarget(tx, ctx.now, s.arn, primary["id"], spec["desiredCount"])
    doc = _service_doc(spec, td)
    save_doc(tx, s, doc)
    return {"service": render(tx, s, doc=doc)}


@ecs.op("DeleteService", write=True)
def delete_service(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req.get("cluster"))
    s = require_service(tx, ctx, c, req["service"])
    if s.status == "INACTIVE":
        raise ServiceNotActiveException("Service was not ACTIVE.")
    doc = loads(s.doc_raw)
    if s.status == "DRAINING":  # already being deleted
        return {"service": render(tx, s, doc=doc)}
    if (doc.get("schedulingStrategy") == "REPLICA" and doc.get("desiredCount", 0) > 0
            and not req.get("force")):
        raise InvalidParameterException("The service cannot be stopped while it is scaled above 0.")
    doc["desiredCount"] = 0
    for d in doc.get("deployments", []):
        if d.get("desiredCount"):
            d["desiredCount"] = 0
            d["updatedAt"] = ctx.now
    doc["status"] = "DRAINING"
    answer = render(tx, s, doc=loads(dumps(doc)))
    bump_cluster(tx, c.arn, active_services=-1)
    if _has_live_tasks(tx, s):
        save_doc(tx, s, doc)
        bump_cluster(tx, c.arn, draining_services=1)
    else:
        _make_inactive(tx, ctx.now, s, doc)
    return {"service": answer}


@ecs.op("DescribeServices", write=False)
def describe_services(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    refs = req["services"]
    require_items(refs, "Services", 10)
    c = require_cluster(tx, ctx, req.get("cluster"))
    tags = "TAGS" in (req.get("include") or [])
    out: list[Doc] = []
    failures: list[Doc] = []
    for ref in refs:
        s = find_service(tx, ctx, c, ref)
        if s is None:
            arn = ref if arns.is_arn(ref) else arns.service(ctx.region, ctx.account_id, c.name, ref)
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            out.append(render(tx, s, tags=tags))
    return {"services": out, "failures": failures}


@ecs.op("ListServices", write=False)
def list_services(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    c = require_cluster(tx, ctx, req.get("cluster"))
    n = max_results(req, 10)
    after = string_token(req)
    if req.get("resourceManagementType") == "ECS":  # no ECS-managed (Express) services here
        return {"serviceArns": []}
    lt, ss = req.get("launchType"), req.get("schedulingStrategy")
    params: Doc = {"c": c.arn, "after": after, "n": n + 1}
    if lt:
        params["lt"] = lt
    if ss:
        params["ss"] = ss
    rows = tx.all(_LIST[(bool(lt), bool(ss))], **params)
    page = [r[0] for r in rows[:n]]
    resp: Doc = {"serviceArns": page}
    if len(rows) > n:
        resp["nextToken"] = encode_token(page[-1].rsplit("/", 1)[-1])
    return resp


@ecs.op("ListServicesByNamespace", write=False)
def list_services_by_namespace(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    """Services whose Service Connect namespace is ``namespace``, as it was given to
    the service (or its cluster's defaults): a name or an ARN, compared as written."""
    n = max_results(req, 10)
    after = string_token(req)
    prefix = arns.cluster(ctx.region, ctx.account_id, "") + "%"
    rows = tx.all(_BY_NAMESPACE, ns=req["namespace"], after=after, pfx=prefix, n=n + 1)
    page = [r[0] for r in rows[:n]]
    resp: Doc = {"serviceArns": page}
    if len(rows) > n:
        resp["nextToken"] = encode_token(page[-1])
    return resp
