"""Live deployments, pure: modes, canary rows, the live comparison."""
