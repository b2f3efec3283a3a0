"""The time-partitioned prediction log (PostgreSQL) and retention by age (both databases)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from pgmlops.config import Settings
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.domain.serving.partitions import period_of
from pgmlops.errors import ConfigError
from pgmlops.services.context import Context
from pgmlops.services.retention import (
    collect_garbage,
    drop_old_predictions,
    ensure_log_partitions,
    parse_age,
)
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.services.serving.prediction_log import PredictionLogWriter
from pgmlops.services.worker import Worker
from pgmlops.store.prediction_log.partitions import PartitionStore
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.tables import FeedbackRow


def _records(n: int, at: datetime) -> list[PredictionRecord]:
    return [
        PredictionRecord(i, "churn", 1, at, {"Age": 40.0}, "0", 0.2, 0.6, None, 1.0, "r")
        for i in prediction_ids(n)
    ]


def _postgres_only(ctx: Context) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("SQLite's prediction log is not partitioned")


def _where_rows_are(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM predictions GROUP BY 1")
        )
        return dict(rows.all())


def _label_age(ctx: Context, prediction_id: str, at: datetime) -> None:
    # Labels are stamped with the time they arrive; this one arrived at `at`.
    with ctx.db.session() as s:
        s.execute(
            update(FeedbackRow)
            .where(FeedbackRow.prediction_id == uuid.UUID(prediction_id))
            .values(created_at=at)
        )


def test_partitions_exist_for_the_current_period_and_the_next_two(ctx) -> None:
    _postgres_only(ctx)
    now = datetime.now(UTC)
    ensure_log_partitions(ctx)  # the template was migrated earlier: maybe nothing to do
    names = [p.name for p in PartitionStore(ctx.db).partitions()]
    this = period_of(now, "month")
    after = period_of(this.hi, "month")
    for r in (this, after, period_of(after.hi, "month")):
        assert r.name in names
    assert ensure_log_partitions(ctx) == []  # idempotent


def test_daily_partitions_start_where_the_monthly_ones_end(settings: Settings) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite's prediction log is not partitioned")
    daily = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"log_partition_period": "day"})}
    )
    ctx = Context(daily)
    try:
        covered_until = PartitionStore(ctx.db).partitions()[-1].range.hi
        # Two days before the monthly partitions end: only the days past them are created.
        created = ensure_log_partitions(ctx, covered_until - timedelta(days=2))
        assert created == [f"predictions_p{covered_until:%Y%m%d}"]
        parts = PartitionStore(ctx.db).partitions()
        assert all(a.range.hi <= b.range.lo for a, b in itertools.pairwise(parts))
    finally:
        ctx.close()


def test_rows_land_in_the_partition_of_their_time(ctx) -> None:
    _postgres_only(ctx)
    now = datetime.now(UTC)
    last_month = period_of(now, "month").lo - timedelta(days=3)
    store = PredictionStore(ctx.db)
    store.write_batch(_records(3, now) + _records(2, last_month))
    assert _where_rows_are(ctx) == {
        period_of(now, "month").name: 3,
        period_of(last_month, "month").name: 2,
    }


def test_a_row_older_than_every_partition_is_written_through_a_partition_made_for_it(
    ctx, tmp_path: Path
) -> None:
    """A spill replayed long after its rows were answered must not lose them."""
    two_years_ago = datetime.now(UTC) - timedelta(days=730)
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    writer.start()
    try:
        writer.submit(_records(4, datetime.now(UTC)) + _records(3, two_years_ago))
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert store.count("churn") == 7
    assert writer.counts["written"] == 7
    assert writer.counts["rejected"] == writer.counts["spilled"] == 0
    if ctx.db.is_postgres:
        assert _where_rows_are(ctx)[period_of(two_years_ago, "month").name] == 3


def test_a_row_dated_years_ahead_is_rejected_alone_and_leaves_no_partition(
    ctx, tmp_path: Path
) -> None:
    _postgres_only(ctx)
    store = PredictionStore(ctx.db)
    before = [p.name for p in PartitionStore(ctx.db).partitions()]
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    good = _records(5, datetime.now(UTC))
    wild = _records(1, datetime.now(UTC) + timedelta(days=5 * 365))
    writer.start()
    try:
        writer.submit(good + wild)
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert store.count("churn") == 5
    assert writer.counts["written"] == 5 and writer.counts["rejected"] == 1
    assert [p.name for p in PartitionStore(ctx.db).partitions()] == before


def test_a_replayed_row_is_stored_once_on_the_partitioned_table(ctx) -> None:
    store = PredictionStore(ctx.db)
    rows = _records(3, datetime.now(UTC) - timedelta(days=45))
    store.replay_batch(rows)
    store.replay_batch(rows + _records(1, datetime.now(UTC)))
    assert store.count("churn") == 4


def _old_and_new_log(ctx: Context) -> dict[str, list[PredictionRecord]]:
    now = datetime.now(UTC)
    log = {
        "old": _records(3, now - timedelta(days=200)),
        "older": _records(2, now - timedelta(days=150)),
        "recent": _records(4, now - timedelta(days=1)),
    }
    store = PredictionStore(ctx.db)
    store.write_batch([r for rows in log.values() for r in rows])
    labels = [(log["old"][0].id, "1"), (log["recent"][0].id, "0"), (log["older"][0].id, "1")]
    store.add_feedback(labels)
    _label_age(ctx, log["old"][0].id, now - timedelta(days=195))
    _label_age(ctx, log["older"][0].id, now - timedelta(days=100))
    return log


def test_gc_drops_whole_old_partitions_keeps_recent_ones_and_says_which(ctx) -> None:
    _postgres_only(ctx)
    log = _old_and_new_log(ctx)
    now = datetime.now(UTC)
    old_months = {period_of(now - timedelta(days=d), "month").name for d in (200, 150)}

    dry = drop_old_predictions(ctx, timedelta(days=90), dry_run=True)
    assert {p["name"] for p in dry["partitions_dropped"]} == old_months
    assert PredictionStore(ctx.db).count("churn") == 9

    report = drop_old_predictions(ctx, timedelta(days=90))
    assert {p["name"] for p in report["partitions_dropped"]} == old_months
    assert all(p["to"] <= report["cutoff"] for p in report["partitions_dropped"])
    remaining = {p.name for p in PartitionStore(ctx.db).partitions()}
    assert not remaining & old_months
    assert period_of(now, "month").name in remaining
    assert PredictionStore(ctx.db).count("churn") == len(log["recent"])
    assert report["labels_deleted"] == 2  # both given before the oldest kept prediction
    assert PredictionStore(ctx.db).feedback_history(log["recent"][0].id)


def test_gc_by_age_on_sqlite_deletes_old_rows_and_their_old_labels(ctx) -> None:
    if ctx.db.is_postgres:
        pytest.skip("PostgreSQL drops partitions: the test above")
    log = _old_and_new_log(ctx)
    report = collect_garbage(ctx, predictions_older_than=timedelta(days=90))["predictions"]
    assert report["rows_deleted"] == len(log["old"]) + len(log["older"])
    assert report["labels_deleted"] == 2
    assert PredictionStore(ctx.db).count("churn") == len(log["recent"])
    assert PredictionStore(ctx.db).feedback_history(log["recent"][0].id)


def test_a_late_label_of_a_dropped_prediction_stays_until_it_is_that_old(ctx) -> None:
    now = datetime.now(UTC)
    old = _records(1, now - timedelta(days=200))
    store = PredictionStore(ctx.db)
    store.write_batch(old)
    store.add_feedback([(old[0].id, "1")])  # labelled today
    report = drop_old_predictions(ctx, timedelta(days=90))
    assert report["labels_deleted"] == 0
    assert store.count("churn") == 0
    assert len(store.feedback_history(old[0].id)) == 1


def test_a_bad_age_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"^predictions_older_than 'ninety'"):
        parse_age("ninety")
    with pytest.raises(ConfigError, match=r"^predictions_older_than '0d'"):
        parse_age("0d")
    assert parse_age("90d") == timedelta(days=90)


def test_worker_creates_the_next_partitions_and_runs_retention(settings: Settings) -> None:
    retention = settings.retraining.retention.model_copy(update={"predictions_days": 90.0})
    configured = settings.model_copy(
        update={
            "retraining": settings.retraining.model_copy(update={"retention": retention}),
        }
    )
    ctx = Context(configured)
    try:
        _old_and_new_log(ctx)
        worker = Worker(ctx, say=lambda _msg: None)
        in_three_months = datetime.now(UTC) + timedelta(days=92)
        worker.tick(now=in_three_months)
        assert worker.stats.retention_runs == 1
        assert PredictionStore(ctx.db).count("churn") == 4
        if ctx.db.is_postgres:
            names = {p.name for p in PartitionStore(ctx.db).partitions()}
            ahead = period_of(period_of(in_three_months, "month").hi, "month")
            assert ahead.name in names
            assert worker.stats.partitions_created >= 1
        worker.tick(now=in_three_months + timedelta(minutes=5))
        assert worker.stats.retention_runs == 1  # not due again for a day
    finally:
        ctx.close()


def test_spilled_rows_replay_into_the_partitioned_table(ctx, tmp_path: Path) -> None:
    """Rows spilled while the database was away go in once it is back, at their own time."""
    from pgmlops.store.prediction_log.spill import SpillFolder

    dead_worker = SpillFolder(tmp_path / "spill", pid=999_999_999)  # no such process
    dead_worker.prepare()
    rows = _records(3, datetime.now(UTC) - timedelta(days=40))
    dead_worker.append(rows)
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    writer.start()
    try:
        writer.submit(_records(2, datetime.now(UTC)))
        assert writer.flush(10.0)
        for _ in range(100):
            if writer.counts["replayed"] == 3:
                break
            writer._stop.wait(0.05)
    finally:
        writer.stop()
    assert writer.counts["replayed"] == 3
    assert store.count("churn") == 5
    assert set(store.prediction_versions([r.id for r in rows])) == {r.id for r in rows}


def test_the_server_creates_the_partitions_ahead_at_start_up(ctx, settings: Settings) -> None:
    _postgres_only(ctx)
    from pgmlops.api.app import create_app

    ahead = [p.name for p in PartitionStore(ctx.db).partitions()][-2:]
    PartitionStore(ctx.db).drop(ahead)
    assert not set(ahead) & {p.name for p in PartitionStore(ctx.db).partitions()}
    app = create_app(settings)
    app.state.ctx.close()
    assert set(ahead) <= {p.name for p in PartitionStore(ctx.db).partitions()}
