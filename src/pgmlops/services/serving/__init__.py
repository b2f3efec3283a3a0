"""Serving: load and swap the version, answer, log, take feedback."""
