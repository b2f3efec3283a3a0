"""Closed hours of the prediction log, summarised once, so a window's cost stops growing with it.

A window's cells (store/monitoring/window_cells.py) are sums over its rows, hence sums over its
hours. Every scan of the cells groups by hour; each hour that is closed (it ended ``CLOSED_AFTER``
ago) and lies wholly inside the window is stored in ``log_summaries``, keyed by the version
and a digest of what was counted (``spec_key``). The next window sums the stored hours it
covers wholly and scans only the rest: its first, partial hour and the newest hours.

A stored hour is used only while the log still holds exactly ``rows`` rows in that hour
(counted by store/monitoring/window_hours.py's pass, which parses no JSON): a row arriving late (a
spill folder replayed after an outage) or deleted (a batch job's rows, retention) makes the
count differ, and the hour is scanned again and stored anew. Labels are never stored: they
arrive after their predictions.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.store.db import Database, first_line
from pgmlops.store.monitoring.window_cells import NumericSpec
from pgmlops.store.tables import LogSummaryRow

log = logging.getLogger(__name__)

# An hour is stored once it ended this long ago: rows logged in it have reached the table.
CLOSED_AFTER = timedelta(minutes=10)
# A cell group's fields, as store/monitoring/window_cells.py's query returns them.
_FIELDS = ("f", "code", "key", "rows", "values", "total", "low", "high", "squares")
_INTEGER = {"f", "code", "rows", "values"}
# Stored hours merged at a time.
_BATCH = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoredHour:
    """One hour's cell groups (store/monitoring/window_cells.py) and the rows they count."""

    hour: int
    rows: int
    cells: list[tuple[Any, ...]]


def hour_start(hour: int) -> datetime:
    """The UTC time an hour number (hours since 1970) starts at."""
    return _EPOCH + timedelta(hours=hour)


def hour_of(at: datetime) -> int:
    """The hour number holding ``at``."""
    return math.floor((at - _EPOCH).total_seconds() / 3600)


def first_whole_hour(since: datetime) -> int:
    """The first hour that starts at or after ``since``."""
    hour = hour_of(since)
    return hour if hour_start(hour) == since else hour + 1


def last_closed_hour(now: datetime) -> int:
    """The newest hour that ended ``CLOSED_AFTER`` before ``now``."""
    return hour_of(now - CLOSED_AFTER) - 1


def spec_key(
    numeric: dict[str, NumericSpec],
    categorical: Sequence[str],
    output: NumericSpec | None,
    score_edges: np.ndarray | None,
) -> str:
    """A digest of what a scan counts: stored hours are reused only under the same one."""

    def points(spec: NumericSpec | None) -> Any:
        if spec is None:
            return None
        return [[float(v) for v in spec.points], spec.float32, spec.column]

    described = {
        "numeric": {name: points(spec) for name, spec in numeric.items()},
        "categorical": list(categorical),
        "output": points(output),
        "scores": None if score_edges is None else [float(v) for v in score_edges],
        "layout": 2,
    }
    text = json.dumps(described, sort_keys=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stored_rows(
    cur: Any, model_name: str, version: int, spec: str, hours: Iterable[int]
) -> dict[int, int]:
    """How many rows each of ``hours`` held when it was stored (those stored)."""
    wanted = sorted(hours)
    if not wanted:
        return {}
    cur.execute(
        "SELECT hour, rows FROM log_summaries WHERE model_name = %s "
        "AND version = %s AND spec = %s AND hour = ANY(%s)",
        (model_name, int(version), spec, wanted),
    )
    return {int(h): int(n) for h, n in cur.fetchall()}


def stored_cells(
    cur: Any, model_name: str, version: int, spec: str, hours: Iterable[int]
) -> Iterator[pd.DataFrame]:
    """The cell groups of ``hours``, read a few hours at a time (a server-side cursor), so
    memory holds one batch of hours, not months of them."""
    wanted = sorted(hours)
    if not wanted:
        return
    with cur.connection.cursor(name="pgmlops_stored_cells") as named:
        named.itersize = 16
        named.execute(
            "SELECT cells FROM log_summaries WHERE model_name = %s "
            "AND version = %s AND spec = %s AND hour = ANY(%s)",
            (model_name, int(version), spec, wanted),
        )
        for (cells,) in named:
            yield unpack(cells)


def lower_bound(cur: Any, model_name: str, version: int, spec: str, last: int) -> int | None:
    """An hour the newest ``last`` rows start at or after, by the stored counts (None: unknown).

    Hours not stored yet only add rows after it. Stored counts that have since shrunk are
    caught by the caller, which then finds fewer than ``last`` rows from this hour on.
    """
    cur.execute(
        "SELECT hour, rows FROM log_summaries WHERE model_name = %s AND version = %s "
        "AND spec = %s ORDER BY hour DESC",
        (model_name, int(version), spec),
    )
    total = 0
    for hour, rows in cur.fetchall():
        total += int(rows)
        if total >= last:
            return int(hour)
    return None


def outside(hours: Iterable[int]) -> Any:
    """SQL (on alias w) leaving out the rows of ``hours``, one range per run of hours."""
    from psycopg import sql

    runs: list[list[int]] = []
    for h in sorted(hours):
        if runs and runs[-1][1] == h - 1:
            runs[-1][1] = h
        else:
            runs.append([h, h])
    if not runs:
        return sql.SQL("TRUE")
    return sql.SQL(" AND ").join(
        sql.SQL("NOT (w.created_at >= {} AND w.created_at < {})").format(
            sql.Literal(hour_start(lo)), sql.Literal(hour_start(hi + 1))
        )
        for lo, hi in runs
    )


def save_hours(
    db: Database, model_name: str, version: int, spec: str, hours: Sequence[StoredHour]
) -> int:
    """Store (or replace) closed hours' summaries; best effort, as a read must not fail on it."""
    if not hours:
        return 0
    rows = [
        {
            "model_name": model_name,
            "version": int(version),
            "spec": spec,
            "hour": h.hour,
            "rows": h.rows,
            "cells": pack(h.cells),
            "written_at": datetime.now(UTC),
        }
        for h in hours
    ]
    stmt = insert(LogSummaryRow.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["model_name", "version", "spec", "hour"],
        set_={c: stmt.excluded[c] for c in ("rows", "cells", "written_at")},
    )
    try:
        with db.engine.begin() as conn:
            for start in range(0, len(rows), 200):
                conn.execute(stmt, rows[start : start + 200])
    except SQLAlchemyError as exc:
        log.warning("could not store the log's hour summaries: %s", first_line(exc))
        return 0
    return len(rows)


def newest_hour(cur: Any, model_name: str, version: int, spec: str) -> int | None:
    """The newest stored hour of a version under ``spec``."""
    cur.execute(
        "SELECT max(hour) FROM log_summaries WHERE model_name = %s AND version = %s AND spec = %s",
        (model_name, int(version), spec),
    )
    found = cur.fetchone()[0]
    return None if found is None else int(found)


def forget_before(db: Database, before: datetime) -> int:
    """Delete the summaries of hours that start before ``before`` (their rows are gone)."""
    with db.session() as s:
        result = s.execute(delete(LogSummaryRow).where(LogSummaryRow.hour < hour_of(before)))
        return int(result.rowcount or 0)


def pack(groups: Sequence[tuple[Any, ...]]) -> bytes:
    """An hour's cell groups as numpy arrays in one .npz blob (no pickle: nothing executes)."""
    columns = list(zip(*groups, strict=True)) if groups else [()] * len(_FIELDS)
    arrays: dict[str, np.ndarray] = {}
    for name, column in zip(_FIELDS, columns, strict=True):
        if name == "key":
            arrays["key"] = np.array(["" if k is None else str(k) for k in column], dtype=str)
            arrays["key_null"] = np.array([k is None for k in column], dtype=bool)
        elif name in _INTEGER:
            arrays[name] = np.array(column, dtype=np.int64)
        else:
            arrays[name] = np.array([np.nan if v is None else v for v in column], dtype=float)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(blob: bytes) -> pd.DataFrame:
    """The groups ``pack`` stored, as a frame with one column per field (NaN for NULL)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as stored:
        frame = pd.DataFrame({name: stored[name] for name in _FIELDS})
        frame["key"] = frame["key"].astype(object).where(~stored["key_null"], None)
    return frame


def merge_frames(frames: Iterable[pd.DataFrame]) -> list[tuple[Any, ...]]:
    """Groups of many hours as one window's: summed by (entry, code, key), min of minima...

    Reduced every ``_BATCH`` hours, so memory holds a few hours' groups, not the window's.
    """
    merged: pd.DataFrame | None = None
    batch: list[pd.DataFrame] = []
    for frame in frames:
        if len(frame):
            batch.append(frame)
        if len(batch) >= _BATCH:
            merged = _reduce([merged, *batch] if merged is not None else batch)
            batch = []
    if batch:
        merged = _reduce([merged, *batch] if merged is not None else batch)
    if merged is None:
        return []
    out = []
    for r in merged.itertuples(index=False):
        present = r.values > 0
        out.append(
            (
                int(r.f),
                int(r.code),
                None
                if r.key is None or (isinstance(r.key, float) and math.isnan(r.key))
                else r.key,
                int(r.rows),
                int(r.values),
                float(r.total) if present else None,
                float(r.low) if present else None,
                float(r.high) if present else None,
                float(r.squares) if present else None,
            )
        )
    return out


def _reduce(frames: list[pd.DataFrame]) -> pd.DataFrame:
    every = pd.concat(frames, ignore_index=True)
    return (
        every.groupby(["f", "code", "key"], dropna=False, sort=False)
        .agg(
            rows=("rows", "sum"),
            values=("values", "sum"),
            total=("total", "sum"),
            low=("low", "min"),
            high=("high", "max"),
            squares=("squares", "sum"),
        )
        .reset_index()
    )


def as_frame(groups: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """Scanned groups as the frame ``unpack`` gives."""
    return unpack(pack(groups))
