"""The ECS operation table; each module of this package adds its operations."""

from dockyard.services.registry import Registry

ecs = Registry("ecs")
