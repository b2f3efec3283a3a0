"""Retraining: triggers, the retraining set and its runs."""
