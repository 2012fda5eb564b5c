"""Capacity providers: FARGATE and FARGATE_SPOT built in, custom ones Create/Update/Delete/Describe."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from dockyard.api.errors import InvalidParameterException
from dockyard.services.context import Ctx
from dockyard.services.ecs.common import Doc
from dockyard.state.schema import capacity_providers as cpt
from dockyard.state.store import Tx, prepare

BUILT_IN = ("FARGATE", "FARGATE_SPOT")

_BY_NAME = prepare(select(cpt.c.status).where(cpt.c.account_id == bindparam("acct"),
                                              cpt.c.region == bindparam("r"), cpt.c.name == bindparam("n")))


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
                f"The specified capacity provider strategy cannot contain a capacity provider that is not "
                f"associated with the cluster. Associate the capacity provider with the cluster or specify "
                f"a valid capacity provider and try again.")


def check_cluster_providers(tx: Tx, ctx: Ctx, providers: list[str], strategy: list[Doc]) -> None:
    if len(providers) > 20:
        raise InvalidParameterException("The maximum number of capacity providers for a cluster is 20.")
    for name in providers:
        if not provider_exists(tx, ctx, name):
            raise InvalidParameterException(
                f"The specified capacity provider '{name}' does not exist. Specify a valid capacity "
                f"provider and try again.")
    check_strategy(strategy, providers)
