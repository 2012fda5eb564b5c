"""ECS task_definitions operations (not yet implemented)."""
