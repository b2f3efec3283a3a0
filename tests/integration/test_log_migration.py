"""Migration 0002 on a populated PostgreSQL database: the log becomes partitioned, and back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

import pgmlops.store.db
from pgmlops.domain.serving.partitions import period_of
from pgmlops.store.db import Database, normalize_url
from pgmlops.store.prediction_log.predictions import PredictionStore
from tests.conftest import REQUIRE_PG, _admin_engine, _pg_url
from tests.integration.test_log_partitions import _records

ROWS = 400  # one every 6 hours: 100 days, four or five months


@pytest.fixture
def empty_pg() -> Iterator[str]:
    name = f"pgmlops_mig_{uuid.uuid4().hex[:12]}"
    try:
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL unusable: {exc}")
        pytest.skip(f"PostgreSQL unusable: {exc}")
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(engine: Engine, to: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(pgmlops.store.db.__file__).with_name("migrations"))
    )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, to)


def _one(engine: Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def _primary_key(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                    "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = "
                    "'predictions'::regclass AND i.indisprimary ORDER BY array_position("
                    "i.indkey, a.attnum)"
                )
            ).scalars()
        )


def test_upgrade_on_postgresql_partitions_a_populated_log_and_downgrade_restores_it(
    empty_pg: str,
) -> None:
    engine = create_engine(normalize_url(empty_pg))
    try:
        _migrate(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO predictions (id, model_name, version, created_at, features, "
                    "prediction, probability, confidence, output, latency_ms, request_id) "
                    "SELECT gen_random_uuid(), 'churn', 1, now() - i * interval '6 hours', "
                    "'{\"Age\": 40}', '0', 0.2, 0.6, NULL, 1.0, NULL "
                    "FROM generate_series(0, :n - 1) i"
                ),
                {"n": ROWS},
            )
            conn.execute(
                text(
                    "INSERT INTO feedback (prediction_id, label, created_at) "
                    "SELECT id, '1', now() FROM predictions LIMIT 50"
                )
            )
        months = _one(
            engine, "SELECT count(DISTINCT date_trunc('month', created_at, 'UTC')) FROM predictions"
        )
        checksum = "SELECT sum(hashtext(id::text || created_at::text)) FROM predictions"
        before = _one(engine, checksum)

        _migrate(engine, "head")
        assert _one(engine, "SELECT relkind FROM pg_class WHERE relname = 'predictions'") == "p"
        assert _one(engine, "SELECT count(*) FROM predictions") == ROWS
        assert _one(engine, checksum) == before
        assert _primary_key(engine) == ["id", "created_at"]
        parts = _one(
            engine, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'predictions'::regclass"
        )
        assert parts == months + 2  # every month with rows (this one included) and two ahead
        assert _one(engine, "SELECT to_regclass('ix_predictions_model_time') IS NOT NULL")
        assert _one(engine, "SELECT to_regclass('ix_feedback_created') IS NOT NULL")
        assert _one(engine, "SELECT to_regclass('predictions_unpartitioned') IS NULL")
        # The new table takes the writer's batches and replays at once.
        db = Database(empty_pg)
        try:
            store = PredictionStore(db)
            fresh = _records(3, datetime.now(UTC))
            store.write_batch(fresh)
            assert store.replay_batch(fresh) == 3
            assert store.count("churn") == ROWS + 3
            store.close()
        finally:
            db.dispose()
        this_month = period_of(datetime.now(UTC), "month").name
        assert _one(engine, f"SELECT count(*) FROM {this_month}") >= 3

        _migrate(engine, "0001", down=True)
        assert _one(engine, "SELECT relkind FROM pg_class WHERE relname = 'predictions'") == "r"
        assert _one(engine, "SELECT count(*) FROM predictions") == ROWS + 3
        assert _primary_key(engine) == ["id"]
        assert _one(engine, f"SELECT to_regclass('{this_month}') IS NULL")
        assert _one(engine, "SELECT to_regclass('ix_predictions_model_time') IS NOT NULL")
        assert _one(engine, "SELECT to_regclass('ix_feedback_created') IS NULL")
        assert _one(engine, "SELECT count(*) FROM feedback") == 50
    finally:
        engine.dispose()
