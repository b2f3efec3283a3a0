"""Serving, pure: request fields, ranges, the prediction log's health."""
