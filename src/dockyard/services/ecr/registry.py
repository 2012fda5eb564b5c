"""The ECR operation table; each module of this package adds its operations."""

from dockyard.services.registry import Registry

ecr = Registry("ecr")
