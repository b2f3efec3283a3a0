"""Promotion, pure: the champion/challenger gates."""
