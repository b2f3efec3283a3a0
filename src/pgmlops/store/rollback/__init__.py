"""Automatic rollback's records: serving counts and verdicts."""
