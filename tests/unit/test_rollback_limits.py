"""The watch's limits (domain/rollback_limits.py) and the `rollback:` settings section."""

from __future__ import annotations

import pytest

from pgmlops.config import load_settings
from pgmlops.domain.rollback_limits import (
    error_rate_verdict,
    labelled_look,
    latency_verdict,
    wilson,
)
from pgmlops.errors import ConfigError

ERRORS = {"increase": 0.02, "alpha": 0.01, "min_requests": 50, "version": 2, "previous": 1}
LATENCY = {
    "ratio": 3.0,
    "margin_ms": 50.0,
    "ceiling_ms": None,
    "min_rows": 200,
    "version": 2,
    "previous": 1,
}


def test_wilson_bounds_hold_the_proportion_and_tighten_with_more_trials() -> None:
    lo, hi = wilson(5, 100, 0.01)
    assert lo < 0.05 < hi
    lo2, hi2 = wilson(50, 1_000, 0.01)
    assert hi2 - lo2 < hi - lo
    assert wilson(0, 0, 0.01) == (0.0, 1.0)


def test_error_rate_alarms_only_on_a_significant_rise_beyond_the_margin() -> None:
    assert not error_rate_verdict(3, 40, 0, 1_000, **ERRORS).crossed  # too few requests
    assert not error_rate_verdict(2, 200, 1, 1_000, **ERRORS).crossed  # 1% vs 0.1%: noise
    bad = error_rate_verdict(30, 60, 0, 60, **ERRORS)
    assert bad.crossed and "error rate 50.0% of 60 requests" in bad.detail
    assert bad.figures["previous_requests"] == 60
    # A previous version that already failed as much is no reason to roll back.
    assert not error_rate_verdict(30, 60, 300, 600, **ERRORS).crossed


def test_client_errors_are_shown_beside_the_server_error_rate_and_never_alarm() -> None:
    clients_wrong = error_rate_verdict(0, 60, 0, 60, **ERRORS, refused=30)
    assert not clients_wrong.crossed
    assert clients_wrong.figures["refused"] == 30
    assert "server error rate 0.0% of 60 requests" in clients_wrong.detail
    assert "30 refused as client errors, not counted" in clients_wrong.detail


def test_labels_are_judged_at_a_fixed_number_of_checkpoints_however_often_checked() -> None:
    assert labelled_look(29, 30, 7) is None
    assert labelled_look(30, 30, 7) == (30, 1)
    assert labelled_look(59, 30, 7) == (30, 1)  # a check between checkpoints: the same look
    assert labelled_look(60, 30, 7) == (60, 2)
    assert labelled_look(400, 30, 7) == (240, 4)
    # Every label count from 30 to a million gives one of 7 looks, never an eighth.
    seen = {labelled_look(n, 30, 7) for n in range(30, 1_000_000, 7)}
    assert seen == {(30 * 2**k, k + 1) for k in range(7)}


def test_latency_needs_the_ratio_and_the_margin_or_the_ceiling() -> None:
    assert not latency_verdict(9.0, 500, 2.0, 500, **LATENCY).crossed  # 4.5x but +7 ms
    assert latency_verdict(120.0, 500, 20.0, 500, **LATENCY).crossed
    assert not latency_verdict(120.0, 100, 20.0, 500, **LATENCY).crossed  # too few rows
    capped = {**LATENCY, "ceiling_ms": 100.0}
    assert latency_verdict(120.0, 500, None, 0, **capped).crossed


def test_a_bad_rollback_setting_is_one_line_naming_the_key(monkeypatch) -> None:
    monkeypatch.setenv("PGMLOPS_ROLLBACK__WATCH_HOURS", "-1")
    with pytest.raises(ConfigError, match=r"rollback\.watch_hours"):
        load_settings()
    monkeypatch.setenv("PGMLOPS_ROLLBACK__WATCH_HOURS", "24")
    assert load_settings().rollback.auto_rollback is True
