"""A window located by its hours: one cheap pass counts the rows of every hour (no JSON is
parsed), the newest ``last`` rows are found from those counts (the cutoff is looked up inside
one hour), and the counts tell which stored hours (store/monitoring/log_summaries.py) still hold
what they did. One pass where the previous queries made three (count, cutoff, count at the
cutoff). The labelled rows are then grouped over the window through one hash join with the
labels: they cannot be stored with the hours, since labels arrive after their predictions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.store.monitoring.log_summaries import first_whole_hour, hour_start
from pgmlops.store.monitoring.window_cells import HOUR_OF

# log_loss clips probabilities at the float64 epsilon, as scikit-learn does.
_EPS = float(np.finfo(np.float64).eps)
# Each prediction's current label (the newest with superseded_at IS NULL: two racing writers
# could leave two), joined by hash whatever the row estimates (the caller disables the rest).
LABELS = (
    "(SELECT DISTINCT ON (prediction_id) prediction_id, label FROM feedback "
    "WHERE superseded_at IS NULL ORDER BY prediction_id, id DESC) f"
)
_SCORE_COLUMNS = ["label", "prediction", "bin", "n", "n_scored", "sum_p", "sum_p2", "ln_p", "ln_q"]


def base_conditions(model_name: str, version: int, since: datetime | None) -> list[Any]:
    """The conditions (without alias) on a version's rows, since ``since``."""
    from psycopg import sql

    where = [
        sql.SQL("model_name = {}").format(sql.Literal(model_name)),
        sql.SQL("version = {}").format(sql.Literal(int(version))),
    ]
    if since is not None:
        where.append(sql.SQL("created_at >= {}").format(sql.Literal(since)))
    return where


def aliased(conditions: list[Any]) -> Any:
    from psycopg import sql

    return sql.SQL(" AND ").join(sql.SQL("w.") + c for c in conditions)


def hour_counts(cur: Any, conditions: list[Any], lo: int | None) -> dict[int, int]:
    """Rows of the version in each hour from hour ``lo`` on (None: all of them)."""
    from psycopg import sql

    where = aliased(conditions)
    if lo is not None:
        where = sql.SQL("{} AND w.created_at >= {}").format(where, sql.Literal(hour_start(lo)))
    cur.execute(
        sql.SQL("SELECT " + HOUR_OF + ", count(*) FROM predictions w WHERE {} GROUP BY 1").format(
            where
        )
    )
    return {int(h): int(n) for h, n in cur.fetchall()}


def locate(
    cur: Any,
    conditions: list[Any],
    counts: dict[int, int],
    last: int | None,
    since: datetime | None,
    lo: int | None = None,
) -> tuple[Any, int | None]:
    """The window's WHERE clause (alias w) and its first whole hour (None: every hour).

    ``counts`` holds the rows of every hour from ``lo`` on (None: every hour), and at least
    ``last`` of them when ``lo`` is set. Rows at the cutoff time itself may be left out (the
    id tie-break), so the cutoff's hour is never whole.
    """
    from psycopg import sql

    where = list(conditions)
    first = None if since is None else first_whole_hour(since)
    total = sum(counts.values())
    if last is None or total < last or (total == last and lo is None):
        return aliased(where), first
    if total == last and lo is not None:
        # Exactly the newest `last` rows lie from hour lo on: that hour bounds the window.
        where.append(sql.SQL("created_at >= {}").format(sql.Literal(hour_start(lo))))
        return aliased(where), lo if first is None else max(first, lo)
    newer = 0
    for hour in sorted(counts, reverse=True):
        if newer + counts[hour] >= last:
            break
        newer += counts[hour]
    inside = [
        *where,
        sql.SQL("created_at >= {}").format(sql.Literal(hour_start(hour))),
        sql.SQL("created_at < {}").format(sql.Literal(hour_start(hour + 1))),
    ]
    cur.execute(
        sql.SQL(
            "SELECT created_at FROM predictions WHERE {} ORDER BY created_at DESC OFFSET {} LIMIT 1"
        ).format(sql.SQL(" AND ").join(inside), sql.Literal(last - newer - 1))
    )
    cutoff = cur.fetchone()[0]
    at_cut = [*where, sql.SQL("created_at = {}").format(sql.Literal(cutoff))]
    cur.execute(
        sql.SQL("SELECT count(*) FROM predictions WHERE {} AND created_at >= {}").format(
            sql.SQL(" AND ").join(inside), sql.Literal(cutoff)
        )
    )
    excess = newer + int(cur.fetchone()[0]) - last
    where.append(sql.SQL("created_at >= {}").format(sql.Literal(cutoff)))
    if excess > 0:
        # Rows sharing the cutoff time (one logged batch): keep `last` in all, by id.
        where.append(
            sql.SQL("id NOT IN (SELECT id FROM predictions WHERE {} ORDER BY id LIMIT {})").format(
                sql.SQL(" AND ").join(at_cut), sql.Literal(excess)
            )
        )
    return aliased(where), hour + 1 if first is None else max(first, hour + 1)


def window_scores(
    cur: Any, where: Any, edges: np.ndarray, every: list[tuple[Any, ...]]
) -> pd.DataFrame:
    """Rows by (label, prediction, score bin): counts, sums of p, p², the log losses.

    ``every`` holds all the window's rows by (prediction, bin) from the cells; the labelled
    ones are read through the labels, and the unlabelled are the difference.
    """
    from psycopg import sql

    eps = sql.Literal(_EPS)
    p = sql.SQL("{}::float8[]").format(sql.Literal([float(v) for v in edges]))
    query = sql.SQL(
        "SELECT f.label, w.prediction, width_bucket(w.probability, {p}), count(*), "
        "count(w.probability), coalesce(sum(w.probability), 0), "
        "coalesce(sum(w.probability * w.probability), 0), "
        "coalesce(sum(ln(greatest(least(w.probability, 1 - {eps}), {eps}))), 0), "
        "coalesce(sum(ln(greatest(least(1 - w.probability, 1 - {eps}), {eps}))), 0) "
        "FROM " + LABELS + " JOIN predictions w ON w.id = f.prediction_id "
        "WHERE {where} GROUP BY 1, 2, 3"
    ).format(p=p, eps=eps, where=where)
    cur.execute(query)
    labelled = cur.fetchall()
    rest: dict[tuple[Any, Any], np.ndarray] = {}
    for prediction, b, *sums in every:
        key = (prediction, b)
        rest[key] = rest.get(key, np.zeros(4)) + np.asarray(sums, dtype=np.float64)
    rows = []
    for label, prediction, b, *sums in labelled:
        values = [float(v) for v in sums]
        rest[(prediction, b)] = rest.get((prediction, b), np.zeros(4)) - values[:4]
        rows.append((label, prediction, b, *values))
    for (prediction, b), sums in rest.items():
        if sums[0] > 0.5:
            rows.append((None, prediction, b, *sums.tolist(), 0.0, 0.0))
    frame = pd.DataFrame(rows, columns=_SCORE_COLUMNS)
    for name in _SCORE_COLUMNS[3:]:
        frame[name] = frame[name].astype("float64")
    frame["bin"] = frame["bin"].astype("Int64")
    return frame
