"""Monitoring runs, their signals, aggregates and the HTML report."""
