"""Account settings: PutAccountSetting(Default), DeleteAccountSetting, ListAccountSettings.

A setting is stored per (account, region, principal, name). The account
default and the root user's setting are one and the same in ECS ("If you
specify the root user, it modifies the account setting for all users, roles,
and the root user of the account unless a user or role explicitly overrides
these settings"), so both are stored under principal '' and reported with the
root ARN. The effective value for a principal is its own setting, else the
account default, else AWS's default (``SETTINGS``).

Since April 2021 the long ARN formats can no longer be turned off: they read
as ``enabled`` at account level even when nobody set them, and an attempt to
disable them is refused ("You can no longer disable Long Arn settings").

Other modules read a value with ``effective(tx, ctx, name)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.api.errors import AccessDeniedException, InvalidParameterException
from dockyard.services.context import Ctx
from dockyard.services.ecs.common import Doc, decode_token, encode_token, max_results
from dockyard.services.ecs.registry import ecs
from dockyard.state import arns
from dockyard.state.schema import account_settings as ast
from dockyard.state.store import Tx, prepare


@dataclass(frozen=True, slots=True)
class Spec:
    values: tuple[str, ...]
    default: str
    aws_managed: bool = False  # read-only for users (guardDutyActivate)
    root_only: bool = False  # may only be set at account level


_ED = ("enabled", "disabled")
_LONG_ARN = ("serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat")

# In the botocore model's SettingName order; defaults are AWS's for a new account.
SETTINGS: dict[str, Spec] = {
    "serviceLongArnFormat": Spec(_ED, "enabled"),
    "taskLongArnFormat": Spec(_ED, "enabled"),
    "containerInstanceLongArnFormat": Spec(_ED, "enabled"),
    "awsvpcTrunking": Spec(_ED, "disabled"),
    "containerInsights": Spec(("enabled", "disabled", "enhanced"), "disabled"),
    "fargateFIPSMode": Spec(_ED, "disabled"),
    "tagResourceAuthorization": Spec(("on", "off"), "on"),
    "fargateTaskRetirementWaitPeriod": Spec(("0", "7", "14"), "7", root_only=True),
    "guardDutyActivate": Spec(("on", "off"), "off", aws_managed=True),
    "defaultLogDriverMode": Spec(("blocking", "non-blocking"), "non-blocking"),
    "fargateEventWindows": Spec(_ED, "disabled"),
}
_ORDER = {name: i for i, name in enumerate(SETTINGS)}
ACCOUNT = ""  # principal_arn of the account default (= the root user's setting)

_GET = prepare(select(ast.c.value).where(
    ast.c.account_id == bindparam("acct"), ast.c.region == bindparam("r"),
    ast.c.principal_arn == bindparam("p"), ast.c.name == bindparam("n")))
_OF_PRINCIPAL = prepare(select(ast.c.principal_arn, ast.c.name, ast.c.value).where(
    ast.c.account_id == bindparam("acct"), ast.c.region == bindparam("r"),
    ast.c.principal_arn.in_([bindparam("p"), bindparam("p0")])))
_INSERT = prepare(insert(ast))
_UPDATE = prepare(update(ast).where(
    ast.c.account_id == bindparam("acct"), ast.c.region == bindparam("r"),
    ast.c.principal_arn == bindparam("p"), ast.c.name == bindparam("n")).values(value=bindparam("v")))
_DELETE = prepare(delete(ast).where(
    ast.c.account_id == bindparam("acct"), ast.c.region == bindparam("r"),
    ast.c.principal_arn == bindparam("p"), ast.c.name == bindparam("n")))

# IAM principals that can hold settings (federated/assumed-role sessions cannot).
_PRINCIPAL_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):(root|user/.+|role/.+)$")


def _root(ctx: Ctx) -> str:
    return arns.iam_user(ctx.account_id, "root")


def _caller_is_root(ctx: Ctx) -> bool:
    return ctx.principal_arn == _root(ctx)


def _principal(ctx: Ctx, principal_arn: str | None) -> str:
    """The stored principal key for a request ('' = account level), checking the caller may use it."""
    if not principal_arn:
        return ACCOUNT if _caller_is_root(ctx) else ctx.principal_arn
    m = _PRINCIPAL_RE.match(principal_arn)
    if m is None:
        raise InvalidParameterException(
            "The specified principal ARN is not valid. Specify a valid IAM user, IAM role or root user ARN.")
    if m.group(1) != ctx.account_id:
        raise InvalidParameterException("The specified principal ARN must belong to your account.")
    target = ACCOUNT if m.group(2) == "root" else principal_arn
    if not _caller_is_root(ctx) and principal_arn != ctx.principal_arn:
        raise AccessDeniedException(
            f"User: {ctx.principal_arn} is not authorized to change or list the account settings of "
            f"{principal_arn}. Only the root user or the principal itself may do so.")
    return target


def _shown(ctx: Ctx, principal: str) -> str:
    return _root(ctx) if principal == ACCOUNT else principal


def _setting(ctx: Ctx, name: str, value: str, principal: str) -> Doc:
    return {"name": name, "value": value, "principalArn": _shown(ctx, principal),
            "type": "aws_managed" if SETTINGS[name].aws_managed else "user"}


def _check_value(name: str, value: str, principal: str) -> None:
    spec = SETTINGS[name]
    if spec.aws_managed:
        raise InvalidParameterException(
            f"The {name} account setting is managed by AWS and cannot be modified.")
    if name in _LONG_ARN and value == "disabled":
        raise InvalidParameterException("You can no longer disable Long Arn settings")
    if value not in spec.values:
        raise InvalidParameterException("Invalid setting 'value'")  # AWS's words (CloudTrail)
    if spec.root_only and principal != ACCOUNT:
        raise InvalidParameterException(
            f"The {name} account setting can only be set for the root user.")


def _put(tx: Tx, ctx: Ctx, principal: str, name: str, value: str) -> None:
    if tx.one(_GET, acct=ctx.account_id, r=ctx.region, p=principal, n=name) is None:
        tx.insert(_INSERT, account_id=ctx.account_id, region=ctx.region, principal_arn=principal,
                  name=name, value=value)
    else:
        tx.run(_UPDATE, acct=ctx.account_id, r=ctx.region, p=principal, n=name, v=value)
    tx.notify("account-setting", f"{ctx.account_id}/{ctx.region}/{name}")


def effective(tx: Tx, ctx: Ctx, name: str, principal_arn: str | None = None) -> str:
    """The value of setting ``name`` in force for a principal (the caller by default)."""
    p = principal_arn if principal_arn is not None else ctx.principal_arn
    if p == _root(ctx):
        p = ACCOUNT
    rows = {(r[0], r[1]): r[2] for r in tx.all(_OF_PRINCIPAL, acct=ctx.account_id, r=ctx.region,
                                                 p=p, p0=ACCOUNT) if r[1] == name}
    return rows.get((p, name)) or rows.get((ACCOUNT, name)) or SETTINGS[name].default


@ecs.op("PutAccountSetting", write=True)
def put_account_setting(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name, value = req["name"], req["value"]
    principal = _principal(ctx, req.get("principalArn"))
    _check_value(name, value, principal)
    _put(tx, ctx, principal, name, value)
    return {"setting": _setting(ctx, name, value, principal)}


@ecs.op("PutAccountSettingDefault", write=True)
def put_account_setting_default(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name, value = req["name"], req["value"]
    if not _caller_is_root(ctx):
        raise AccessDeniedException(
            f"User: {ctx.principal_arn} is not authorized to perform: ecs:PutAccountSettingDefault")
    _check_value(name, value, ACCOUNT)
    _put(tx, ctx, ACCOUNT, name, value)
    return {"setting": _setting(ctx, name, value, ACCOUNT)}


@ecs.op("DeleteAccountSetting", write=True)
def delete_account_setting(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name = req["name"]
    principal = _principal(ctx, req.get("principalArn"))
    if SETTINGS[name].aws_managed:
        raise InvalidParameterException(
            f"The {name} account setting is managed by AWS and cannot be modified.")
    if name in _LONG_ARN and principal == ACCOUNT:
        raise InvalidParameterException("You can no longer disable Long Arn settings")
    row = tx.one(_GET, acct=ctx.account_id, r=ctx.region, p=principal, n=name)
    if row is not None:
        tx.run(_DELETE, acct=ctx.account_id, r=ctx.region, p=principal, n=name)
        tx.notify("account-setting", f"{ctx.account_id}/{ctx.region}/{name}")
        value = row[0]
    else:
        value = effective(tx, ctx, name, _shown(ctx, principal))
    return {"setting": _setting(ctx, name, value, principal)}


@ecs.op("ListAccountSettings", write=False)
def list_account_settings(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    name, value = req.get("name"), req.get("value")
    if value is not None and name is None:
        raise InvalidParameterException(
            "You must also specify an account setting name to filter account settings by value.")
    principal = _principal(ctx, req.get("principalArn"))
    n = max_results(req, 10, 10)
    after = decode_token(req.get("nextToken"))
    if after is not None and after not in _ORDER:
        raise InvalidParameterException("Invalid nextToken")

    stored: dict[tuple[str, str], str] = {
        (r[0], r[1]): r[2]
        for r in tx.all(_OF_PRINCIPAL, acct=ctx.account_id, r=ctx.region, p=principal, p0=ACCOUNT)}
    out: list[Doc] = []
    for sname, spec in SETTINGS.items():
        if name is not None and sname != name:
            continue
        own = stored.get((principal, sname))
        if own is not None:
            out.append(_setting(ctx, sname, own, principal))
        elif req.get("effectiveSettings"):
            # Inherited values are reported under the principal asked about, as AWS does.
            inherited = stored.get((ACCOUNT, sname), spec.default)
            out.append(_setting(ctx, sname, inherited, principal))
        elif principal == ACCOUNT and sname in _LONG_ARN:
            # AWS turned these on for every account and they cannot be turned off.
            out.append(_setting(ctx, sname, spec.default, ACCOUNT))
    if value is not None:
        out = [s for s in out if s["value"] == value]
    if after is not None:
        out = [s for s in out if _ORDER[s["name"]] > _ORDER[after]]
    resp: Doc = {"settings": out[:n]}
    if len(out) > n:
        resp["nextToken"] = encode_token(out[n - 1]["name"])
    return resp
