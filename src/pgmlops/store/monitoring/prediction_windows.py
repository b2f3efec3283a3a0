"""Windows of logged predictions, read column-wise.

One query on PostgreSQL pulls each schema feature out of the JSONB document
(``features ->> 'Age'``), the outputs and the current feedback label, and streams it with
``COPY ... TO STDOUT (FORMAT csv)`` into Arrow's CSV reader: a million rows arrive as typed
columns in a few seconds, with no Python object per row. SQLite (the embedded default, small
logs) uses ``json_extract`` through SQLAlchemy.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.kinds import Kind
from pgmlops.errors import StoreError
from pgmlops.store.db import Database, first_line
from pgmlops.store.statistics import refresh_statistics
from pgmlops.store.tables import FeedbackRow, PredictionRow

# Output columns of a window, beside the features (kept apart so no feature name can clash).
OUTPUT_COLUMNS = ("created_at", "prediction", "probability", "confidence", "label")
_NULL = r"\N"


@dataclass(frozen=True)
class PredictionWindow:
    """Logged predictions of one version, column-wise.

    ``features`` has one column per requested feature (numeric as float64 with NaN,
    categorical as text with NaN for missing); ``outputs`` has ``OUTPUT_COLUMNS``:
    created_at (UTC), prediction (text), probability and confidence (float64) and label (the
    current feedback label as text, NaN when none). ``proba`` holds multiclass probabilities
    (n, k) in the requested class order when classes were asked for.
    """

    features: pd.DataFrame
    outputs: pd.DataFrame
    proba: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.outputs)

    @property
    def first_at(self) -> datetime | None:
        return _time(self.outputs["created_at"].min()) if len(self) else None

    @property
    def last_at(self) -> datetime | None:
        return _time(self.outputs["created_at"].max()) if len(self) else None


def _time(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert(UTC).to_pydatetime(warn=False)


def read_window(
    db: Database,
    model_name: str,
    version: int,
    columns: Sequence[tuple[str, Kind]],
    *,
    classes: Sequence[str] | None = None,
    last: int | None = None,
    since: datetime | None = None,
) -> PredictionWindow:
    """The newest ``last`` predictions and/or those since ``since``, with current labels."""
    if last is not None and last < 1:
        raise StoreError(f"a window needs at least 1 row, got last={last}")
    db.ensure_schema()
    if db.is_postgres:
        return _read_pg(db, model_name, version, columns, classes, last, since)
    return _read_sqlite(db, model_name, version, columns, classes, last, since)


def _read_pg(
    db: Database,
    model_name: str,
    version: int,
    columns: Sequence[tuple[str, Kind]],
    classes: Sequence[str] | None,
    last: int | None,
    since: datetime | None,
) -> PredictionWindow:
    import psycopg
    from psycopg import sql

    where = [
        sql.SQL("model_name = {}").format(sql.Literal(model_name)),
        sql.SQL("version = {}").format(sql.Literal(int(version))),
    ]
    if since is not None:
        where.append(sql.SQL("created_at >= {}").format(sql.Literal(since)))
    picked: list[sql.Composable] = [
        sql.SQL("date_part('epoch', w.created_at)"),
        *(sql.SQL("w.features ->> {}").format(sql.Literal(name)) for name, _ in columns),
        sql.SQL("w.prediction, w.probability, w.confidence"),
        *(
            sql.SQL("w.output -> 'probabilities' ->> {}").format(sql.Literal(str(c)))
            for c in classes or ()
        ),
        sql.SQL("f.label"),
    ]
    # A bulk-loaded log that autovacuum has not analysed yet would be planned blind.
    refresh_statistics(db)
    buffer = io.BytesIO()
    try:
        with db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                if last is not None:
                    cutoff = cutoff_time(cur, where, last)
                    if cutoff is not None:
                        where.append(sql.SQL("created_at >= {}").format(sql.Literal(cutoff)))
                # Pulling fields out of JSONB dominates; worker processes share it. The
                # planner's default costs keep a COPY serial, so lower them for this one.
                cur.execute("SET LOCAL parallel_setup_cost = 0")
                cur.execute("SET LOCAL parallel_tuple_cost = 0")
                # Only a hash join, whatever the row estimates: misled by missing or
                # stale statistics (one row expected), the planner chose a nested loop
                # over the feedback subquery, quadratic in the window (50,000 rows with
                # 20,000 labels: minutes instead of seconds).
                cur.execute("SET LOCAL enable_nestloop = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                with cur.copy(_window_query(picked, where)) as copy:
                    for chunk in copy:
                        buffer.write(chunk)
            raw.rollback()
    except (SQLAlchemyError, psycopg.Error, OSError) as exc:
        raise StoreError(f"cannot read the prediction log: {first_line(exc)}") from exc
    names = _column_names(columns, classes)
    buffer.seek(0)
    frame = _read_csv(buffer, names, columns, classes)
    del buffer
    if last is not None and len(frame) > last:
        # Rows tied with the cutoff time (one logged batch shares a timestamp) came too.
        newest = np.argsort(-frame["created_at"].to_numpy(), kind="stable")[:last]
        frame = frame.take(np.sort(newest)).reset_index(drop=True)
    return _split(frame, columns, classes, epoch=True)


def _read_sqlite(
    db: Database,
    model_name: str,
    version: int,
    columns: Sequence[tuple[str, Kind]],
    classes: Sequence[str] | None,
    last: int | None,
    since: datetime | None,
) -> PredictionWindow:
    p = PredictionRow
    # SQLite's JSON paths cannot quote a '"' inside a key: such documents are parsed here.
    addressable = all('"' not in name for name, _ in columns)
    label = (
        select(FeedbackRow.label)
        .where(FeedbackRow.prediction_id == p.id, FeedbackRow.superseded_at.is_(None))
        .order_by(FeedbackRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    features = (
        [func.json_extract(p.features, f'$."{name}"') for name, _ in columns]
        if addressable
        else [cast(p.features, Text)]
    )
    probas = [func.json_extract(p.output, f'$.probabilities."{c}"') for c in classes or ()]
    stmt = select(
        p.created_at, *features, p.prediction, p.probability, p.confidence, *probas, label
    ).where(p.model_name == model_name, p.version == version)
    if since is not None:
        stmt = stmt.where(p.created_at >= since)
    if last is not None:
        stmt = stmt.order_by(p.created_at.desc()).limit(last)
    with db.session() as s:
        rows = s.execute(stmt).all()
    if not addressable:
        rows = [_expand(row, columns) for row in rows]
    names = _column_names(columns, classes)
    frame = pd.DataFrame.from_records(rows, columns=names)
    frame = typed_columns(frame, columns, classes)
    return _split(frame, columns, classes, epoch=False)


# Windows of at least this many rows count the log first: when the window holds every row,
# the cutoff lookup (an index walk over `last` rows) is skipped.
_COUNT_FIRST = 100_000


def cutoff_time(cur: Any, where: list[Any], last: int) -> datetime | None:
    """The time of the ``last``-th newest row, or None when there are no more rows than that."""
    from psycopg import sql

    condition = sql.SQL(" AND ").join(where)
    if last >= _COUNT_FIRST:
        cur.execute(sql.SQL("SELECT count(*) FROM predictions WHERE {}").format(condition))
        if cur.fetchone()[0] <= last:
            return None
    cur.execute(
        sql.SQL(
            "SELECT created_at FROM predictions WHERE {} ORDER BY created_at DESC OFFSET {} LIMIT 1"
        ).format(condition, sql.Literal(last - 1))
    )
    row = cur.fetchone()
    return row[0] if row else None


def _window_query(picked: list[Any], where: list[Any]) -> Any:
    from psycopg import sql

    # Only the newest label with superseded_at IS NULL counts (two racing writers could
    # leave two); a hash join on that small set is cheaper than a lookup per row.
    return sql.SQL(
        "COPY (SELECT {} FROM predictions w LEFT JOIN ("
        "SELECT DISTINCT ON (prediction_id) prediction_id, label FROM feedback "
        "WHERE superseded_at IS NULL ORDER BY prediction_id, id DESC"
        ") f ON f.prediction_id = w.id WHERE {}) TO STDOUT (FORMAT csv, NULL {})"
    ).format(
        sql.SQL(", ").join(picked),
        sql.SQL(" AND ").join(sql.SQL("w.") + c for c in where),
        sql.Literal(_NULL),
    )


# The window query returns created_at, the features, prediction, probability, confidence,
# one probability per requested class, then the label; these helpers name and type them.


def _column_names(columns: Sequence[tuple[str, Kind]], classes: Sequence[str] | None) -> list[str]:
    # Positional names: feature names are arbitrary text and could clash with output names.
    return [
        "created_at",
        *(f"f{i}" for i in range(len(columns))),
        "prediction",
        "probability",
        "confidence",
        *(f"p{i}" for i in range(len(classes or ()))),
        "label",
    ]


def _read_csv(
    buffer: io.BytesIO,
    names: list[str],
    columns: Sequence[tuple[str, Kind]],
    classes: Sequence[str] | None,
) -> pd.DataFrame:
    """Parse COPY's CSV with Arrow (multi-threaded), typed up front; text stays Arrow-backed."""
    import pyarrow as pa
    from pyarrow import csv

    text = {f"f{i}" for i, (_, kind) in enumerate(columns) if kind == "categorical"}
    text |= {"prediction", "label"}

    def parse(types: dict[str, Any]) -> Any:
        buffer.seek(0)
        return csv.read_csv(
            buffer,
            read_options=csv.ReadOptions(column_names=names),
            convert_options=csv.ConvertOptions(
                column_types=types,
                # Only COPY's NULL marker is missing: a category called "NA" or "" stays itself.
                null_values=[_NULL],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    if buffer.getbuffer().nbytes == 0:
        return typed_columns(pd.DataFrame({n: [] for n in names}), columns, classes)
    try:
        table = parse({n: pa.string() if n in text else pa.float64() for n in names})
    except pa.ArrowInvalid:
        # A number logged as text somewhere: read everything as text, coerce per column.
        table = parse({n: pa.float64() if n == "created_at" else pa.string() for n in names})
    frame = pd.DataFrame(
        {
            n: pd.Series(pd.arrays.ArrowStringArray(table.column(n)))
            if pa.types.is_string(table.column(n).type)
            else table.column(n).to_numpy()
            for n in names
        }
    )
    return typed_columns(frame, columns, classes)


def typed_columns(
    frame: pd.DataFrame, columns: Sequence[tuple[str, Kind]], classes: Sequence[str] | None
) -> pd.DataFrame:
    """Numbers as float64 (NaN for missing or unparseable), text as str with NaN."""
    floats = ["probability", "confidence"]
    floats += [f"f{i}" for i, (_, kind) in enumerate(columns) if kind == "numeric"]
    floats += [f"p{i}" for i in range(len(classes or ()))]
    for name in floats:
        col = frame[name]
        if not pd.api.types.is_float_dtype(col):
            frame[name] = pd.to_numeric(col, errors="coerce").astype("float64")
    texts = [f"f{i}" for i, (_, kind) in enumerate(columns) if kind == "categorical"]
    for name in [*texts, "prediction", "label"]:
        col = frame[name]
        if not pd.api.types.is_string_dtype(col) or col.dtype == object:
            frame[name] = col.astype("str").where(col.notna())
    return frame


def _split(
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, Kind]],
    classes: Sequence[str] | None,
    *,
    epoch: bool,
) -> PredictionWindow:
    features = frame[[f"f{i}" for i in range(len(columns))]]
    features.columns = [name for name, _ in columns]
    created = frame["created_at"]
    created = (
        pd.to_datetime(created.astype("float64"), unit="s", utc=True)
        if epoch
        else pd.to_datetime(created, utc=True)
    )
    outputs = pd.DataFrame(
        {
            "created_at": created,
            "prediction": frame["prediction"],
            "probability": frame["probability"],
            "confidence": frame["confidence"],
            "label": frame["label"],
        }
    )
    proba = None
    if classes:
        proba = frame[[f"p{i}" for i in range(len(classes))]].to_numpy(dtype=np.float64)
    return PredictionWindow(features=features.reset_index(drop=True), outputs=outputs, proba=proba)


def _expand(row: Any, columns: Sequence[tuple[str, Kind]]) -> tuple[Any, ...]:
    """Replace the raw features document (position 1) by one value per feature."""
    values = tuple(row)
    doc = orjson.loads(values[1]) if values[1] else {}
    return (values[0], *(doc.get(name) for name, _ in columns), *values[2:])
