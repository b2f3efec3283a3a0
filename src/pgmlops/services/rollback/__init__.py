"""Automatic rollback: the watch after a promotion and its signals."""
