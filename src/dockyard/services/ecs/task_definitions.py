"""ECS task definitions (being implemented).

Contract other modules rely on:
    lookup(tx, ctx, ref) -> Doc | None
        ``ref`` is ``family`` (latest ACTIVE revision), ``family:revision`` or a full
        task-definition ARN. Returns the task definition in its wire shape
        (``taskDefinitionArn``, ``family``, ``revision``, ``status``,
        ``containerDefinitions``, ``cpu``/``memory`` strings, ``networkMode``,
        ``requiresAttributes``, ``compatibilities``...), or None when no such
        revision exists (callers pick the error their operation answers).
"""

from __future__ import annotations

from dockyard.services.context import Ctx
from dockyard.services.ecs.common import Doc
from dockyard.state.store import Tx


def lookup(tx: Tx, ctx: Ctx, ref: str) -> Doc | None:
    raise NotImplementedError
