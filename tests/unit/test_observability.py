"""Logging set-up of the HTTP service."""

from __future__ import annotations

import logging

import pytest

from pgmlops.api.observability import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_uvicorn_writes_no_access_line_per_request_by_default() -> None:
    configure_logging("INFO")
    # uvicorn checks hasHandlers() per connection to decide whether to log each request.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()


def test_access_log_can_be_switched_on() -> None:
    configure_logging("INFO", access_log=True)
    assert logging.getLogger("uvicorn.access").hasHandlers()
