"""Monitoring, pure: reference profiles, drift, performance, status."""
