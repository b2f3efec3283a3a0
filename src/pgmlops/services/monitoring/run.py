"""Monitoring: a version's live traffic against its training reference, without and with labels.

One run reads a window of the prediction log and answers four questions, each with a
verdict and the numbers behind it: did the inputs (or outputs) drift, did the model's
confidence decay, does the model look worse judging by its own calibrated probabilities
(CBPE), and — where feedback labels exist — is it measurably worse. Every run is stored in
``monitoring_runs``; the retraining triggers read ``dataset_drift``, ``confidence``,
``estimated_performance``, ``labelled_performance`` and ``reasons``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pgmlops.config import MonitoringConfig
from pgmlops.domain.kinds import Task
from pgmlops.domain.monitoring.distributions import distributions
from pgmlops.domain.monitoring.drift import compare
from pgmlops.domain.monitoring.profile_records import ReferenceProfile
from pgmlops.domain.registry.records import PRODUCTION, ModelVersion
from pgmlops.errors import ConfigError, DataError, NotFoundError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.aggregates import (
    assess_summary,
    reads_aggregates,
    summarise_window,
)
from pgmlops.services.monitoring.labelled_performance import labelled_performance
from pgmlops.services.monitoring.result import (
    MonitoringResult,
    load_profile,
    model_inputs,
    reasons,
)
from pgmlops.services.monitoring.signals import confidence_signal, estimated_performance, finite
from pgmlops.store.monitoring.prediction_windows import PredictionWindow, read_window
from pgmlops.store.monitoring.runs import MonitoringRun, MonitoringStore

# Categorical plots show this many categories; the rest are pooled.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_MAX_WINDOW_SECONDS = 36_500 * 86_400
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class HistoryPoint(BaseModel):
    """One run reduced to the numbers a time series plots."""

    run_id: int
    created_at: datetime
    version: int
    rows: int
    share_drifted: float | None
    dataset_drift: bool
    prediction_drift: bool | None
    mean_confidence: float | None
    primary_metric: str | None
    estimated_primary: float | None
    labelled_primary: float | None
    n_labels: int
    reasons: list[str]
    status: str = Field(description="the run's overall status: ok, warning or degraded")


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d' or '2w' as a timedelta; ConfigError otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ConfigError(
            f"{text!r} is not a duration; use a number and a unit, e.g. 30m, 24h or 7d"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be longer than zero")
    if seconds > _MAX_WINDOW_SECONDS:
        # Older than any logged prediction anyway, and `now - window` would leave the calendar.
        raise ConfigError(f"duration {text!r} is too long: at most 36500d (100 years)")
    return timedelta(seconds=seconds)


def check_window(
    last: int | None = None, since: str | timedelta | None = None
) -> tuple[int | None, timedelta | None]:
    """The window as (last, since), checked: at most one, N >= 1 rows or a positive duration.

    The one place a monitoring window is judged: the CLI, the Python API and run_monitor call
    it, each before doing any work.
    """
    if last is not None and since is not None:
        raise ConfigError("choose one window: the newest N rows or a duration, not both")
    if last is not None:
        if isinstance(last, bool) or not isinstance(last, int):
            raise ConfigError(f"a window's row count must be a whole number, got {last!r}")
        if last < 1:
            raise ConfigError(f"a window needs at least 1 row, got {last}")
    if isinstance(since, str):
        since = parse_duration(since)
    elif since is not None and not isinstance(since, timedelta):
        raise ConfigError(f"a window's duration must be like '24h' or a timedelta, got {since!r}")
    if since is not None and since.total_seconds() <= 0:
        raise ConfigError("a window's duration must be longer than zero")
    return last, since


def window_of(window: int | str | timedelta | None) -> tuple[int | None, timedelta | None]:
    """One `window=` value as (last, since): a row count, or a duration ('24h', a timedelta)."""
    if isinstance(window, int) and not isinstance(window, bool):
        return check_window(last=window)
    if window is None or isinstance(window, str | timedelta):
        return check_window(since=window)
    raise ConfigError("window= must be a row count, a duration like '24h' or a timedelta")


def run_monitor(
    ctx: Context,
    model_name: str | None = None,
    *,
    last: int | None = None,
    since: timedelta | None = None,
    version: int | None = None,
    store_run: bool = True,
) -> MonitoringResult:
    """Monitor production (or ``version``) over its newest ``last`` rows or those ``since``."""
    settings = ctx.settings.monitoring
    name = model_name or ctx.settings.model_name
    last, since = check_window(last, since)
    if last is None and since is None:
        last = settings.window
    mv = _monitored_version(ctx, name, version)
    card, schema = mv.card, mv.card.feature_schema
    profile = load_profile(ctx, mv)
    start = datetime.now(UTC) - since if since is not None else None
    store = MonitoringStore(ctx.db)
    if reads_aggregates(ctx, mv):
        summary = summarise_window(ctx, mv, profile, settings, last=last, since=start)
        _check_rows(name, mv.version, summary.rows, settings.drift.min_rows, last, start)
        result = assess_summary(ctx, mv, summary, settings, profile=profile)
        return _finish(store, result, last, start, store_run)
    columns = [(f.name, f.kind) for f in schema.features]
    window = read_window(
        ctx.db,
        name,
        mv.version,
        columns,
        classes=card.classes if card.task == "multiclass" else None,
        last=last,
        since=start,
    )
    _check_rows(name, mv.version, len(window), settings.drift.min_rows, last, start)
    result = assess_window(ctx, mv, window, settings, profile=profile)
    return _finish(store, result, last, start, store_run)


def _check_rows(
    name: str, version: int, rows: int, min_rows: int, last: int | None, start: datetime | None
) -> None:
    if rows < min_rows:
        scope = f"the last {last:,} rows" if last is not None else f"since {start:%Y-%m-%d %H:%M}Z"
        raise DataError(
            f"{name} v{version} has {rows:,} logged predictions ({scope}); "
            f"monitoring needs at least {min_rows:,} (monitoring.drift.min_rows)"
        )


def _finish(
    store: MonitoringStore,
    result: MonitoringResult,
    last: int | None,
    start: datetime | None,
    store_run: bool,
) -> MonitoringResult:
    """Record the window's bounds and store the run when asked."""
    result.window.update(last=last, since=start)
    if store_run:
        run = store.add_run(
            result.model_name,
            result.version,
            finite(_jsonable(result.window)),
            _stored(result),
            result.dataset_drift,
        )
        result.run_id, result.created_at = run.id, run.created_at
    return result


def assess_window(
    ctx: Context,
    mv: ModelVersion,
    window: PredictionWindow,
    settings: MonitoringConfig,
    *,
    profile: ReferenceProfile | None = None,
) -> MonitoringResult:
    """Every signal of one window of ``mv``'s predictions, as ``run_monitor`` reports them.

    Everything after reading the window and before storing the run, so a benchmark can feed
    in-process windows through exactly the code path of ``pgmlops monitor``.
    """
    card, schema = mv.card, mv.card.feature_schema
    if profile is None:
        profile = load_profile(ctx, mv)
    features = model_inputs(window.features, schema.numeric)
    scores = _output_scores(window, card.task) if profile.output is not None else None
    drift = compare(profile, features, settings.drift, scores=scores, schema=schema)
    estimated = estimated_performance(ctx, mv, window, settings)
    result = MonitoringResult(
        model_name=mv.model_name,
        version=mv.version,
        task=card.task,
        created_at=datetime.now(UTC),
        window={
            "rows": len(window),
            "first_at": window.first_at,
            "last_at": window.last_at,
            "last": None,
            "since": None,
            "labelled": int(window.outputs["label"].notna().sum()),
        },
        drift=drift,
        dataset_drift=drift.dataset_drift,
        prediction_drift=drift.output.drifted if drift.output is not None else None,
        confidence=confidence_signal(ctx, mv, window, settings, estimated=estimated),
        estimated_performance=estimated,
        labelled_performance=labelled_performance(ctx, mv, window, settings),
        distributions=distributions(profile, features, scores),
        reasons=[],
    )
    result.reasons = reasons(result)
    return result


def latest_run(ctx: Context, model_name: str | None = None) -> MonitoringResult | None:
    """The newest stored run of a model, or None when it was never monitored."""
    run = MonitoringStore(ctx.db).latest_run(model_name or ctx.settings.model_name)
    return _from_run(run) if run is not None else None


def run_history(ctx: Context, model_name: str | None = None, limit: int = 50) -> list[HistoryPoint]:
    """The last ``limit`` runs as time-series points, oldest first."""
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    runs = MonitoringStore(ctx.db).list_runs(model_name or ctx.settings.model_name, limit)
    return [_point(run) for run in reversed(runs)]


# -- the version and its window ---------------------------------------------------------


def _monitored_version(ctx: Context, name: str, version: int | None) -> ModelVersion:
    if version is None:
        version = ctx.registry.alias_version(name, PRODUCTION)
        if version is None:
            raise NotFoundError(
                f"model {name!r} has no production version; promote one or name a version"
            )
    return ctx.registry.get_version(name, version)


def _output_scores(window: PredictionWindow, task: Task) -> np.ndarray:
    """The outputs as the reference profile holds them: P(positive), classes or values."""
    out = window.outputs
    if task == "binary":
        return out["probability"].to_numpy(dtype=np.float64)
    if task == "multiclass":
        return out["prediction"].to_numpy(dtype=object)
    return pd.to_numeric(out["prediction"], errors="coerce").to_numpy(dtype=np.float64)


# -- stored runs ------------------------------------------------------------------------


def _jsonable(window: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in window.items()}


def _stored(result: MonitoringResult) -> dict[str, Any]:
    report = result.to_json()
    report.pop("run_id", None)
    return report


def _from_run(run: MonitoringRun) -> MonitoringResult:
    return MonitoringResult.model_validate(
        {**run.report, "run_id": run.id, "created_at": run.created_at}
    )


def _point(run: MonitoringRun) -> HistoryPoint:
    report = run.report
    drift = report.get("drift") or {}
    estimated = report.get("estimated_performance") or {}
    labelled = report.get("labelled_performance") or {}
    metric = estimated.get("metric") or labelled.get("metric")
    return HistoryPoint(
        run_id=run.id,
        created_at=run.created_at,
        version=run.version,
        rows=int((report.get("window") or {}).get("rows") or 0),
        share_drifted=drift.get("share_drifted"),
        dataset_drift=run.dataset_drift,
        prediction_drift=report.get("prediction_drift"),
        mean_confidence=(report.get("confidence") or {}).get("current"),
        primary_metric=metric,
        estimated_primary=(estimated.get("metrics") or {}).get(metric),
        labelled_primary=(labelled.get("metrics") or {}).get(labelled.get("metric") or metric),
        n_labels=int(labelled.get("n_labels") or 0),
        reasons=list(report.get("reasons") or []),
        status=(report.get("status") or {}).get("level")
        or ("degraded" if report.get("reasons") else "ok"),
    )
