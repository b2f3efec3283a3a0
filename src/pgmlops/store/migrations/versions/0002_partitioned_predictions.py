"""prediction log range-partitioned on created_at (PostgreSQL); feedback indexed by time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

PostgreSQL: today's `predictions` becomes a table partitioned by month on created_at, with
a partition for every month that holds rows plus the current one and the two after it. The
rows are moved in this migration's transaction (measured ~20 s per million rows). The
primary key becomes (id, created_at): a partitioned table's unique keys must hold the
partition key. No DEFAULT partition: pgmlops creates partitions ahead (and on demand).
SQLite keeps its table. Both: `ix_feedback_created`, for retention by label time.

Self-contained on purpose (no pgmlops imports): a migration must not change when the code does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_AHEAD_MONTHS = 2


def _next_month(lo: datetime) -> datetime:
    if lo.month == 12:
        return lo.replace(year=lo.year + 1, month=1)
    return lo.replace(month=lo.month + 1)


def _set_aside(suffix: str) -> None:
    """Rename `predictions`, its primary key and its index out of the way (names are global)."""
    op.execute(f"ALTER TABLE predictions RENAME TO predictions_{suffix}")
    op.execute(
        f"ALTER TABLE predictions_{suffix} "
        f"RENAME CONSTRAINT predictions_pkey TO predictions_{suffix}_pkey"
    )
    op.execute(f"ALTER INDEX ix_predictions_model_time RENAME TO ix_predictions_{suffix}_time")


def _months(conn: sa.Connection) -> list[datetime]:
    """Every month holding a row, the current month, and the two after it (UTC)."""
    found = conn.execute(
        sa.text(
            "SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM predictions_unpartitioned"
        )
    ).scalars()
    months = {m.astimezone(UTC) for m in found}
    lo = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(_AHEAD_MONTHS + 1):
        months.add(lo)
        lo = _next_month(lo)
    return sorted(months)


def upgrade() -> None:
    op.create_index("ix_feedback_created", "feedback", ["created_at"], unique=False)
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    run = op.execute
    _set_aside("unpartitioned")
    # LIKE copies whatever columns the table has now (a later migration may have added some).
    run(
        "CREATE TABLE predictions (LIKE predictions_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (created_at)"
    )
    for lo in _months(conn):
        run(
            f"CREATE TABLE predictions_p{lo:%Y%m%d} PARTITION OF predictions "
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{_next_month(lo).isoformat()}')"
        )
    run("INSERT INTO predictions SELECT * FROM predictions_unpartitioned")
    # Indexes after the rows: one sorted build per partition beats row-by-row maintenance.
    run("ALTER TABLE predictions ADD CONSTRAINT predictions_pkey PRIMARY KEY (id, created_at)")
    run("CREATE INDEX ix_predictions_model_time ON predictions (model_name, created_at)")
    moved = conn.execute(sa.text("SELECT EXISTS (SELECT FROM predictions_unpartitioned)")).scalar()
    run("DROP TABLE predictions_unpartitioned")
    if moved:
        # Statistics for the moved rows now, not whenever autovacuum gets to each partition
        # (it never analyses the parent). An empty log is left unanalysed, as a new one is.
        run("ANALYZE predictions (id, model_name, version, created_at)")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        run = op.execute
        _set_aside("partitioned")
        run("CREATE TABLE predictions (LIKE predictions_partitioned INCLUDING DEFAULTS)")
        run("INSERT INTO predictions SELECT * FROM predictions_partitioned")
        run("ALTER TABLE predictions ADD CONSTRAINT predictions_pkey PRIMARY KEY (id)")
        run("CREATE INDEX ix_predictions_model_time ON predictions (model_name, created_at)")
        # Drops every partition with it.
        run("DROP TABLE predictions_partitioned")
    op.drop_index("ix_feedback_created", table_name="feedback")
