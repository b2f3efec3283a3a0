"""Monitoring's reads and records: windows, summaries, runs."""
