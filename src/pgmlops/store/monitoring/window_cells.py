"""One scan of a window counting every feature on its reference points, inside PostgreSQL.

Each row's feature values are parsed to float8 once, into an array, and ``unnest``ed to one
(entry, value, category) tuple per feature; a hash aggregate then counts the tuples by
(entry, cell code, category). The query has no fence, so PostgreSQL may share the scan and
the partial aggregation among parallel workers.

Why an array and not a ``LATERAL (VALUES …)`` list (the previous query): PostgreSQL
prepares a VALUES list's expressions again for every outer row (nodeValuesscan.c), costly for
a dozen JSONB parsing expressions, while an array's elements are prepared once per query; and
the VALUES list needed an ``OFFSET 0`` fence, which kept the query on one core. The cell code
reads the unnested value, a plain column, so the parsing is not repeated for each reference
to it either. bench/monitor_query_cpu.py measures the query's CPU a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from pgmlops.domain.monitoring.window_counts import NumericCells
from pgmlops.domain.schema import MISSING_CATEGORY

# A logged number: JSON numbers and numeric text; anything else is missing, as pandas'
# to_numeric(errors="coerce") treats it on the row path.
_NUMBER = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
# Pseudo-feature numbers of the cells query, beside the features' own 0, 1, ...
_OUTPUT, _CONFIDENCE, _SCORE_CONFIDENCE, _TIME, _SCORE = -1, -2, -3, -4, -5
TIME_ENTRY = _TIME  # every row has one group or two under it: its count is the rows'
# Cell codes besides the width_bucket ones (0..2K).
_MISSING, _INFINITE = -1, -2
# The largest float32, and 2^128 just above it, where rounding to float32 overflows.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TWO_128 = 2.0**128
# A row's hour: whole hours since 1970 (UTC whatever the session's time zone). date_part,
# not extract: extract returns numeric since PostgreSQL 14, several times slower a row.
HOUR_OF = "floor(date_part('epoch', w.created_at) / 3600)::bigint"


@dataclass(frozen=True)
class NumericSpec:
    """A numeric column to count on ``points``; features are rounded to float32 first."""

    points: np.ndarray
    float32: bool = True
    column: str = "features"  # or the logged "probability" or "prediction" (outputs)


def number(text: Any) -> Any:
    """SQL for logged text as float8 (NULL unless numeric)."""
    from psycopg import sql

    return sql.SQL("(CASE WHEN {t} ~ {re} THEN ({t})::float8 END)").format(
        t=text, re=sql.Literal(_NUMBER)
    )


def _json_number(doc: Any, name: str) -> Any:
    """SQL for the JSONB field ``name`` of ``doc`` as float8: numbers, numeric text, else NULL."""
    from psycopg import sql

    # A JSON number's text (->>) is numeric_out's, which float8in reads as the ::float8 cast
    # of the number would (that cast goes through the same text) at half the cost; only
    # strings need the regular expression.
    field = sql.Literal(name)
    as_text = sql.SQL("({} ->> {})").format(doc, field)
    return sql.SQL(
        "(CASE jsonb_typeof({doc} -> {f}) WHEN 'number' THEN {t}::float8 "
        "WHEN 'string' THEN {parsed} END)"
    ).format(doc=doc, f=field, t=as_text, parsed=number(as_text))


def _float32(value: Any) -> Any:
    """SQL rounding ``value`` to float32 with one reference to it (no repeated parsing).

    Halved, rounded, doubled: exact for every float32 but the subnormal ones (below
    2^-126, where the halving costs one bit), and finite where the float32 cast would
    overflow: a value at or beyond the overflow point comes out as 2^128, just above the
    largest float32, which the cell code reads as infinite.
    """
    from psycopg import sql

    # float8larger/float8smaller, unlike greatest/least, keep a NULL (missing) value NULL.
    return sql.SQL(
        "(float8smaller(float8larger({v}, -{c}), {c}) * 0.5)::float4::float8 * 2"
    ).format(v=value, c=sql.Literal(_TWO_128))


def _array(values: Sequence[float]) -> Any:
    from psycopg import sql

    return sql.SQL("{}::float8[]").format(sql.Literal([float(v) for v in values]))


def _edges(points: np.ndarray) -> np.ndarray:
    """Each point followed by the next float8 up: ``width_bucket`` over these is the cell code.

    A value x falls in bucket 2i + 1 exactly when it equals point i (no float8 lies between
    a point and its successor) and in bucket 2i when it lies strictly between points i - 1
    and i: the codes of ``NumericCells.from_codes`` in one ``width_bucket`` call.
    """
    points = np.asarray(points, dtype=np.float64)
    return np.column_stack([points, np.nextafter(points, np.inf)]).ravel()


# A value's cell (see _edges); entries without points (categories, confidences, times) get 0.
_CODE = (
    "CASE WHEN u.n IS NULL THEN {missing} "
    "WHEN u.n IN ('Infinity', '-Infinity') OR (abs(u.n) > {largest} AND u.f = ANY({rounded})) "
    "THEN {inf} ELSE coalesce(width_bucket(u.n, {edges}), 0) END"
)


def cell_groups(
    cur: Any,
    where: Any,
    numeric: dict[str, NumericSpec],
    categorical: Sequence[str],
    output: NumericSpec | None,
    *,
    score_edges: np.ndarray | None = None,
    by_hour: bool = False,
) -> list[tuple[Any, ...]]:
    """One scan's groups: (entry, code, key, rows, values, sum, min, max, sum of squares),
    hour first if asked.

    ``score_edges`` also counts the binary score by (prediction, score bin) — every row's,
    labelled or not, so they can be stored with the hour. ``by_hour`` groups by the hour of
    created_at too (hours since 1970, UTC), so the groups of each closed hour can be stored
    (store/monitoring/log_summaries.py) and only summed from then on.
    """
    from psycopg import sql

    names = list(numeric) + list(categorical)
    ids = [_TIME, _CONFIDENCE, _SCORE_CONFIDENCE]
    # Whole microseconds since 1970 are exact in a float8 (below 2^53).
    values = [
        sql.SQL("extract(epoch FROM w.created_at) * 1000000"),
        sql.SQL("w.confidence"),
        sql.SQL("abs(w.probability - 0.5) * 2"),
    ]
    keys: list[Any] = [sql.NULL] * 3
    points: dict[int, NumericSpec] = {}
    for i, name in enumerate(names):
        ids.append(i)
        if name in numeric:
            points[i] = numeric[name]
            parsed = _json_number(sql.SQL("w.features"), name)
            values.append(_float32(parsed) if numeric[name].float32 else parsed)
            keys.append(sql.NULL)
        else:
            values.append(sql.NULL)
            keys.append(sql.SQL("w.features ->> {}").format(sql.Literal(name)))
    if score_edges is not None:
        ids.append(_SCORE)
        points[_SCORE] = NumericSpec(np.asarray(score_edges, dtype=np.float64), False)
        values.append(sql.SQL("w.probability"))
        keys.append(sql.SQL("w.prediction"))
    if output is not None:
        ids.append(_OUTPUT)
        points[_OUTPUT] = output
        column = output.column == "probability"
        parsed = sql.SQL("w.probability") if column else number(sql.SQL("w.prediction"))
        values.append(_float32(parsed) if output.float32 else parsed)
        keys.append(sql.NULL)
    # Per entry its edges, chosen by the entry's number: each tuple carries only (entry,
    # value, category), the values already rounded to float32 where the spec asks.
    edges = sql.SQL("(CASE u.f {} END)").format(
        sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(i), _array(_edges(spec.points)))
            for i, spec in points.items()
        )
    )
    rounded = sql.SQL("{}::int[]").format(
        sql.Literal([i for i, spec in points.items() if spec.float32])
    )
    code = sql.SQL(_CODE).format(
        edges=edges,
        rounded=rounded,
        largest=sql.Literal(_FLOAT32_MAX),
        missing=sql.Literal(_MISSING),
        inf=sql.Literal(_INFINITE),
    )
    query = sql.SQL(
        "SELECT {hour}u.f, {code} AS code, u.key, count(*), count(u.n), sum(u.n), min(u.n), "
        "max(u.n), sum(u.n * u.n) FROM predictions w CROSS JOIN LATERAL ROWS FROM "
        "(unnest({ids}::int[]), unnest(ARRAY[{values}]::float8[]), "
        "unnest(ARRAY[{keys}]::text[])) AS u(f, n, key) "
        "WHERE {where} GROUP BY {by}u.f, {at}, u.key"
    ).format(
        hour=sql.SQL(HOUR_OF + " AS hour, " if by_hour else ""),
        by=sql.SQL("1, " if by_hour else ""),
        at=sql.SQL("3" if by_hour else "2"),
        code=code,
        ids=sql.Literal(ids),
        values=sql.SQL(", ").join(values),
        keys=sql.SQL(", ").join(keys),
        where=where,
    )
    # Hash the few groups: sorting (features x rows) tuples would spill to disk.
    cur.execute("SET LOCAL enable_sort = off")
    cur.execute(query)
    fetched = cur.fetchall()
    cur.execute("SET LOCAL enable_sort = on")
    return fetched


def collect_cells(
    fetched: Iterable[tuple[Any, ...]],
    numeric: dict[str, NumericSpec],
    categorical: Sequence[str],
    output: NumericSpec | None,
) -> dict[str, Any]:
    """What monitoring reads of groups unique by (entry, code, key) — one scan's, or stored
    hours merged by store/monitoring/log_summaries.py's ``merge_frames``: rows, times, cells,
    counts."""
    names = list(numeric) + list(categorical)
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for row in fetched:
        groups.setdefault(int(row[0]), []).append(row[1:])
    # Each group: (code, key, rows, non-null values, sum, min, max). An entry without points
    # has one group, or two when some of its values are NULL (the missing code): merge them.
    time = _merged(groups.get(_TIME, []))
    rows = int(time[2])
    conf = _merged(groups.get(_CONFIDENCE, []))
    score_conf = _merged(groups.get(_SCORE_CONFIDENCE, []))
    features: dict[str, NumericCells | dict[str, int]] = {}
    infinite = []
    for i, name in enumerate(names):
        found = groups.get(i, [])
        if name in numeric:
            cells, n_infinite = _numeric_cells(numeric[name].points, found)
            features[name] = cells
            if n_infinite:
                infinite.append(name)
        else:
            features[name] = {
                MISSING_CATEGORY if key is None else str(key): int(n)
                for _code_, key, n, *_ in found
            }
    out_cells = None
    out_range: tuple[float | None, float | None] = (None, None)
    if output is not None:
        found = groups.get(_OUTPUT, [])
        out_cells, _ = _numeric_cells(output.points, found)
        present = [g for g in found if g[0] not in (_MISSING, _INFINITE) and g[3]]
        if present:
            out_range = (min(g[5] for g in present), max(g[6] for g in present))
    return {
        "rows": rows,
        "first_at": _time(time[5]),
        "last_at": _time(time[6]),
        "features": features,
        "infinite": infinite,
        "output": out_cells,
        "output_range": out_range,
        "confidence": (int(conf[3]), float(conf[4] or 0.0)),
        "score_confidence": (score_conf[4] / score_conf[3]) if score_conf[3] else None,
        "scores": _score_groups(groups.get(_SCORE, [])),
    }


def _score_groups(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(prediction, score bin, rows, scored rows, sum of p, sum of p²) of every row.

    A score's cell code c, on the edges interleaved with their successors, is bin (c + 1) // 2
    of ``width_bucket`` over the edges themselves; a missing score has no bin.
    """
    bins: dict[tuple[Any, Any], list[float]] = {}
    for code, key, rows, values, total, _low, _high, squares in found:
        b = None if code in (_MISSING, _INFINITE) else (int(code) + 1) // 2
        at = bins.setdefault((key, b), [0.0, 0.0, 0.0, 0.0])
        at[0] += rows
        at[1] += values
        at[2] += total or 0.0
        at[3] += squares or 0.0
    return [(prediction, b, *sums) for (prediction, b), sums in bins.items()]


def _merged(found: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One (code, key, rows, non-null values, sum, min, max) from an entry's groups."""
    lows = [g[5] for g in found if g[5] is not None]
    highs = [g[6] for g in found if g[6] is not None]
    sums = [g[4] for g in found if g[4] is not None]
    return (
        0,
        None,
        sum(int(g[2]) for g in found),
        sum(int(g[3]) for g in found),
        sum(sums) if sums else None,
        min(lows) if lows else None,
        max(highs) if highs else None,
    )


def _numeric_cells(points: np.ndarray, found: list[tuple[Any, ...]]) -> tuple[NumericCells, int]:
    missing = sum(int(n) for code, _, n, *_ in found if code == _MISSING)
    infinite = sum(int(n) for code, _, n, *_ in found if code == _INFINITE)
    kept = [g for g in found if g[0] not in (_MISSING, _INFINITE)]
    cells = NumericCells.from_codes(
        points,
        np.array([g[0] for g in kept], dtype=np.int64),
        np.array([g[2] for g in kept], dtype=np.float64),
        np.array([g[4] or 0.0 for g in kept], dtype=np.float64),
        missing,
    )
    return cells, infinite


def _time(micros: float | None) -> datetime | None:
    if micros is None or not math.isfinite(micros):
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
