"""A window located by its hours: one pass counts the rows of every hour and, for a binary
model, groups every row by (hour, label, prediction, score bin) through one hash join with
the labels. The newest ``last`` rows are then found from the hour counts (the cutoff is
looked up inside one hour), whole hours' label groups are summed, and only the window's
first, partial hour is read again. One pass over the log where the previous queries made
four (count, cutoff, count at the cutoff, labels); the labels cannot be stored with the
hours (store/log_summaries.py) because they arrive after their predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.store.log_summaries import first_whole_hour, hour_start
from pgmlops.store.window_cells import HOUR_OF

# log_loss clips probabilities at the float64 epsilon, as scikit-learn does.
_EPS = float(np.finfo(np.float64).eps)
# Each prediction's current label (the newest with superseded_at IS NULL: two racing writers
# could leave two), joined by hash whatever the row estimates (the caller disables the rest).
LABELS = (
    "(SELECT DISTINCT ON (prediction_id) prediction_id, label FROM feedback "
    "WHERE superseded_at IS NULL ORDER BY prediction_id, id DESC) f"
)
_SCORE_COLUMNS = ["label", "prediction", "bin", "n", "n_scored", "sum_p", "sum_p2", "ln_p", "ln_q"]


@dataclass(frozen=True)
class HourPass:
    """Rows per hour, and (binary) the rows' (hour, label, prediction, bin, sums) groups."""

    counts: dict[int, int]
    scores: list[tuple[Any, ...]]


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


def hour_pass(
    cur: Any, conditions: list[Any], lo: int | None, edges: np.ndarray | None
) -> HourPass:
    """One scan of the version's rows from hour ``lo`` on (None: all of them)."""
    from psycopg import sql

    where = aliased(conditions)
    if lo is not None:
        where = sql.SQL("{} AND w.created_at >= {}").format(where, sql.Literal(hour_start(lo)))
    if edges is None:
        cur.execute(
            sql.SQL(
                "SELECT " + HOUR_OF + ", count(*) FROM predictions w WHERE {} GROUP BY 1"
            ).format(where)
        )
        return HourPass({int(h): int(n) for h, n in cur.fetchall()}, [])
    scores = _grouped(cur, where, edges, by_hour=True)
    counts: dict[int, int] = {}
    for group in scores:
        counts[group[0]] = counts.get(group[0], 0) + int(group[4])
    return HourPass(counts, scores)


def locate(
    cur: Any,
    conditions: list[Any],
    counts: dict[int, int],
    last: int | None,
    since: datetime | None,
) -> tuple[Any, int | None]:
    """The window's WHERE clause (alias w) and its first whole hour (None: every hour).

    ``counts`` must hold every hour the newest ``last`` rows can lie in. Rows at the cutoff
    time itself may be left out (the id tie-break), so the cutoff's hour is never whole.
    """
    from psycopg import sql

    where = list(conditions)
    first = None if since is None else first_whole_hour(since)
    if last is None or sum(counts.values()) <= last:
        return aliased(where), first
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
    cur: Any, where: Any, first: int | None, hours: HourPass, edges: np.ndarray
) -> pd.DataFrame:
    """Rows by (label, prediction, score bin): whole hours from the pass, the rest read again."""
    from psycopg import sql

    groups = [g[1:] for g in hours.scores if first is None or g[0] >= first]
    if first is not None:
        before = sql.SQL("{} AND w.created_at < {}").format(where, sql.Literal(hour_start(first)))
        groups += _grouped(cur, before, edges, by_hour=False)
    totals: dict[tuple[Any, Any, Any], np.ndarray] = {}
    for label, prediction, b, *values in groups:
        key = (label, prediction, b)
        totals[key] = totals.get(key, 0.0) + np.asarray(values, dtype=np.float64)
    frame = pd.DataFrame(
        [(*key, *values.tolist()) for key, values in totals.items()], columns=_SCORE_COLUMNS
    )
    for name in _SCORE_COLUMNS[3:]:
        frame[name] = frame[name].astype("float64")
    frame["bin"] = frame["bin"].astype("Int64")
    return frame


def _grouped(cur: Any, where: Any, edges: np.ndarray, *, by_hour: bool) -> list[tuple[Any, ...]]:
    """Rows by ([hour,] label, prediction, score bin): counts, sums of p, p², log losses."""
    from psycopg import sql

    eps = sql.Literal(_EPS)
    p = sql.SQL("{}::float8[]").format(sql.Literal([float(v) for v in edges]))
    query = sql.SQL(
        "SELECT {hour}f.label, w.prediction, width_bucket(w.probability, {p}), count(*), "
        "count(w.probability), coalesce(sum(w.probability), 0), "
        "coalesce(sum(w.probability * w.probability), 0), "
        "coalesce(sum(ln(greatest(least(w.probability, 1 - {eps}), {eps}))), 0), "
        "coalesce(sum(ln(greatest(least(1 - w.probability, 1 - {eps}), {eps}))), 0) "
        "FROM predictions w LEFT JOIN " + LABELS + " ON f.prediction_id = w.id "
        "WHERE {where} GROUP BY {keys}"
    ).format(
        hour=sql.SQL(HOUR_OF + ", " if by_hour else ""),
        p=p,
        eps=eps,
        where=where,
        keys=sql.SQL("1, 2, 3, 4" if by_hour else "1, 2, 3"),
    )
    # Hash the groups (hours x labels x bins): sorting every row would spill to disk.
    cur.execute("SET LOCAL enable_sort = off")
    cur.execute(query)
    fetched = cur.fetchall()
    cur.execute("SET LOCAL enable_sort = on")
    width = 4 if by_hour else 3
    grouped = []
    for r in fetched:
        keys = (int(r[0]), *r[1:4]) if by_hour else tuple(r[:3])
        grouped.append((*keys, *(float(v) for v in r[width:])))
    return grouped
