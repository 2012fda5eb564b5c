"""ECS services operations (not yet implemented)."""
