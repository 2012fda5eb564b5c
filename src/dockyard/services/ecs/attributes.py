"""Attributes: PutAttributes, DeleteAttributes, ListAttributes (targetType container-instance).

Attributes live in the container instance's document (``attributes``), next to
the ones the agent registered. Names under ``ecs.`` and ``com.amazonaws.ecs.``
belong to ECS and the agent; the API manages custom ones only, at most
``custom_attributes_per_resource`` (10) per instance.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from dockyard.api.errors import (
    AttributeLimitExceededException,
    InvalidParameterException,
    TargetNotFoundException,
)
from dockyard.services.context import Ctx
from dockyard.services.ecs import container_instances as ci
from dockyard.services.ecs.common import (
    ClusterRow,
    Doc,
    decode_token,
    encode_token,
    loads,
    max_results,
    require_cluster,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state.schema import container_instances as cit
from dockyard.state.store import Tx, prepare

TARGET_TYPE = "container-instance"
MAX_PER_CALL = 10

_PAGE = prepare(select(cit.c.arn, cit.c.doc)
                .where(cit.c.cluster_arn == bindparam("c"), cit.c.status != "INACTIVE",
                       cit.c.arn >= bindparam("after"))
                .order_by(cit.c.arn).limit(bindparam("n")))


def _target(tx: Tx, ctx: Ctx, cluster: ClusterRow, a: Doc) -> ci.InstanceRow:
    target_id = a.get("targetId")
    if not target_id:
        raise InvalidParameterException("targetId is required for each attribute.")
    target_type = a.get("targetType")
    if target_type is None and not target_id.startswith("arn:"):
        raise InvalidParameterException(
            "targetType is required when targetId is not an ARN.")
    if target_type not in (None, TARGET_TYPE):
        raise InvalidParameterException("targetType must be container-instance.")
    row = ci.find(tx, ctx, cluster, target_id)
    if row is None or row.status == "INACTIVE":
        raise TargetNotFoundException(f"Could not find {target_id}.")
    return row


def _check_name(a: Doc) -> None:
    ci.check_attribute(a)
    if not ci.is_custom(a["name"]):
        raise InvalidParameterException(
            f"Attribute name '{a['name']}' is reserved: names starting with 'ecs.' or "
            "'com.amazonaws.ecs.' are managed by Amazon ECS.")


def _echo(a: Doc) -> Doc:
    out: Doc = {"name": a["name"]}
    if a.get("value") is not None:
        out["value"] = a["value"]
    out["targetType"] = a.get("targetType") or TARGET_TYPE
    out["targetId"] = a["targetId"]
    return out


def _grouped(tx: Tx, ctx: Ctx, cluster: ClusterRow,
             attributes: list[Doc]) -> list[tuple[ci.InstanceRow, list[Doc]]]:
    rows: dict[str, ci.InstanceRow] = {}
    changes: dict[str, list[Doc]] = {}
    for a in attributes:
        _check_name(a)
        row = _target(tx, ctx, cluster, a)
        rows.setdefault(row.arn, row)
        changes.setdefault(row.arn, []).append(a)
    return [(rows[arn], changes[arn]) for arn in rows]


@ecs.op("PutAttributes", write=True)
def put_attributes(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    attributes = req["attributes"]
    if not attributes:
        raise InvalidParameterException("attributes cannot be empty.")
    if len(attributes) > MAX_PER_CALL:
        raise AttributeLimitExceededException(
            f"You can specify up to {MAX_PER_CALL} attributes in a single call.")
    for row, given in _grouped(tx, ctx, cluster, attributes):
        current = {a["name"]: a.get("value") for a in row.doc.get("attributes", [])}
        for a in given:
            current[a["name"]] = a.get("value")
        merged = [{"name": k} if v is None else {"name": k, "value": v} for k, v in current.items()]
        ci.check_custom_limit(merged)
        ci.write_attributes(tx, row, merged)
    return {"attributes": [_echo(a) for a in attributes]}


@ecs.op("DeleteAttributes", write=True)
def delete_attributes(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    attributes = req["attributes"]
    if not attributes:
        raise InvalidParameterException("attributes cannot be empty.")
    if len(attributes) > MAX_PER_CALL:
        raise InvalidParameterException(f"You can specify up to {MAX_PER_CALL} attributes in a single call.")
    for row, given in _grouped(tx, ctx, cluster, attributes):
        gone = {a["name"] for a in given}
        kept = [a for a in row.doc.get("attributes", []) if a["name"] not in gone]
        if len(kept) != len(row.doc.get("attributes", [])):
            ci.write_attributes(tx, row, kept)
    return {"attributes": [_echo(a) for a in attributes]}


@ecs.op("ListAttributes", write=False)
def list_attributes(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    cluster = require_cluster(tx, ctx, req.get("cluster"))
    if req["targetType"] != TARGET_TYPE:
        raise InvalidParameterException("targetType must be container-instance.")
    name = req.get("attributeName")
    value = req.get("attributeValue")
    if value is not None and name is None:
        raise InvalidParameterException("attributeValue can only be used together with attributeName.")
    n = max_results(req, 100)
    token = decode_token(req.get("nextToken"))
    if token is None:
        after_arn, after_name = "", None
    elif isinstance(token, list) and len(token) == 2 and all(isinstance(t, str) for t in token):
        after_arn, after_name = token
    else:
        raise InvalidParameterException("Invalid nextToken")

    out: list[Doc] = []
    last: tuple[str, str] | None = None
    more = False
    cursor = after_arn
    batch = 200
    while not more:
        rows = tx.all(_PAGE, c=cluster.arn, after=cursor, n=batch)
        for arn, raw in rows:
            if arn == cursor and cursor != after_arn:
                continue  # already seen at the end of the previous batch
            for a in sorted(loads(raw).get("attributes", []), key=lambda x: x["name"]):
                if arn == after_arn and after_name is not None and a["name"] <= after_name:
                    continue
                if name is not None and a["name"] != name:
                    continue
                if value is not None and a.get("value") != value:
                    continue
                if len(out) == n:
                    more = True
                    break
                item: Doc = {"name": a["name"]}
                if a.get("value") is not None:
                    item["value"] = a["value"]
                item["targetType"] = TARGET_TYPE
                item["targetId"] = arn
                out.append(item)
                last = (arn, a["name"])
            if more:
                break
        if len(rows) < batch:
            break
        cursor = rows[-1][0]
    resp: Doc = {"attributes": out}
    if more and last is not None:
        resp["nextToken"] = encode_token(list(last))
    return resp
