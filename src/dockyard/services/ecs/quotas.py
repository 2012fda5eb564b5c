"""ECS service quotas: AWS's defaults, overridable per server, enforced with LimitExceededException.

Override with ``DOCKYARD_QUOTA_<NAME>=<n>`` (e.g. DOCKYARD_QUOTA_CLUSTERS_PER_ACCOUNT=20)
or ``quotas.configure({...})`` at start-up.
"""

from __future__ import annotations

import os

from dockyard.api.errors import LimitExceededException
from dockyard.services.context import Ctx
from dockyard.state.store import Tx

# AWS defaults (Service Quotas console, "Amazon Elastic Container Service (Amazon ECS)").
DEFAULTS: dict[str, int] = {
    "clusters_per_account": 10000,
    "container_instances_per_cluster": 5000,
    "services_per_cluster": 5000,
    "tasks_per_service": 5000,
    "revisions_per_task_definition_family": 1000000,
    "capacity_providers_per_cluster": 20,
    "custom_attributes_per_resource": 10,
    "tasks_launched_per_run_task": 10,
    "container_instances_per_start_task": 10,
    "tags_per_resource": 50,
}

MESSAGES: dict[str, str] = {
    "clusters_per_account": "The maximum number of clusters for this account has been reached.",
    "container_instances_per_cluster":
        "The maximum number of container instances for this cluster has been reached.",
    "services_per_cluster": "The maximum number of services for this cluster has been reached.",
    "tasks_per_service": "The maximum number of tasks for this service has been reached.",
    "revisions_per_task_definition_family":
        "The maximum number of revisions for this task definition family has been reached.",
    "capacity_providers_per_cluster": "The maximum number of capacity providers for a cluster is {limit}.",
    "custom_attributes_per_resource": "The maximum number of custom attributes for a resource is {limit}.",
    "tags_per_resource": "The maximum number of tags for a resource is {limit}.",
}

_limits: dict[str, int] = dict(DEFAULTS)


def _from_env() -> None:
    for name in DEFAULTS:
        v = os.environ.get(f"DOCKYARD_QUOTA_{name.upper()}")
        if v and v.isdigit():
            _limits[name] = int(v)


_from_env()


def configure(overrides: dict[str, int]) -> None:
    for name, value in overrides.items():
        if name not in DEFAULTS:
            raise KeyError(f"unknown quota {name!r}")
        _limits[name] = int(value)


def limit(name: str) -> int:
    return _limits[name]


def message(name: str) -> str:
    """The text AWS answers when quota ``name`` is exceeded (with the limit in force)."""
    return MESSAGES.get(name, "Limit exceeded: {name}.").format(limit=_limits[name], name=name)


def check(tx: Tx, ctx: Ctx, name: str, current: int, adding: int = 1) -> None:
    """Raise LimitExceededException if ``current + adding`` would pass the quota."""
    if current + adding > _limits[name]:
        raise LimitExceededException(message(name))
