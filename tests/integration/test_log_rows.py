"""What the log writer stores is what was logged: every column, from either form of a row.

PostgreSQL takes batches by binary COPY (store/prediction_log/copy_rows.py), SQLite by INSERT; a row
comes as a PredictionRecord (the thread writer) or as its encoded line (the logging process).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.errors import ValidationError
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.services.serving.prediction_log import PredictionLogWriter
from pgmlops.store.prediction_log.copy_rows import COLUMNS
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.prediction_log.spill import EncodedRecord
from pgmlops.store.tables import PredictionRow


def _awkward(pid: str, paired: str | None) -> PredictionRecord:
    """Text a COPY's text format would have to escape, unicode, NaN, an output, a pairing."""
    return PredictionRecord(
        pid,
        "churn-ü",
        3,
        datetime(2026, 12, 6, 12, 30, 15, 123456, tzinfo=UTC),
        {"Geography": "tab\there\\back\nline", "Age": 41.5, "Tags": ["a", "é"], "N": None},
        "yes\tno",
        float("nan"),
        0.25,
        {"out_of_range": ["Age"]},
        1.75,
        "req\\1",
        "customer\n7",
        "shadow",
        paired,
    )


def _stored(store: PredictionStore) -> dict[str, dict[str, object]]:
    with store.db.session() as s:
        rows = s.scalars(select(PredictionRow)).all()
        return {str(r.id): {c: getattr(r, c) for c in COLUMNS} for r in rows}


def test_the_copy_columns_are_the_tables() -> None:
    assert tuple(c.name for c in PredictionRow.__table__.columns) == COLUMNS


def test_every_column_is_stored_as_logged_from_a_record_and_from_its_encoded_line(
    ctx, tmp_path: Path
) -> None:
    a, b, c = prediction_ids(3)
    as_record = _awkward(a, c)
    encoded = replace(_awkward(b, None), role=None, output=None, entity_key=None)
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    writer.start()
    try:
        writer.submit([as_record, EncodedRecord(orjson.dumps(encoded))])  # type: ignore[list-item]
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert writer.counts["written"] == 2 and writer.counts["rejected"] == 0
    stored = _stored(store)
    for sent in (as_record, encoded):
        row = stored[sent.id]
        assert row["id"] == uuid.UUID(sent.id)
        assert row["paired_id"] == (uuid.UUID(sent.paired_id) if sent.paired_id else None)
        assert row["created_at"].replace(tzinfo=UTC) == sent.created_at  # type: ignore[attr-defined]
        assert row["probability"] is None  # NaN is not a probability: stored as unknown
        for name in ("model_name", "version", "features", "prediction", "confidence"):
            assert row[name] == getattr(sent, name), name
        for name in ("output", "latency_ms", "request_id", "entity_key", "role"):
            assert row[name] == getattr(sent, name), name


@pytest.mark.parametrize(
    "bad",
    [{"id": "not-a-uuid"}, {"paired_id": "12345"}, {"features": {"x": object()}}],
    ids=["id", "paired-id", "features"],
)
def test_a_row_that_cannot_be_written_is_refused_with_one_line(ctx, bad) -> None:
    store = PredictionStore(ctx.db)
    row = replace(_awkward(prediction_ids(1)[0], None), **bad)
    with pytest.raises(ValidationError, match="prediction log row"):
        store.write_batch([row])
    store.close()
    assert store.count() == 0


def test_rows_of_one_batch_keep_their_own_model_version_time_label_and_request(ctx) -> None:
    # The packing reuses what rows of a request share; rows that share none of it must not
    # take another row's values.
    t1 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    t2 = datetime(2026, 12, 6, 13, 0, 0, 1, tzinfo=UTC)
    ids = prediction_ids(8)
    sent = [
        PredictionRecord(
            ids[k],
            ("a", "b")[k % 2],
            1 + k % 3,
            (t1, t2)[k // 4],
            {"x": k},
            ("0", "1", "yes")[k % 3],
            k / 10,
            None,
            None,
            float(k),
            (None, "r1", "r2")[k % 3],
        )
        for k in range(8)
    ]
    store = PredictionStore(ctx.db)
    # Both forms in one batch, interleaved: records and encoded lines.
    store.write_batch(
        [r if k % 2 else EncodedRecord(orjson.dumps(r)) for k, r in enumerate(sent)]  # type: ignore[misc]
    )
    stored = _stored(store)
    store.close()
    for r in sent:
        row = stored[r.id]
        assert row["created_at"].replace(tzinfo=UTC) == r.created_at  # type: ignore[attr-defined]
        for name in ("model_name", "version", "features", "prediction", "probability"):
            assert row[name] == getattr(r, name), name
        assert row["request_id"] == r.request_id
