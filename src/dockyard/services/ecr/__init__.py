"""Amazon ECR semantics over the store. Importing this package registers every operation."""

from dockyard.services.ecr import auth, images, layers, lifecycle, policies, repositories, scanning
from dockyard.services.ecr.registry import ecr

__all__ = ["auth", "ecr", "images", "layers", "lifecycle", "policies", "repositories", "scanning"]
