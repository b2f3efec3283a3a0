"""Planner statistics for the prediction log, refreshed when autovacuum has not caught up.

A freshly bulk-loaded table has no statistics until autovacuum's ANALYZE reaches it (or
never, with autovacuum off): PostgreSQL then guesses a handful of rows and may choose plans
that are quadratic in the real count. Before the project's big reads we ANALYZE a table that
was never analysed or has grown well past its analysed size. Only PostgreSQL: SQLite's planner
needs no statistics for our indexed lookups.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.store.db import Database, first_line

log = logging.getLogger(__name__)

# The columns our queries filter and join on. The JSONB documents cost most of an ANALYZE of
# predictions (1.0 s against 0.4 s for these four at 200,000 rows) and no plan uses them.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "predictions": ("id", "model_name", "version", "created_at"),
    "feedback": ("prediction_id", "superseded_at", "id", "created_at"),
}
# Like autovacuum's analyze threshold (50 rows + 10%), a little laxer, but measured in pages:
# the table's size on disk is exact at once, while the cumulative statistics' row counts
# arrive late and an ANALYZE racing with them double-counts.
_GROWTH_PAGES = 16
_GROWTH_FRACTION = 0.2
# Another ANALYZE (autovacuum's, a second monitor) holds the lock: its result will do.
_LOCK_TIMEOUT = "2s"


# A partitioned table has no pages of its own (relpages 0, pg_relation_size 0) and
# autovacuum never analyses it, only its partitions. Its size is the sum of its leaves', and
# the size its last ANALYZE saw is its reltuples at the leaves' density (rows per page).
_SIZES = text(
    "SELECT c.reltuples, c.relpages, c.relkind = 'p', "
    "coalesce((SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t "
    "WHERE t.isleaf), 0) / current_setting('block_size')::int, "
    "(SELECT sum(l.reltuples) / nullif(sum(l.relpages), 0) FROM pg_partition_tree(c.oid) t "
    "JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf AND l.reltuples > 0) "
    "FROM pg_class c WHERE c.oid = to_regclass(:name)"
)


def stale_tables(db: Database, tables: Sequence[str]) -> list[str]:
    """The tables among ``tables`` never analysed, or grown well past their analysed size."""
    if not db.is_postgres:
        return []
    # reltuples is -1 until the first ANALYZE (PostgreSQL 14+); relpages is the size in
    # pages the last ANALYZE saw.
    stale = []
    with db.engine.connect() as conn:
        for name in tables:
            row = conn.execute(_SIZES, {"name": name}).first()
            if row is None:
                continue
            reltuples, analysed_pages, partitioned, pages, density = row
            if partitioned:
                analysed_pages = reltuples / float(density) if density else 0
            grown = pages > analysed_pages * (1 + _GROWTH_FRACTION) + _GROWTH_PAGES
            if reltuples < 0 or grown:
                stale.append(name)
    return stale


def refresh_statistics(
    db: Database, tables: Sequence[str] = ("predictions", "feedback")
) -> list[str]:
    """ANALYZE the stale ones among ``tables``; returns the tables analysed.

    Best effort: a failure is logged and the caller's query runs on the old statistics
    (our queries are written to stay linear then too), since the read that follows reports
    an unreachable database on its own.
    """
    db.ensure_schema()
    analysed: list[str] = []
    try:
        for name in stale_tables(db, tables):
            columns = ", ".join(_COLUMNS.get(name, ()))
            target = f"{name} ({columns})" if columns else name
            # In a transaction of its own, committed before the read (whose transaction is
            # rolled back), with a lock timeout so a concurrent ANALYZE never stalls us.
            with db.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
                conn.execute(text(f"ANALYZE {target}"))
            analysed.append(name)
    except SQLAlchemyError as exc:
        log.warning("could not refresh planner statistics: %s", first_line(exc))
    return analysed
