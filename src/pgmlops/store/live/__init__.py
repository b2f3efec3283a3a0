"""Live deployments' figures, stored per hour."""
