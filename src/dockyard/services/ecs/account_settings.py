"""ECS account_settings operations (not yet implemented)."""
