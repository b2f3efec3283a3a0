"""Prediction log and feedback repository: batched writes, COPY on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.records import FeedbackRecord, PredictionRecord
from pgmlops.errors import NotFoundError, StoreError
from pgmlops.store.db import Database
from pgmlops.store.tables import FeedbackRow, PredictionRow, utcnow

_COLUMNS = (
    "id",
    "model_name",
    "version",
    "created_at",
    "features",
    "prediction",
    "probability",
    "confidence",
    "output",
    "latency_ms",
    "request_id",
)


def _row(r: PredictionRecord) -> dict[str, Any]:
    return {
        "id": uuid.UUID(r.id),
        "model_name": r.model_name,
        "version": r.version,
        "created_at": r.created_at,
        "features": r.features,
        "prediction": r.prediction,
        "probability": r.probability,
        "confidence": r.confidence,
        "output": r.output,
        "latency_ms": r.latency_ms,
        "request_id": r.request_id,
    }


class PredictionStore:
    """Writes prediction batches and reads them back for feedback and monitoring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write_batch(self, records: Sequence[PredictionRecord]) -> None:
        """Insert a batch in one transaction (COPY on PostgreSQL); all or nothing."""
        if not records:
            return
        if self.db.is_postgres:
            self._copy(records)
            return
        with self.db.session() as s:
            s.execute(insert(PredictionRow), [_row(r) for r in records])

    def _copy(self, records: Sequence[PredictionRecord]) -> None:
        self.db.ensure_schema()
        try:
            with self.db.engine.connect() as conn:
                # COPY goes through psycopg itself, so the commit must too: SQLAlchemy
                # never saw a transaction begin on this connection.
                raw = conn.connection.driver_connection
                with (
                    raw.cursor() as cur,
                    cur.copy(f"COPY predictions ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
                ):
                    for r in records:
                        copy.write_row(
                            (
                                r.id,
                                r.model_name,
                                r.version,
                                r.created_at,
                                orjson.dumps(r.features).decode(),
                                r.prediction,
                                r.probability,
                                r.confidence,
                                orjson.dumps(r.output).decode() if r.output else None,
                                r.latency_ms,
                                r.request_id,
                            )
                        )
                raw.commit()
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            raise StoreError(f"prediction log write failed: {exc}") from exc

    def replay_batch(self, records: Sequence[PredictionRecord]) -> int:
        """Insert spilled records, skipping ids already stored (a replay may repeat)."""
        if not records:
            return 0
        rows = [_row(r) for r in records]
        if self.db.is_postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(PredictionRow).on_conflict_do_nothing(index_elements=["id"])
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(PredictionRow).on_conflict_do_nothing(index_elements=["id"])
        with self.db.session() as s:
            s.execute(stmt, rows)
        return len(rows)

    def count(self, model_name: str | None = None) -> int:
        with self.db.session() as s:
            stmt = select(func.count()).select_from(PredictionRow)
            if model_name:
                stmt = stmt.where(PredictionRow.model_name == model_name)
            return int(s.scalar(stmt) or 0)

    def prediction_versions(self, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(model name, version) of each known prediction id."""
        wanted = [uuid.UUID(i) for i in ids]
        with self.db.session() as s:
            rows = s.execute(
                select(PredictionRow.id, PredictionRow.model_name, PredictionRow.version).where(
                    PredictionRow.id.in_(wanted)
                )
            )
            return {str(r.id): (r.model_name, r.version) for r in rows}

    def add_feedback(
        self, labels: Sequence[tuple[str, str]]
    ) -> tuple[list[FeedbackRecord], set[str]]:
        """Store labels; an earlier label is superseded, not deleted. Returns (new, replaced)."""
        now = utcnow()
        ids = [uuid.UUID(pid) for pid, _ in labels]
        with self.db.session() as s:
            known = set(s.scalars(select(PredictionRow.id).where(PredictionRow.id.in_(ids))))
            missing = [str(i) for i in ids if i not in known]
            if missing:
                raise NotFoundError(f"unknown prediction_id: {missing[0]}")
            previous = set(
                s.scalars(
                    select(FeedbackRow.prediction_id).where(
                        FeedbackRow.prediction_id.in_(ids), FeedbackRow.superseded_at.is_(None)
                    )
                )
            )
            s.execute(
                update(FeedbackRow)
                .where(FeedbackRow.prediction_id.in_(ids), FeedbackRow.superseded_at.is_(None))
                .values(superseded_at=now)
            )
            s.execute(
                insert(FeedbackRow),
                [
                    {"prediction_id": i, "label": label, "created_at": now}
                    for i, (_, label) in zip(ids, labels, strict=True)
                ],
            )
        records = [
            FeedbackRecord(str(i), label, now) for i, (_, label) in zip(ids, labels, strict=True)
        ]
        return records, {str(i) for i in previous}

    def feedback_history(self, prediction_id: str) -> list[FeedbackRecord]:
        with self.db.session() as s:
            rows = s.scalars(
                select(FeedbackRow)
                .where(FeedbackRow.prediction_id == uuid.UUID(prediction_id))
                .order_by(FeedbackRow.id)
            )
            return [
                FeedbackRecord(str(r.prediction_id), r.label, r.created_at, r.superseded_at)
                for r in rows
            ]
