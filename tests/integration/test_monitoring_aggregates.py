"""Monitoring from aggregates (PostgreSQL) gives the verdicts the row path gives.

On PostgreSQL ``run_monitor`` asks the database for counts instead of reading the window's
rows. Each test logs real traffic, then judges the same window both ways — the rows through
``read_window`` + ``assess_window`` (the path the honesty benchmark measures) and the counts
through ``summarise_window`` + ``assess_summary`` — and requires the same numbers: exactly
(to float rounding) for drift, confidence, threshold metrics, log loss and Brier, and to
within-bin ties for AUCs. Behaviour that must hold on either database runs on both.
"""

# The fixtures imported from test_monitoring are redefined as test arguments, by design.
# ruff: noqa: F811

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import ModelVersion, PredictionRecord
from pgmlops.errors import DataError
from pgmlops.services.commands import promote_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.aggregates import (
    assess_summary,
    reads_aggregates,
    summarise_window,
)
from pgmlops.services.monitoring.run import (
    MonitoringResult,
    assess_window,
    load_profile,
    run_monitor,
)
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.services.worker import Worker
from pgmlops.store.monitoring.log_summaries import hour_start, last_closed_hour
from pgmlops.store.monitoring.prediction_windows import read_window
from pgmlops.store.prediction_log.predictions import PredictionStore
from tests.integration.test_monitoring import (  # noqa: F401 (fixtures)
    ACTOR,
    log_traffic,
    production,
    spend_frame,
    trained_churn,
    trained_spend,
    with_policy,
)

# AUCs from fine score bins count rows of one bin as tied: a bin holds ~0.1% of the
# reference scores, so at most ~0.001 of the pairs are tied that the rows would order.
AUC_TOLERANCE = 2e-3
EXACT = 1e-9


def both_paths(
    ctx: Context, name: str, last: int | None = None
) -> tuple[MonitoringResult, MonitoringResult]:
    """The production version's window judged from rows and from PostgreSQL's counts."""
    mv = ctx.registry.get_version(name, ctx.registry.alias_version(name, "production"))
    settings = ctx.settings.monitoring
    profile = load_profile(ctx, mv)
    columns = [(f.name, f.kind) for f in mv.card.feature_schema.features]
    window = read_window(ctx.db, name, mv.version, columns, last=last)
    rows = assess_window(ctx, mv, window, settings, profile=profile)
    summary = summarise_window(ctx, mv, profile, settings, last=last)
    counts = assess_summary(ctx, mv, summary, settings, profile=profile)
    return rows, counts


def postgres_only(ctx: Context) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("SQLite reads rows: there is no aggregate path to compare")


def assert_same_drift(rows: MonitoringResult, counts: MonitoringResult) -> None:
    assert counts.window["rows"] == rows.window["rows"]
    assert counts.window["labelled"] == rows.window["labelled"]
    # The row path reads times as float seconds, a microsecond off at times.
    for end in ("first_at", "last_at"):
        assert abs(counts.window[end] - rows.window[end]) < timedelta(milliseconds=1)
    pairs = list(zip(rows.drift.features, counts.drift.features, strict=True))
    if rows.drift.output is not None:
        assert counts.drift.output is not None
        pairs.append((rows.drift.output, counts.drift.output))
    for r, c in pairs:
        assert c.name == r.name and c.test == r.test
        for field in ("statistic", "p_value", "p_adjusted", "psi", "missing_rate_current"):
            assert getattr(c, field) == pytest.approx(getattr(r, field), rel=EXACT, abs=EXACT)
        for field in ("wasserstein_norm", "js"):
            if getattr(r, field) is None:
                assert getattr(c, field) is None
            else:
                assert getattr(c, field) == pytest.approx(getattr(r, field), rel=1e-7)
        assert c.unseen_categories == r.unseen_categories
        assert c.effect_thresholds == pytest.approx(r.effect_thresholds, rel=EXACT)
        assert c.drifted == r.drifted, f"{r.name}: {r.reason} vs {c.reason}"
    assert counts.drift.drifted_features == rows.drift.drifted_features
    assert counts.prediction_drift == rows.prediction_drift


def assert_same_block(
    rows: dict[str, Any], counts: dict[str, Any], *, tolerances: dict[str, float]
) -> None:
    assert counts["metric"] == rows["metric"]
    assert set(counts["metrics"]) == set(rows["metrics"])
    for metric, value in rows["metrics"].items():
        if value is None:
            assert counts["metrics"][metric] is None, metric
        else:
            tol = tolerances.get(metric, EXACT)
            assert counts["metrics"][metric] == pytest.approx(value, abs=tol, rel=tol), metric
    assert counts["significant"] == rows["significant"]
    assert counts["degraded"] == rows["degraded"]


def test_aggregates_agree_with_rows_on_drift_labels_confidence_and_cbpe(
    ctx: Context, production: int
) -> None:
    postgres_only(ctx)
    frame = make_churn(3_000, seed=31, numeric_shift=0.6)
    frame.loc[frame.index[:150], "Age"] = np.nan  # missing values, counted as a bin of their own
    frame.loc[frame.index[150:400], "Geography"] = "Atlantis"  # a category never seen
    labelled = log_traffic(ctx, frame, production)
    feedback = PredictionStore(ctx.db)
    feedback.add_feedback(labelled[:1_200])
    feedback.add_feedback([(pid, "maybe") for pid, _ in labelled[1_200:1_210]])
    mv = ctx.registry.get_version("churn", production)
    assert reads_aggregates(ctx, mv)

    rows, counts = both_paths(ctx, "churn")
    assert_same_drift(rows, counts)
    age = counts.drift.feature("Age")
    assert age.missing_rate_current == pytest.approx(150 / 3_000)
    assert counts.drift.feature("Geography").unseen_categories == ["Atlantis"]
    assert counts.drift.dataset_drift == rows.drift.dataset_drift
    assert counts.distributions["Age"] == rows.distributions["Age"]
    assert counts.distributions["Geography"] == rows.distributions["Geography"]

    for field in ("current", "p_value", "reference", "drop"):
        assert counts.confidence[field] == pytest.approx(rows.confidence[field], rel=EXACT)
    assert counts.confidence["degraded"] == rows.confidence["degraded"]

    auc = {"roc_auc": AUC_TOLERANCE, "pr_auc": AUC_TOLERANCE}
    assert_same_block(rows.estimated_performance, counts.estimated_performance, tolerances=auc)
    assert counts.estimated_performance["rows"] == rows.estimated_performance["rows"]
    assert counts.estimated_performance["p_value"] == pytest.approx(
        rows.estimated_performance["p_value"], abs=0.02
    )
    labelled_rows, labelled_counts = rows.labelled_performance, counts.labelled_performance
    assert labelled_counts["n_labels"] == labelled_rows["n_labels"] == 1_200
    assert labelled_counts["bad_labels"] == labelled_rows["bad_labels"]
    assert_same_block(labelled_rows, labelled_counts, tolerances=auc)
    # The confusion matrix the report draws: the same counts from rows and from groups.
    assert labelled_counts["view"] == labelled_rows["view"]
    assert labelled_counts["view"]["kind"] == "confusion"
    assert [r.split(":")[0] for r in counts.reasons] == [r.split(":")[0] for r in rows.reasons]


def test_aggregates_flag_what_rows_flag_on_a_strong_shift(ctx: Context, production: int) -> None:
    postgres_only(ctx)
    frame = make_churn(2_000, seed=32, numeric_shift=1.5)
    labelled = log_traffic(ctx, frame, production)
    PredictionStore(ctx.db).add_feedback([(pid, "0" if y == "1" else "1") for pid, y in labelled])
    rows, counts = both_paths(ctx, "churn")
    assert_same_drift(rows, counts)
    assert counts.dataset_drift and rows.dataset_drift
    assert counts.drift.multivariate is not None and counts.drift.multivariate.drifted
    assert counts.labelled_performance["degraded"] and rows.labelled_performance["degraded"]
    assert counts.reasons[0].startswith("data drift")


def test_a_window_without_labels_has_no_labelled_metrics(ctx: Context, production: int) -> None:
    log_traffic(ctx, make_churn(600, seed=33), production)
    result = run_monitor(ctx, "churn")
    assert result.window["labelled"] == 0
    perf = result.labelled_performance
    assert perf["n_labels"] == 0 and perf["metrics"] == {} and not perf["degraded"]
    if ctx.db.is_postgres:
        assert result.window["read"] == "aggregates"
        rows, counts = both_paths(ctx, "churn")
        assert counts.labelled_performance == rows.labelled_performance


def test_missing_values_and_unseen_categories_are_counted(ctx: Context, production: int) -> None:
    frame = make_churn(800, seed=34)
    frame.loc[frame.index[:200], "Balance"] = np.nan
    frame.loc[frame.index[:300], "Geography"] = "Mars"
    log_traffic(ctx, frame, production)
    result = run_monitor(ctx, "churn")
    balance = result.drift.feature("Balance")
    assert balance.missing_rate_current == pytest.approx(0.25)
    assert balance.drifted, "a quarter of a column gone blank is drift"
    geography = result.drift.feature("Geography")
    assert geography.unseen_categories == ["Mars"] and geography.drifted
    shares = result.distributions["Balance"]
    assert shares["labels"][-1] == "missing" and shares["current"][-1] == pytest.approx(0.25)


def test_the_newest_rows_are_counted_when_a_batch_shares_the_cutoff_time(
    ctx: Context, production: int
) -> None:
    postgres_only(ctx)
    mv = ctx.registry.get_version("churn", production)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    frame = make_churn(500, seed=35)
    names = mv.card.feature_schema.names
    records = [
        PredictionRecord(
            id=str(uuid.uuid4()),
            model_name="churn",
            version=production,
            created_at=base + timedelta(minutes=i // 100),
            features={k: _plain(v) for k, v in row.items()},
            prediction="0",
            probability=0.2,
            confidence=0.6,
            output=None,
            latency_ms=1.0,
            request_id=None,
        )
        for i, row in enumerate(frame[names].to_dict("records"))
    ]
    PredictionStore(ctx.db).write_batch(records)
    summary = summarise_window(ctx, mv, load_profile(ctx, mv), ctx.settings.monitoring, last=250)
    assert summary.rows == 250
    assert summary.first_at == base + timedelta(minutes=2)
    assert summary.last_at == base + timedelta(minutes=4)


def test_infinite_numbers_are_refused_on_both_paths(ctx: Context, production: int) -> None:
    mv = ctx.registry.get_version("churn", production)
    frame = make_churn(300, seed=36)
    names = mv.card.feature_schema.names
    records = [
        PredictionRecord(
            id=str(uuid.uuid4()),
            model_name="churn",
            version=production,
            created_at=datetime.now(UTC),
            features={k: _plain(v) for k, v in row.items()}
            | ({"Balance": 1e300} if i == 0 else {}),
            prediction="0",
            probability=0.2,
            confidence=0.6,
            output=None,
            latency_ms=1.0,
            request_id=None,
        )
        for i, row in enumerate(frame[names].to_dict("records"))
    ]
    PredictionStore(ctx.db).write_batch(records)
    with pytest.raises(DataError, match="'Balance' has infinite values"):
        run_monitor(ctx, "churn")


def test_float32_limits_and_numeric_text_are_counted_as_the_rows_count_them(
    ctx: Context, production: int
) -> None:
    postgres_only(ctx)
    mv = ctx.registry.get_version("churn", production)
    names = mv.card.feature_schema.names
    odd: dict[int, object] = {
        0: 3.4028235e38,  # rounds to the largest float32: finite
        1: -3.4028235e38,
        2: 1e-40,  # a float32 subnormal
        3: " 1250.5 ",  # numeric text
        4: "n/a",  # text: missing
        5: True,  # not a number: missing
    }
    records = [
        PredictionRecord(
            id=str(uuid.uuid4()),
            model_name="churn",
            version=production,
            created_at=datetime.now(UTC),
            features={k: _plain(v) for k, v in row.items()}
            | ({"Balance": odd[i]} if i in odd else {}),
            prediction="0",
            probability=0.2,
            confidence=0.6,
            output=None,
            latency_ms=1.0,
            request_id=None,
        )
        for i, row in enumerate(make_churn(400, seed=37)[names].to_dict("records"))
    ]
    PredictionStore(ctx.db).write_batch(records)
    rows, counts = both_paths(ctx, "churn")
    assert_same_drift(rows, counts)
    balance = counts.drift.feature("Balance")
    assert balance.missing_rate_current == pytest.approx(2 / 400)


def test_regression_aggregates_agree_and_the_estimate_uses_a_sample(
    ctx: Context, trained_spend: tuple[ModelCard, dict[str, bytes]]
) -> None:
    card, blobs = trained_spend
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("spend", number, fs)  # noqa: E731
    version = ctx.registry.create_version("spend", files, card, ACTOR, sign=sign).version
    promote_command(ctx, model_name="spend", version=version, force=True, reason="t", actor=ACTOR)
    mv = ctx.registry.get_version("spend", version)
    frame = spend_frame(2_000, seed=7, shift=1.0)
    ids = _log_spend(ctx, mv, frame)
    store = PredictionStore(ctx.db)
    truth = frame["Spend"].to_numpy()[:700]
    store.add_feedback([(pid, str(y)) for pid, y in zip(ids[:700], truth, strict=True)])
    store.add_feedback([(pid, "lots") for pid in ids[700:703]])
    result = run_monitor(ctx, "spend")
    labelled = result.labelled_performance
    assert labelled["n_labels"] == 700
    assert labelled["bad_labels"] == {"count": 3, "examples": ["lots"]}
    estimated = result.estimated_performance
    assert estimated["degraded"], "older customers: a larger error no label has shown yet"
    if not ctx.db.is_postgres:
        return
    assert estimated["rows"] == 2_000 and "sample" in estimated["note"]
    rows, counts = both_paths(ctx, "spend")
    assert_same_drift(rows, counts)
    assert_same_block(rows.labelled_performance, counts.labelled_performance, tolerances={})
    # The estimate from a sample of the whole window is the same estimate.
    for metric in ("mae", "rmse"):
        assert counts.estimated_performance["metrics"][metric] == pytest.approx(
            rows.estimated_performance["metrics"][metric], rel=1e-9
        )


def _log_spend(ctx: Context, mv: ModelVersion, frame: pd.DataFrame) -> list[str]:
    import time

    from pgmlops.services.serving.load import load_version
    from pgmlops.services.serving.prediction import predict_records

    model = load_version(ctx, mv)
    rows = frame[mv.card.feature_schema.names].to_dict("records")
    _, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    PredictionStore(ctx.db).write_batch(records)
    return [r.id for r in records]


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def scored(ctx: Context, version: int, frame: pd.DataFrame) -> list[PredictionRecord]:
    """The records the server would log for ``frame`` (times: now; the caller moves them)."""
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    names = model.card.feature_schema.names
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    _, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    return records


def _stored_hours(ctx: Context) -> dict[int, tuple[int, datetime]]:
    from sqlalchemy import text

    with ctx.db.engine.connect() as conn:
        found = conn.execute(text("SELECT hour, rows, written_at FROM log_summaries"))
        return {int(h): (int(n), at) for h, n, at in found}


def test_closed_hours_are_summed_once_and_scanned_again_when_their_rows_change(
    ctx: Context, production: int
) -> None:
    postgres_only(ctx)
    frame = make_churn(2_000, seed=37, numeric_shift=0.4)
    records = scored(ctx, production, frame)
    # Three closed hours, 500 rows each, and 500 rows of the last minutes (never stored).
    now = datetime.now(UTC)
    start = hour_start(last_closed_hour(now) - 2)
    for i, record in enumerate(records[:1_500]):
        record.created_at = start + timedelta(hours=i // 500, seconds=(i % 500) * 3)
    for i, record in enumerate(records[1_500:]):
        record.created_at = now - timedelta(seconds=500 - i)
    store = PredictionStore(ctx.db)
    store.write_batch(records)

    first_rows, first_counts = both_paths(ctx, "churn")
    assert_same_drift(first_rows, first_counts)
    stored = _stored_hours(ctx)
    assert sorted(n for n, _ in stored.values()) == [500, 500, 500]

    # Labels arrive after their hours were stored: they are read from the labels every time.
    store.add_feedback(
        [(r.id, str(y)) for r, y in zip(records, frame["Exited"], strict=True)][:900]
    )
    again_rows, again_counts = both_paths(ctx, "churn")
    assert_same_drift(again_rows, again_counts)
    assert again_counts.labelled_performance["n_labels"] == 900
    auc = {"roc_auc": AUC_TOLERANCE, "pr_auc": AUC_TOLERANCE}
    assert_same_block(
        again_rows.labelled_performance, again_counts.labelled_performance, tolerances=auc
    )
    assert_same_block(
        again_rows.estimated_performance, again_counts.estimated_performance, tolerances=auc
    )
    assert _stored_hours(ctx) == stored  # summed, not scanned and written again
    # The newest 1,200 rows: the cutoff is found inside the second stored hour.
    cut_rows, cut_counts = both_paths(ctx, "churn", last=1_200)
    assert cut_counts.window["rows"] == cut_rows.window["rows"] == 1_200
    assert_same_drift(cut_rows, cut_counts)
    assert cut_counts.labelled_performance["n_labels"] == cut_rows.labelled_performance["n_labels"]

    # A row arriving late in the oldest hour (a replayed spill folder) changes its count.
    late = records[0]
    late.id, late.created_at = str(uuid.uuid4()), start + timedelta(minutes=30)
    store.write_batch([late])
    late_rows, late_counts = both_paths(ctx, "churn")
    assert late_counts.window["rows"] == late_rows.window["rows"] == 2_001
    assert_same_drift(late_rows, late_counts)
    now_stored = _stored_hours(ctx)
    oldest = min(now_stored)
    assert now_stored[oldest][0] == 501 and now_stored[oldest][1] > stored[oldest][1]
    assert {h: v for h, v in now_stored.items() if h != oldest} == {
        h: v for h, v in stored.items() if h != oldest
    }


def test_the_worker_summarises_closed_hours_and_monitoring_reads_them(
    ctx: Context, production: int
) -> None:
    postgres_only(ctx)
    records = scored(ctx, production, make_churn(600, seed=38))
    now = datetime.now(UTC)
    newest = last_closed_hour(now)
    # Two hours with rows, an empty one between them and one after.
    for i, record in enumerate(records):
        hour = newest - 3 if i < 300 else newest - 1
        record.created_at = hour_start(hour) + timedelta(seconds=(i % 300) * 10)
    PredictionStore(ctx.db).write_batch(records)

    worker = Worker(ctx, say=lambda _msg: None)
    worker.maintain(now)
    stored = _stored_hours(ctx)
    assert {h: n for h, (n, _) in stored.items()} == {
        newest - 3: 300,
        newest - 2: 0,
        newest - 1: 300,
        newest: 0,
    }
    assert worker.stats.hours_summarised == 4
    worker.maintain(now + timedelta(minutes=10))  # nothing new has closed
    assert _stored_hours(ctx) == stored

    rows_path, counts = both_paths(ctx, "churn")
    assert counts.window["rows"] == 600
    assert_same_drift(rows_path, counts)
    # The newest 600 rows are exactly the stored hours' rows: found from their counts.
    exact_rows, exact = both_paths(ctx, "churn", last=600)
    assert exact.window["rows"] == exact_rows.window["rows"] == 600
    assert_same_drift(exact_rows, exact)
    assert _stored_hours(ctx) == stored  # read, not scanned again
