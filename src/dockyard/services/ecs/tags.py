"""ECS tags operations (not yet implemented)."""
