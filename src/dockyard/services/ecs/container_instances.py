"""ECS container_instances operations (not yet implemented)."""
