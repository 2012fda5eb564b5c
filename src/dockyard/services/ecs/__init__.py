"""Amazon ECS semantics over the store. Importing this package registers every operation."""

from dockyard.services.ecs import (  # noqa: F401  (imported for their registrations)
    account_settings,
    attributes,
    capacity_providers,
    clusters,
    container_instances,
    service_deployments,
    services,
    tags,
    task_definitions,
    tasks,
)
from dockyard.services.ecs.registry import ecs

__all__ = ["ecs"]
