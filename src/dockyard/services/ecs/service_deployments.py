"""ECS service_deployments operations (not yet implemented)."""
