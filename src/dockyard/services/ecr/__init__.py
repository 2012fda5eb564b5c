"""Amazon ECR semantics over the store. Importing this package registers every operation."""

from dockyard.services.ecr.registry import ecr

__all__ = ["ecr"]
