"""The prediction-log writer against a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgmlops.domain.records import PredictionRecord
from pgmlops.services.prediction_log import PredictionLogWriter
from pgmlops.services.serving import prediction_ids
from pgmlops.store.predictions import PredictionStore


def _records(n: int) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [
        PredictionRecord(i, "churn", 1, now, {"Age": 40.0}, "0", 0.2, 0.6, None, 1.0, "r")
        for i in prediction_ids(n)
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 2**70},  # no integer column holds it
        {"features": {"Geography": "a\x00b"}},  # PostgreSQL's jsonb refuses a NUL
    ],
    ids=["huge-version", "nul-in-features"],
)
def test_a_row_the_database_refuses_is_rejected_alone(ctx, bad, tmp_path: Path) -> None:
    if "features" in bad and not ctx.db.is_postgres:
        pytest.skip("SQLite stores a NUL in JSON text")
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    good = _records(9)
    bad = replace(_records(1)[0], **bad)
    writer.start()
    try:
        writer.submit([*good[:5], bad, *good[5:]])
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert store.count("churn") == 9
    assert writer.counts["written"] == 9 and writer.counts["rejected"] == 1
    assert writer.counts["spilled"] == 0
