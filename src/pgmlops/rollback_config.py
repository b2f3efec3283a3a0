"""The `rollback:` settings section: the watch after every promotion and its limits.

Defaults and the numbers behind them are in docs/live-deployments.md (automatic rollback).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RollbackConfig(BaseModel):
    """When `pgmlops worker` restores the previous production version on its own."""

    model_config = ConfigDict(extra="forbid")

    auto_rollback: bool = Field(
        True,
        description="watch every promotion and restore the previous production version when "
        "the new one crosses a limit below (off: promotions are never undone automatically)",
    )
    watch_hours: float = Field(
        24.0,
        gt=0.0,
        le=24.0 * 90,
        description="how long after a promotion the new production version is watched",
    )
    check_seconds: float = Field(
        60.0,
        gt=0.0,
        description="how often the worker checks a version under watch",
    )
    baseline_hours: float = Field(
        24.0 * 7,
        gt=0.0,
        description="the previous version's live figures come from its rows in this many "
        "hours before the promotion",
    )
    # 0.001: the error-rate and drift checks repeat every minute for a day (their effect
    # floors, not alpha, keep them quiet); the labelled comparison has its own level below.
    alpha: float = Field(
        0.001,
        gt=0.0,
        lt=0.5,
        description="error rate and prediction drift alarm only on a difference significant at "
        "this level (one-sided); the check repeats during the watch, so it is stricter than "
        "monitoring's",
    )
    # Error rate: requests that failed (5xx, scoring raised) over all requests the version was
    # asked, counted by every serving process in `serving_counts`. Refused requests (4xx: a
    # bad body, an unknown field) are the client's mistake and are shown, never alarmed on.
    error_rate_increase: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="alarm when the error rate's lower bound exceeds the previous version's "
        "upper bound by this much (absolute, 0.02 = 2 points)",
    )
    min_requests: int = Field(
        50,
        ge=1,
        description="requests the new version must have been asked before its error "
        "rate and latency can alarm",
    )
    latency_ratio: float = Field(
        3.0,
        gt=1.0,
        description="alarm when the p99 latency exceeds the previous version's p99 by this "
        "factor (and by latency_margin_ms)",
    )
    latency_margin_ms: float = Field(
        50.0,
        ge=0.0,
        description="a p99 rise smaller than this many milliseconds never alarms (a 3x rise "
        "of 2 ms is noise)",
    )
    latency_p99_ms: float | None = Field(
        None,
        gt=0.0,
        description="also alarm when the p99 latency exceeds this many milliseconds (off)",
    )
    # 1,000: p99 is then the 10th slowest row; at 200 rows (the 2nd slowest) one stall of a
    # loaded machine rolled a healthy version back (bench/rollback_rates.py).
    min_latency_rows: int = Field(
        1_000,
        ge=100,
        description="rows needed before p99 latency can alarm (p99 of few rows is one stall)",
    )
    performance_drop: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="labelled performance alarms when the primary metric is worse than the "
        "previous version's by this fraction, significantly",
    )
    # 1,000: a live baseline of 200 labels that happened to score high made its bootstrap
    # null too narrow and rolled healthy retrains back (3 of 37 periods in the bench).
    baseline_labels: int = Field(
        1_000,
        ge=30,
        description="labelled rows of the previous version needed to compare with its live "
        "figure; with fewer, its held-out reference outputs are the baseline",
    )
    min_labels: int = Field(
        30,
        ge=10,
        description="labelled rows of the new version needed before its labelled "
        "performance can alarm (its first look)",
    )
    # A look at every check (each minute, or every 40 labels in the bench) at alpha 0.001
    # rolled healthy retrains back in 3 of 102 watch periods (bench/rollback_rates.py): each
    # look is another chance. Looks at fixed label counts bound the chance for the whole watch.
    labelled_looks: int = Field(
        7,
        ge=1,
        le=20,
        description="labelled performance is judged at min_labels x 2^k labels, k < this "
        "(30, 60, ..., 1,920), each on the oldest labels; later labels are not judged",
    )
    labelled_alpha: float = Field(
        0.005,
        gt=0.0,
        lt=0.5,
        description="chance that a healthy version is rolled back on its labels over the whole "
        "watch: split evenly over labelled_looks (Bonferroni), one-sided at each look",
    )
    # 1.0: two healthy retrains of the demo model differed by PSI 0.28 to 0.63 on a few
    # hundred rows (bench/rollback_rates.py); a model whose outputs are inverted is beyond 2.
    drift_psi: float = Field(
        1.0,
        ge=0.0,
        description="prediction drift alarms when the new version's outputs differ from the "
        "previous version's on the same inputs by at least this PSI (or Wasserstein-1 / std), "
        "significantly",
    )
    drift_js: float = Field(
        0.5, ge=0.0, le=1.0, description="class outputs: Jensen-Shannon distance (base 2)"
    )
    drift_rows: int = Field(
        2_000,
        ge=200,
        le=50_000,
        description="the newest rows of the new version the previous one re-scores for the "
        "prediction drift test",
    )
