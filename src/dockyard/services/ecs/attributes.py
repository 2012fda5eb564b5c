"""ECS attributes operations (not yet implemented)."""
