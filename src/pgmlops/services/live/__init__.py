"""Live deployments: deploy, canary and shadow traffic, compare, promote."""
