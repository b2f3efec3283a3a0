"""A monitoring window is judged in one place, the same for the CLI, Python and the service."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgmlops.errors import ConfigError
from pgmlops.services.monitoring.run import check_window, window_of


def test_a_window_is_the_newest_rows_or_a_duration_or_the_default() -> None:
    assert check_window() == (None, None)
    assert check_window(last=500) == (500, None)
    assert check_window(since="24h") == (None, timedelta(hours=24))
    assert window_of(500) == (500, None)
    assert window_of("7d") == (None, timedelta(days=7))
    assert window_of(timedelta(minutes=30)) == (None, timedelta(minutes=30))
    assert window_of(None) == (None, None)


@pytest.mark.parametrize(
    ("last", "since", "message"),
    [
        (10, "1h", "not both"),
        (0, None, "at least 1 row"),
        (True, None, "whole number"),
        (None, "yesterday", "not a duration"),
        (None, "0h", "longer than zero"),
        (None, timedelta(0), "longer than zero"),
        (None, 5, "like '24h'"),
    ],
)
def test_a_bad_window_is_one_line_in_python_terms(last, since, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        check_window(last, since)
    assert "--" not in str(refused.value)


@pytest.mark.parametrize("window", [True, [1], 2.5])
def test_window_takes_a_row_count_or_a_duration_only(window) -> None:
    with pytest.raises(ConfigError, match="window= must be"):
        window_of(window)
