"""The prediction log's partitions on PostgreSQL, and deletion by age on SQLite.

On PostgreSQL `predictions` is range-partitioned on created_at (migration 0002). There is
no DEFAULT partition on purpose: attaching a range later would have to scan it and fails if
a row of that range sits in it. Partitions are created ahead instead (server start-up, the
worker) and, for a row that still finds none, on demand by the writer (`cover`).

A new partition is made as a plain table and then ATTACHed: ATTACH takes only a SHARE UPDATE
EXCLUSIVE lock on the parent, which neither inserts nor reads wait for, where `CREATE TABLE
… PARTITION OF` takes ACCESS EXCLUSIVE and would queue every insert behind a long monitor
read. Old partitions leave by `DETACH … CONCURRENTLY` then DROP: cost independent of rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.serving.partitions import PREFIX, TimeRange, missing
from pgmlops.errors import ConflictError, StoreError
from pgmlops.store.db import Database, first_line
from pgmlops.store.tables import FeedbackRow, PredictionRow

_NAME = re.compile(rf"^{PREFIX}\d{{8}}(\d{{6}})?$")
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
# One creator at a time across servers and workers; a different key for dropping.
_CREATE_LOCK = "hashtext('pgmlops:predictions:create-partitions')"
_DROP_LOCK = "hashtext('pgmlops:predictions:drop-partitions')"
# ATTACH waits at most this long for its lock, then the caller retries later.
_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class LogPartition:
    """One partition: its table, its range, and PostgreSQL's live-row estimate."""

    name: str
    range: TimeRange
    approx_rows: int | None
    detach_pending: bool = False


def _list(conn: Connection) -> list[LogPartition]:
    conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending, "
            "s.n_live_tup FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE i.inhparent = to_regclass('predictions')"
        )
    )
    out = []
    for name, bound, pending, live in rows:
        match = _BOUND.search(bound or "")
        if match is None:  # a DEFAULT or MINVALUE/MAXVALUE partition someone added by hand
            continue
        lo, hi = (datetime.fromisoformat(v) for v in match.groups())
        out.append(LogPartition(name, TimeRange(lo, hi), live, bool(pending)))
    return sorted(out, key=lambda p: p.range)


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise StoreError(f"{name!r} is not a prediction log partition name")
    return name


class PartitionStore:
    """Partitions of `predictions` (PostgreSQL); every method is one unit of work."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def partitioned(self) -> bool:
        """True on PostgreSQL, where the log is partitioned at the current schema."""
        return self.db.is_postgres

    def partitions(self) -> list[LogPartition]:
        """Every range partition, oldest first."""
        if not self.partitioned:
            return []
        self.db.ensure_schema()
        try:
            with self.db.engine.begin() as conn:
                return _list(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot list prediction log partitions: {first_line(exc)}") from exc

    def cover(self, needed: Iterable[TimeRange]) -> list[TimeRange]:
        """Create partitions for the parts of `needed` none covers; returns those created.

        One transaction under an advisory lock, so two processes starting together create
        each range once; what exists is read again inside the lock.
        """
        needed = list(needed)
        if not self.partitioned or not needed:
            return []
        self.db.ensure_schema()
        try:
            with self.db.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
                conn.execute(text(f"SELECT pg_advisory_xact_lock({_CREATE_LOCK})"))
                existing = [p.range for p in _list(conn)]
                created = missing(needed, existing)
                for r in created:
                    name = _checked(r.name)
                    conn.execute(text(f"CREATE TABLE {name} (LIKE predictions INCLUDING DEFAULTS)"))
                    conn.execute(
                        text(
                            f"ALTER TABLE predictions ATTACH PARTITION {name} FOR VALUES "
                            f"FROM ('{r.lo.isoformat()}') TO ('{r.hi.isoformat()}')"
                        )
                    )
                return created
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create prediction log partitions: {first_line(exc)}") from exc

    def drop(self, names: Sequence[str]) -> list[str]:
        """Detach (concurrently: inserts and reads go on) and drop these partitions.

        ConflictError when another process is dropping partitions right now.
        """
        if not self.partitioned or not names:
            return []
        self.db.ensure_schema()
        dropped: list[str] = []
        try:
            # DETACH … CONCURRENTLY cannot run inside a transaction block.
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                got = conn.execute(text(f"SELECT pg_try_advisory_lock({_DROP_LOCK})")).scalar()
                if not got:
                    raise ConflictError("another process is dropping prediction log partitions")
                try:
                    current = {p.name: p for p in _list(conn)}
                    for name in names:
                        part = current.get(_checked(name))
                        if part is None:
                            continue  # dropped meanwhile
                        # A detach interrupted earlier (a killed gc) is finished, not restarted.
                        how = "FINALIZE" if part.detach_pending else "CONCURRENTLY"
                        conn.execute(text(f"ALTER TABLE predictions DETACH PARTITION {name} {how}"))
                        conn.execute(text(f"DROP TABLE {name}"))
                        dropped.append(name)
                finally:
                    conn.execute(text(f"SELECT pg_advisory_unlock({_DROP_LOCK})"))
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot drop prediction log partitions (dropped {len(dropped)}): {first_line(exc)}"
            ) from exc
        return dropped

    def delete_predictions_before(self, cutoff: datetime) -> int:
        """Delete rows created before cutoff (SQLite, which has no partitions); the count."""
        with self.db.session() as s:
            result = s.execute(delete(PredictionRow).where(PredictionRow.created_at < cutoff))
            return int(result.rowcount or 0)

    def delete_feedback_before(self, bound: datetime) -> int:
        """Delete labels given before bound; the count."""
        with self.db.session() as s:
            result = s.execute(delete(FeedbackRow).where(FeedbackRow.created_at < bound))
            return int(result.rowcount or 0)
