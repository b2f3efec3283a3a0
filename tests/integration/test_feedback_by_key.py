"""Labels joined to logged predictions by a customer key, on SQLite and PostgreSQL.

Raw rows (identifier column included, as a user's table holds them) are validated by the
served record model and scored by `predict_records`, exactly as /predict does, then logged
through the prediction store; labels come back from a CSV file keyed by the identifier.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import select, text

from pgmlops.domain.demo_data import make_churn
from pgmlops.errors import ConfigError, NotFoundError, ValidationError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.services.serving.feedback import LabelFor, record_labels
from pgmlops.services.serving.feedback_files import load_feedback_file
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.tables import PredictionRow
from tests.integration.test_monitoring import production, trained_churn

__all__ = ["production", "trained_churn"]  # fixtures, imported for pytest


def log_raw_rows(ctx: Context, frame: pd.DataFrame, version: int) -> list[str]:
    """Validate raw rows (CustomerId and all) as /predict does, score and log them; their ids."""
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    raw = frame.drop(columns=["Exited"])
    payload = raw.astype(object).where(raw.notna(), None).to_dict("records")
    rows = [r.__dict__ for r in model.batch.validate_python(payload)]
    _, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    PredictionStore(ctx.db).write_batch(records)
    return [r.id for r in records]


def labels_file(folder: Path, frame: pd.DataFrame, name: str = "labels.csv") -> Path:
    path = folder / name
    frame.rename(columns={"Exited": "label"})[["CustomerId", "label"]].to_csv(path, index=False)
    return path


def test_raw_rows_are_logged_with_their_identifier_as_key(ctx: Context, production: int) -> None:
    frame = make_churn(50, seed=61)
    ids = log_raw_rows(ctx, frame, production)
    with ctx.db.session() as s:
        logged = dict(s.execute(select(PredictionRow.id, PredictionRow.entity_key)).all())
        features = s.scalars(select(PredictionRow.features)).first()
    assert [logged[uuid.UUID(i)] for i in ids] == [str(c) for c in frame["CustomerId"]]
    assert features is not None and "CustomerId" not in features


def test_labels_by_key_go_to_the_latest_prediction_of_each_key_and_monitoring_sees_them(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    frame = make_churn(400, seed=62)
    earlier = log_raw_rows(ctx, frame, production)
    later = log_raw_rows(ctx, frame, production)

    result = load_feedback_file(ctx, labels_file(tmp_path, frame), key="CustomerId")

    assert result == {"stored": 400, "replaced": 0, "keys_not_found": 0, "unmatched_keys": []}
    store = PredictionStore(ctx.db)
    assert [h.label for h in store.feedback_history(later[7])] == [str(frame["Exited"].iloc[7])]
    assert store.feedback_history(earlier[7]) == []
    report = run_monitor(ctx, "churn")
    assert report.labelled_performance["n_labels"] == 400


def test_keys_without_a_prediction_are_counted_and_named_and_the_rest_stored(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    frame = make_churn(100, seed=63)
    log_raw_rows(ctx, frame.iloc[:80], production)
    labels = labels_file(tmp_path, frame)

    result = load_feedback_file(ctx, labels, key="CustomerId")

    assert result["stored"] == 80 and result["keys_not_found"] == 20
    assert result["unmatched_keys"] == [str(c) for c in frame["CustomerId"].iloc[80:]]


def test_keys_of_another_model_do_not_match(ctx: Context, production: int, tmp_path: Path) -> None:
    frame = make_churn(30, seed=64)
    log_raw_rows(ctx, frame, production)
    with pytest.raises(NotFoundError, match="none of the 30 key"):
        load_feedback_file(ctx, labels_file(tmp_path, frame), key="CustomerId", model_name="other")
    assert PredictionStore(ctx.db).count() == 30


def test_a_bad_label_for_a_key_stores_nothing_and_names_the_line(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    frame = make_churn(20, seed=65)
    ids = log_raw_rows(ctx, frame, production)
    frame["Exited"] = frame["Exited"].astype(str)
    frame.loc[5, "Exited"] = "maybe"
    with pytest.raises(ValidationError, match=r"labels\.csv line 7: label 'maybe'"):
        load_feedback_file(ctx, labels_file(tmp_path, frame), key="CustomerId")
    assert all(PredictionStore(ctx.db).feedback_history(i) == [] for i in ids)


def test_a_key_column_missing_from_the_file_is_a_flag_error(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    path = labels_file(tmp_path, make_churn(5, seed=66))
    with pytest.raises(ConfigError, match=r"^key customer_id: .* has no such column"):
        load_feedback_file(ctx, path, key="customer_id")


def test_labels_by_key_and_by_id_in_one_call_are_stored_together(
    ctx: Context, production: int
) -> None:
    frame = make_churn(10, seed=67)
    ids = log_raw_rows(ctx, frame, production)
    items = [
        LabelFor("1", "item 0", key=int(frame["CustomerId"].iloc[0])),
        LabelFor("0", "item 1", prediction_id=ids[1]),
        LabelFor("1", "item 2", key="no-such-customer"),
    ]
    result = record_labels(ctx, items, model_name="churn")
    assert result == {
        "stored": 2,
        "replaced": 0,
        "keys_not_found": 1,
        "unmatched_keys": ["no-such-customer"],
    }
    with pytest.raises(ValidationError, match="item 0: key is blank"):
        record_labels(ctx, [LabelFor("1", "item 0", key=" ")], model_name="churn")


def test_the_latest_prediction_per_key_is_found_through_the_index(
    ctx: Context, production: int
) -> None:
    log_raw_rows(ctx, make_churn(200, seed=68), production)
    query = (
        "SELECT id FROM predictions WHERE model_name = 'churn' AND entity_key IN ('1', '2') "
        "ORDER BY entity_key, created_at DESC"
    )
    with ctx.db.engine.begin() as conn:
        if ctx.db.is_postgres:
            # Too few rows for the planner to prefer an index on its own.
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN {query}")))
        else:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    # On a partitioned log each partition's copy of the index has a generated name.
    assert "ix_predictions_model_entity" in plan or "model_name_entity_key" in plan, plan


def test_upgrade_from_the_previous_head_keeps_a_populated_log(ctx: Context) -> None:
    """Down to 0001, a prediction logged the old way, then up again: the row stays, key empty."""
    ctx.db.ensure_schema()
    cfg = ctx.db.alembic_config()
    with ctx.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    old_id = uuid.uuid4()
    with ctx.db.engine.begin() as conn:
        columns = {c["name"] for c in sa_columns(conn)}
        assert "entity_key" not in columns
        conn.execute(
            text(
                "INSERT INTO predictions (id, model_name, version, created_at, features, "
                "prediction, latency_ms) VALUES (:id, 'churn', 1, :at, :f, '0', 1.0)"
            ),
            {
                "id": old_id.hex if not ctx.db.is_postgres else old_id,
                "at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
                "f": '{"Age": 40.0}',
            },
        )

    assert ctx.db.upgrade() == ctx.db.revisions()[1]

    with ctx.db.session() as s:
        row = s.execute(select(PredictionRow.id, PredictionRow.entity_key)).one()
    assert row.id == old_id and row.entity_key is None


def sa_columns(conn) -> list[dict]:
    from sqlalchemy import inspect

    return inspect(conn).get_columns("predictions")
