"""Task definitions: Register/Describe/List/ListFamilies/Deregister/Delete.

Contract other modules rely on:
    lookup(tx, ctx, ref) -> Doc | None
        ``ref`` is ``family`` (latest ACTIVE revision), ``family:revision`` or a full
        task-definition ARN. Returns the task definition in its wire shape
        (``taskDefinitionArn``, ``family``, ``revision``, ``status``,
        ``containerDefinitions``, ``cpu``/``memory`` strings, ``networkMode``,
        ``requiresAttributes``, ``compatibilities``...), or None when no such
        revision exists (callers pick the error their operation answers).
    lookup_raw(tx, ctx, ref) -> (arn, status, doc bytes) | None
        The same without parsing the document.

Each revision is one row whose ``doc`` is the wire document (orjson bytes),
kept current on every status change, so DescribeTaskDefinition answers by
splicing stored bytes into the response without parsing or serialising.
Validation, defaults and computed fields live in ``taskdef_rules``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, insert, select, tuple_, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from dockyard.api.errors import ClientException, InvalidParameterException
from dockyard.services.context import Ctx
from dockyard.services.ecs import quotas, taskdef_rules
from dockyard.services.ecs.common import (
    Doc,
    decode_token,
    dumps,
    encode_token,
    loads,
    max_results,
    put_tags,
    validate_tags,
)
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns
from dockyard.state.schema import task_definition_families as ft
from dockyard.state.schema import task_definitions as tdt
from dockyard.state.store import Tx, prepare

NOT_FOUND = "Unable to describe task definition."


class tags_json(FunctionElement[str]):
    """The tags of a resource as JSON array text, ``[{"key":..,"value":..}]`` ordered by key.

    Selected next to the document, DescribeTaskDefinition(include=[TAGS]) is one query,
    and the array is spliced into the response as it comes from the database.
    """

    type = String()
    name = "tags_json"
    inherit_cache = True


@compiles(tags_json, "sqlite")
def _tags_json_sqlite(element: tags_json, compiler: Any, **kw: Any) -> str:
    arn = compiler.process(element.clauses, **kw)
    return ("(SELECT json_group_array(json_object('key', k, 'value', v)) FROM "
            f'(SELECT "key" AS k, "value" AS v FROM tags WHERE resource_arn = {arn} ORDER BY "key"))')


@compiles(tags_json, "postgresql")
def _tags_json_postgresql(element: tags_json, compiler: Any, **kw: Any) -> str:
    arn = compiler.process(element.clauses, **kw)
    return ("(SELECT coalesce(json_agg(json_build_object('key', \"key\", 'value', \"value\") "
            f"ORDER BY \"key\"), '[]')::text FROM tags WHERE resource_arn = {arn})")


_COLS = (tdt.c.arn, tdt.c.status, tdt.c.doc)
_COLS_TAGS = (*_COLS, tags_json(tdt.c.arn))


def _by_arn(cols: tuple[Any, ...]) -> Any:
    return prepare(select(*cols).where(tdt.c.arn == bindparam("a")))


def _latest_active(cols: tuple[Any, ...]) -> Any:
    """A range of ix_taskdef_status: the newest ACTIVE revision of a family."""
    return prepare(
        select(*cols)
        .where(tdt.c.account_id == bindparam("acct"), tdt.c.region == bindparam("r"),
               tdt.c.status == "ACTIVE", tdt.c.family == bindparam("f"))
        .order_by(tdt.c.revision.desc()).limit(1))


# (statement by ARN, statement for the latest ACTIVE revision), without and with the tags.
_FIND = {False: (_by_arn(_COLS), _latest_active(_COLS)),
         True: (_by_arn(_COLS_TAGS), _latest_active(_COLS_TAGS))}
_INSERT = prepare(insert(tdt))
_SET_STATUS = prepare(update(tdt).where(tdt.c.arn == bindparam("a"))
                      .values(status=bindparam("s"), doc=bindparam("d")))

_FAMILY = prepare(select(ft.c.last_revision, ft.c.active_revisions)
                  .where(ft.c.account_id == bindparam("acct"), ft.c.region == bindparam("r"),
                         ft.c.family == bindparam("f")))
_FAMILY_INSERT = prepare(insert(ft))
_FAMILY_SET = prepare(update(ft).where(ft.c.account_id == bindparam("acct"), ft.c.region == bindparam("r"),
                                       ft.c.family == bindparam("f"))
                      .values(last_revision=bindparam("last"), active_revisions=bindparam("n"),
                              status=bindparam("s")))
_FAMILY_ACTIVE = prepare(update(ft).where(ft.c.account_id == bindparam("acct"), ft.c.region == bindparam("r"),
                                          ft.c.family == bindparam("f"))
                         .values(active_revisions=bindparam("n"), status=bindparam("s")))


def _list_stmt(by_family: bool, desc: bool) -> Any:
    """ListTaskDefinitions pages: keyset ranges of ix_taskdef_status, ascending or descending."""
    key = tuple_(tdt.c.family, tdt.c.revision)
    after = tuple_(bindparam("af"), bindparam("ar"))
    where = [tdt.c.account_id == bindparam("acct"), tdt.c.region == bindparam("r"),
             tdt.c.status == bindparam("s")]
    if by_family:
        where.append(tdt.c.family == bindparam("f"))
    where.append(key < after if desc else key > after)
    order = (tdt.c.family.desc(), tdt.c.revision.desc()) if desc else (tdt.c.family, tdt.c.revision)
    return prepare(select(tdt.c.arn, tdt.c.family, tdt.c.revision).where(*where).order_by(*order)
                   .limit(bindparam("n")))


_LIST = {(f, d): _list_stmt(f, d) for f in (False, True) for d in (False, True)}


def _families_stmt(with_status: bool, inclusive: bool) -> Any:
    """ListTaskDefinitionFamilies pages: a prefix range of the primary key, or of the status index."""
    lower = ft.c.family >= bindparam("after") if inclusive else ft.c.family > bindparam("after")
    where = [ft.c.account_id == bindparam("acct"), ft.c.region == bindparam("r"), lower,
             ft.c.family < bindparam("upto")]
    if with_status:
        where.append(ft.c.status == bindparam("s"))
    else:  # ALL: every family that still has a revision (taskdef_purge.py)
        where.append(ft.c.status != "DELETED")
    return prepare(select(ft.c.family).where(*where).order_by(ft.c.family).limit(bindparam("n")))


_FAMILIES = {(s, i): _families_stmt(s, i) for s in (False, True) for i in (False, True)}
# Above every character a family name may hold ([A-Za-z0-9_-]): [prefix, prefix + _TOP) is
# exactly the names that start with prefix.
_TOP = "\x7f"


# -- references ------------------------------------------------------------------

def _split(ref: str) -> tuple[str, str | None] | None:
    """(family, revision text or None) from ``family``, ``family:rev`` or an ARN; None if malformed."""
    if ref.startswith("arn:"):
        a = arns.parse(ref)
        if a is None or a.kind != "task-definition":
            return None
        ref = a.resource
    family, sep, rev = ref.partition(":")
    if not family:
        return None
    return family, (rev if sep else None)


def _find(tx: Tx, ctx: Ctx, ref: str, tags: bool) -> tuple[Any, ...] | None:
    """The row (arn, status, doc[, tags JSON]) of the revision ``ref`` names, or None."""
    by_arn, latest = _FIND[tags]
    if ref.startswith("arn:"):
        scope = f"arn:{arns.PARTITION}:ecs:{ctx.region}:{ctx.account_id}:task-definition/"
        if not ref.startswith(scope):
            return None  # malformed, or another account's or region's
        ref = ref[len(scope):]
    family, sep, rev = ref.partition(":")
    if not sep:
        return tx.one(latest, acct=ctx.account_id, r=ctx.region, f=family)
    if rev.isdigit():
        return tx.one(by_arn, a=arns.task_definition(ctx.region, ctx.account_id, family, int(rev)))
    return None


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def lookup_raw(tx: Tx, ctx: Ctx, ref: str) -> tuple[str, str, bytes] | None:
    """(arn, status, doc bytes) of the revision ``ref`` names, or None."""
    row = _find(tx, ctx, ref, False)
    return (row[0], row[1], _raw(row[2])) if row is not None else None


def lookup(tx: Tx, ctx: Ctx, ref: str) -> Doc | None:
    hit = lookup_raw(tx, ctx, ref)
    return loads(hit[2]) if hit is not None else None


def _require_revision(tx: Tx, ctx: Ctx, ref: str) -> tuple[str, str, bytes]:
    """The revision a Deregister call names: ``family:revision`` or an ARN, never a bare family."""
    parts = _split(ref)
    if parts is None:
        raise ClientException(NOT_FOUND)
    rev = parts[1]
    if rev is None:
        raise ClientException("Revision is missing.")
    if not rev.isdigit():
        raise InvalidParameterException(f"Invalid revision number. Number: {rev}")
    hit = lookup_raw(tx, ctx, ref)
    if hit is None:
        raise ClientException(NOT_FOUND)
    return hit


# -- operations ----------------------------------------------------------------------

@ecs.op("RegisterTaskDefinition", write=True)
def register_task_definition(tx: Tx, ctx: Ctx, req: Doc) -> bytes:
    body = taskdef_rules.build(req)
    tags = req.get("tags") or []
    validate_tags(tags)
    family = body["family"]
    row = tx.one(_FAMILY, acct=ctx.account_id, r=ctx.region, f=family)
    if row is None:
        revision = 1
        tx.insert(_FAMILY_INSERT, account_id=ctx.account_id, region=ctx.region, family=family,
                  last_revision=1, active_revisions=1, status="ACTIVE")
    else:
        revision = row[0] + 1
        quotas.check(tx, ctx, "revisions_per_task_definition_family", row[0])
        tx.run(_FAMILY_SET, acct=ctx.account_id, r=ctx.region, f=family, last=revision, n=row[1] + 1,
               s="ACTIVE")
    arn = arns.task_definition(ctx.region, ctx.account_id, family, revision)
    doc: Doc = {"taskDefinitionArn": arn, **body, "revision": revision, "status": "ACTIVE",
                "registeredAt": ctx.now, "registeredBy": ctx.principal_arn}
    raw = dumps(doc)
    tx.insert(_INSERT, arn=arn, account_id=ctx.account_id, region=ctx.region, family=family,
              revision=revision, status="ACTIVE", doc=raw)
    tx.notify("task-definition", arn)
    if tags:
        put_tags(tx, arn, tags, new=True)  # revisions are never reused
        return b'{"taskDefinition":' + raw + b',"tags":' + dumps(tags) + b"}"
    return b'{"taskDefinition":' + raw + b"}"


@ecs.op("DescribeTaskDefinition", write=False, snapshot=False)
def describe_task_definition(tx: Tx, ctx: Ctx, req: Doc) -> bytes:
    include = req.get("include")
    if include:
        for item in include:
            if item != "TAGS":
                raise InvalidParameterException(f"Invalid include value '{item}'. Valid values are: TAGS.")
    row = _find(tx, ctx, req["taskDefinition"], bool(include))
    if row is None:
        raise ClientException(NOT_FOUND)
    if include:
        return b'{"taskDefinition":' + _raw(row[2]) + b',"tags":' + _raw(row[3]) + b"}"
    return b'{"taskDefinition":' + _raw(row[2]) + b"}"


@ecs.op("ListTaskDefinitions", write=False)
def list_task_definitions(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    status = req.get("status", "ACTIVE")
    if status not in ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"):
        raise InvalidParameterException(
            f"Invalid status '{status}'. Valid values are: ACTIVE, INACTIVE, DELETE_IN_PROGRESS.")
    sort = req.get("sort", "ASC")
    if sort not in ("ASC", "DESC"):
        raise InvalidParameterException(f"Invalid sort '{sort}'. Valid values are: ASC, DESC.")
    desc = sort == "DESC"
    n = max_results(req, 100)
    family = req.get("familyPrefix")  # AWS: the full family name, despite the parameter's name
    token = decode_token(req.get("nextToken"))
    if token is None:
        after: tuple[str, int] = ("\U0010ffff", 0) if desc else ("", 0)
    elif (isinstance(token, list) and len(token) == 2 and isinstance(token[0], str)
          and isinstance(token[1], int)):
        after = (token[0], token[1])
    else:
        raise InvalidParameterException("Invalid nextToken")
    params: dict[str, Any] = {"acct": ctx.account_id, "r": ctx.region, "s": status, "af": after[0],
                              "ar": after[1], "n": n + 1}
    if family:
        params["f"] = family
    rows = tx.all(_LIST[(bool(family), desc)], **params)
    resp: Doc = {"taskDefinitionArns": [r[0] for r in rows[:n]]}
    if len(rows) > n:
        last = rows[n - 1]
        resp["nextToken"] = encode_token([last[1], last[2]])
    return resp


@ecs.op("ListTaskDefinitionFamilies", write=False)
def list_task_definition_families(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    status = req.get("status", "ALL")
    if status not in ("ACTIVE", "INACTIVE", "ALL"):
        raise InvalidParameterException(
            f"Invalid status '{status}'. Valid values are: ACTIVE, INACTIVE, ALL.")
    n = max_results(req, 100)
    prefix = req.get("familyPrefix") or ""
    token = decode_token(req.get("nextToken"))
    if token is not None and not isinstance(token, str):
        raise InvalidParameterException("Invalid nextToken")
    params: dict[str, Any] = {"acct": ctx.account_id, "r": ctx.region,
                              "after": prefix if token is None else token, "upto": prefix + _TOP, "n": n + 1}
    if status != "ALL":
        params["s"] = status
    rows = tx.all(_FAMILIES[(status != "ALL", token is None)], **params)
    resp: Doc = {"families": [r[0] for r in rows[:n]]}
    if len(rows) > n:
        resp["nextToken"] = encode_token(rows[n - 1][0])
    return resp


def _set_status(tx: Tx, arn: str, raw: bytes, status: str, stamp: str, now: float) -> bytes:
    doc = loads(raw)
    doc["status"] = status
    doc[stamp] = now
    out = dumps(doc)
    tx.run(_SET_STATUS, a=arn, s=status, d=out)
    tx.notify("task-definition", arn)
    return out


def _family_lost_active(tx: Tx, ctx: Ctx, family: str) -> None:
    row = tx.one(_FAMILY, acct=ctx.account_id, r=ctx.region, f=family)
    if row is None:
        return
    n = max(row[1] - 1, 0)
    tx.run(_FAMILY_ACTIVE, acct=ctx.account_id, r=ctx.region, f=family, n=n, s="ACTIVE" if n else "INACTIVE")


@ecs.op("DeregisterTaskDefinition", write=True)
def deregister_task_definition(tx: Tx, ctx: Ctx, req: Doc) -> bytes:
    arn, status, raw = _require_revision(tx, ctx, req["taskDefinition"])
    if status == "ACTIVE":
        raw = _set_status(tx, arn, raw, "INACTIVE", "deregisteredAt", ctx.now)
        _family_lost_active(tx, ctx, arn.rsplit("/", 1)[1].rsplit(":", 1)[0])
    # Deregistering an INACTIVE (or deleting) revision answers it as it is.
    return b'{"taskDefinition":' + raw + b"}"


@ecs.op("DeleteTaskDefinitions", write=True)
def delete_task_definitions(tx: Tx, ctx: Ctx, req: Doc) -> bytes:
    refs = req["taskDefinitions"]
    if not refs:
        raise InvalidParameterException("size of TaskDefinition references list must be greater than 0")
    if len(refs) > 10:
        raise InvalidParameterException("Size of TaskDefinition references list cannot exceed 10")
    done: list[bytes] = []
    failures: list[Doc] = []
    for ref in refs:
        parts = _split(ref)
        if parts is None or parts[1] is None or not parts[1].isdigit():
            failures.append({"arn": ref, "reason": "The specified task definition identifier is invalid. "
                                                   "Specify a valid name or ARN and try again."})
            continue
        hit = lookup_raw(tx, ctx, ref)
        if hit is None:
            arn = ref if ref.startswith("arn:") else \
                arns.task_definition(ctx.region, ctx.account_id, parts[0], int(parts[1]))
            failures.append({"arn": arn, "reason": "The specified task definition does not exist. Specify a "
                                                   "valid account, family, revision and try again."})
            continue
        arn, status, raw = hit
        if status == "ACTIVE":
            failures.append({"arn": arn, "reason": "The specified task definition is still in ACTIVE status. "
                                                   "Please deregister the target and try again."})
            continue
        if status == "INACTIVE":
            raw = _set_status(tx, arn, raw, "DELETE_IN_PROGRESS", "deleteRequestedAt", ctx.now)
        done.append(raw)
    return b'{"taskDefinitions":[' + b",".join(done) + b'],"failures":' + dumps(failures) + b"}"
