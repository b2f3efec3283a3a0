"""Prediction log and feedback repository: a batch is one COPY (PostgreSQL) or INSERT."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.errors import CheckViolation
from psycopg.types.json import Jsonb
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.registry.records import FeedbackRecord, PredictionRecord
from pgmlops.domain.serving.partitions import Period, TimeRange, period_of
from pgmlops.errors import NotFoundError, StoreError, ValidationError
from pgmlops.store.db import Database, first_line
from pgmlops.store.prediction_log.copy_rows import COLUMNS, HEADER, TRAILER, binary_rows
from pgmlops.store.prediction_log.partitions import PartitionStore
from pgmlops.store.prediction_log.spill import EncodedRecord, as_record, json_array
from pgmlops.store.tables import FeedbackRow, PredictionRow, utcnow

# Ids per IN list: under PostgreSQL's 65,535 bind parameters and SQLite's 32,766.
_IN_LIST_SIZE = 5_000
# A row that finds no partition gets one made on demand only for a plausible time: a host
# whose clock reads 2099 must not leave a partition for 2099 behind.
_OLDEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
_FUTURE_PLAUSIBLE = timedelta(days=366)
_COPY_SQL = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Rows packed per write inside one COPY: PostgreSQL stores one part while the next is packed,
# so a batch costs about the larger of the two sides, not their sum.
_COPY_PART_ROWS = 500
T = TypeVar("T")
# A record, or one already encoded by the serving process (the logging process's rows).
Record = PredictionRecord | EncodedRecord


@cache
def insert_json_sql() -> str:
    """INSERT … FROM jsonb_to_recordset, typed as the predictions table is.

    PredictionRecord's fields are the table's columns, so orjson's keys name them.
    """
    columns = PredictionRow.__table__.columns
    dialect = postgresql.dialect()
    names = ", ".join(c.name for c in columns)
    types = ", ".join(f"{c.name} {c.type.compile(dialect=dialect)}" for c in columns)
    return (
        f"INSERT INTO predictions ({names}) SELECT {names} "
        f"FROM jsonb_to_recordset(%s) AS r({types})"
    )


def _rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """SQLite's parameters; ValidationError for a row that cannot be stored (as COPY's)."""
    try:
        return [_row(r) for r in records]
    except (ValueError, TypeError) as exc:  # orjson's errors are these too
        raise ValidationError(f"prediction log row refused: {exc}") from None


def _row(record: Record) -> dict[str, Any]:
    r = as_record(record)
    orjson.dumps((r.features, r.output))  # JSON columns: refused here, not mid-transaction
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
        "entity_key": r.entity_key,
        "role": r.role,
        "paired_id": uuid.UUID(r.paired_id) if r.paired_id else None,
    }


class PredictionStore:
    """Writes prediction batches and reads them back for feedback and monitoring."""

    def __init__(self, db: Database, *, partition_period: Period = "month") -> None:
        self.db = db
        self.partition_period = partition_period
        # PostgreSQL batch writes go through one connection of their own, in autocommit: a
        # batch is one statement and one round trip, with no pool check-out or ping.
        self._raw: Any = None
        self._driver: Any = None
        self._raw_lock = threading.Lock()

    def write_batch(self, records: Sequence[Record]) -> None:
        """Insert a batch in one statement (COPY on PostgreSQL); all or nothing.

        ValidationError when the database refuses a value of some row, StoreError otherwise.
        """
        if not records:
            return
        if self.db.is_postgres:
            self._insert(records, self._copy)
            return
        with self.db.session() as s:
            s.execute(insert(PredictionRow), _rows(records))

    def replay_batch(self, records: Sequence[Record]) -> int:
        """Insert spilled records, skipping ids already stored (a replay may repeat)."""
        if not records:
            return 0
        if self.db.is_postgres:
            # The partitioned table's key is (id, created_at); a spilled row keeps both. COPY
            # has no ON CONFLICT: a replay, which may repeat rows, stays an INSERT.
            statement = insert_json_sql() + " ON CONFLICT (id, created_at) DO NOTHING"

            def insert(cur: Any, batch: Sequence[Record]) -> None:
                cur.execute(statement, (Jsonb(batch, dumps=json_array),))

            self._insert(records, insert)
            return len(records)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(PredictionRow).on_conflict_do_nothing(index_elements=["id"])
        with self.db.session() as s:
            s.execute(stmt, _rows(records))
        return len(records)

    def _insert(
        self, records: Sequence[Record], run: Callable[[Any, Sequence[Record]], None]
    ) -> None:
        """Run the batch statement; a row outside every partition gets its partition made."""
        self.db.ensure_schema()
        with self._raw_lock:
            try:
                self._execute(records, run)
            except CheckViolation:
                # "no partition of relation predictions found for row": the partitions made
                # ahead do not reach this row (a spill replayed after months, a clock off).
                # Never lose it: make the partitions its period needs, then try once more.
                self._cover(records)
                try:
                    self._execute(records, run)
                except CheckViolation as again:
                    raise ValidationError(
                        f"prediction log row refused: {first_line(again)} "
                        "(created_at is not a plausible time for a partition)"
                    ) from again

    @staticmethod
    def _copy(cur: Any, records: Sequence[Record]) -> None:
        # COPY's binary rows, packed by hand in parts (store/prediction_log/copy_rows.py):
        # PostgreSQL spent about 11 µs a row on it against 20 µs for the INSERT of one JSON
        # document, which the logging process sends with no work but which PostgreSQL parses and
        # takes apart. A row that cannot be packed fails the COPY (psycopg ends it) before it
        # commits.
        with cur.copy(_COPY_SQL) as copy:
            copy.write(HEADER)
            for start in range(0, len(records), _COPY_PART_ROWS):
                copy.write(binary_rows(records[start : start + _COPY_PART_ROWS]))
            copy.write(TRAILER)

    def _execute(
        self, records: Sequence[Record], run: Callable[[Any, Sequence[Record]], None]
    ) -> None:
        try:
            if self._raw is None:
                self._raw = self.db.engine.raw_connection()
                self._driver = self._raw.driver_connection
                # Out of the pool for good: a store dropped without close() would otherwise
                # hand this autocommit connection back, and the next borrower's transaction
                # (SET LOCAL, server-side cursors, rollback) would silently not be one.
                self._raw.detach()
                self._driver.autocommit = True
            with self._driver.cursor() as cur:
                run(cur, records)
        except CheckViolation:
            raise  # the connection is fine; the caller decides
        except (psycopg.DataError, orjson.JSONEncodeError) as exc:
            # A value the database (or JSON) cannot hold; the connection is fine.
            raise ValidationError(f"prediction log row refused: {first_line(exc)}") from exc
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            self._discard_raw()
            raise StoreError(f"prediction log write failed: {first_line(exc)}") from exc

    def _cover(self, records: Sequence[Record]) -> list[TimeRange]:
        """Partitions for the plausible periods of these records (StoreError if impossible)."""
        latest = datetime.now(UTC) + _FUTURE_PLAUSIBLE
        needed = {
            period_of(r.created_at, self.partition_period)
            for r in map(as_record, records)
            if _OLDEST_PLAUSIBLE <= _aware(r.created_at) <= latest
        }
        return PartitionStore(self.db).cover(needed)

    def _discard_raw(self) -> None:
        if self._raw is not None:
            # Detached from the pool: closing the driver's connection is all there is to do.
            with contextlib.suppress(Exception):
                self._driver.close()
            self._raw = self._driver = None

    def close(self) -> None:
        """Release the batch writer's connection."""
        with self._raw_lock:
            self._discard_raw()

    def delete_request(self, request_id: str, *, since: datetime) -> int:
        """Delete the rows one request (a batch job) logged at or after `since`."""
        # The time bound lets PostgreSQL skip the older partitions of the log.
        with self.db.session() as s:
            result = s.execute(
                delete(PredictionRow).where(
                    PredictionRow.request_id == request_id, PredictionRow.created_at >= since
                )
            )
            return int(result.rowcount or 0)

    def count(self, model_name: str | None = None) -> int:
        with self.db.session() as s:
            stmt = select(func.count()).select_from(PredictionRow)
            if model_name:
                stmt = stmt.where(PredictionRow.model_name == model_name)
            return int(s.scalar(stmt) or 0)

    def prediction_versions(self, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(model name, version) of each known prediction id."""
        wanted = list(dict.fromkeys(uuid.UUID(i) for i in ids))
        out: dict[str, tuple[str, int]] = {}
        with self.db.session() as s:
            for part in _chunks(wanted):
                rows = s.execute(
                    select(PredictionRow.id, PredictionRow.model_name, PredictionRow.version).where(
                        PredictionRow.id.in_(part)
                    )
                )
                out.update({str(r.id): (r.model_name, r.version) for r in rows})
        return out

    def latest_by_key(self, model_name: str, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Per key, (prediction id, version) of the model's latest prediction logged with it.

        Latest by time, then by id (time-ordered), so the answer is one row per key.
        """
        wanted = list(dict.fromkeys(keys))
        out: dict[str, tuple[str, int]] = {}
        with self.db.session() as s:
            for part in _chunks(wanted):
                newest_first = (PredictionRow.created_at.desc(), PredictionRow.id.desc())
                ranked = (
                    select(
                        PredictionRow.entity_key,
                        PredictionRow.id,
                        PredictionRow.version,
                        func.row_number()
                        .over(partition_by=PredictionRow.entity_key, order_by=newest_first)
                        .label("rank"),
                    )
                    .where(
                        PredictionRow.model_name == model_name,
                        PredictionRow.entity_key.in_(part),
                        # A shadow row repeats its production row's key, later: the answer
                        # the caller got (and labels) belong to the row that answered.
                        or_(PredictionRow.role.is_(None), PredictionRow.role != "shadow"),
                    )
                    .subquery()
                )
                rows = s.execute(
                    select(ranked.c.entity_key, ranked.c.id, ranked.c.version).where(
                        ranked.c.rank == 1
                    )
                )
                out.update({r.entity_key: (str(r.id), r.version) for r in rows})
        return out

    def add_feedback(
        self, labels: Sequence[tuple[str, str]]
    ) -> tuple[list[FeedbackRecord], set[str]]:
        """Store labels; an earlier label is superseded, not deleted. Returns (new, replaced).

        Two labels for one prediction in one call: the last one is stored, as if sent later.
        """
        now = utcnow()
        latest = {uuid.UUID(pid): label for pid, label in labels}
        ids = list(latest)
        known: set[uuid.UUID] = set()
        previous: set[uuid.UUID] = set()
        with self.db.session() as s:
            # IN lists in parts: PostgreSQL takes at most 65,535 bind parameters a statement.
            for part in _chunks(ids):
                known.update(s.scalars(select(PredictionRow.id).where(PredictionRow.id.in_(part))))
            missing = [str(i) for i in ids if i not in known]
            if missing:
                raise NotFoundError(f"unknown prediction_id: {missing[0]}")
            for part in _chunks(ids):
                current = (FeedbackRow.prediction_id.in_(part), FeedbackRow.superseded_at.is_(None))
                previous.update(s.scalars(select(FeedbackRow.prediction_id).where(*current)))
                s.execute(update(FeedbackRow).where(*current).values(superseded_at=now))
            s.execute(
                insert(FeedbackRow),
                [
                    {"prediction_id": i, "label": label, "created_at": now}
                    for i, label in latest.items()
                ],
            )
        records = [FeedbackRecord(str(i), label, now) for i, label in latest.items()]
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


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _chunks(items: list[T], size: int = _IN_LIST_SIZE) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
