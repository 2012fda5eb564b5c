"""ECS tasks operations (not yet implemented)."""
