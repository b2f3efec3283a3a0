"""Training data as a Dask DataFrame: Parquet files (a path, folder or glob) or a SQL table."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import dask.dataframe as dd

from pgmlops.domain.redact import redact_secrets, redact_url
from pgmlops.errors import ConfigError, DataError

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_PARQUET = (".parquet", ".pq")


def read_partitions(
    data: str, query: str | None, index_column: str | None
) -> tuple[dd.DataFrame, dict[str, Any]]:
    """The rows, lazily in partitions, and the source as the registry records it."""
    if query:
        return _read_table(data, query.strip(), index_column)
    if "://" in data and not data.startswith("file://"):
        raise ConfigError(
            f"data {data!r} looks like a URL: give query with a table name",
            params=("data", "query"),
        )
    return _read_parquet(data.removeprefix("file://"))


def _parquet_files(pattern: str) -> list[str]:
    path = Path(pattern).expanduser()
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.name.lower().endswith(_PARQUET))
    return sorted(glob.glob(str(path)))


def _read_parquet(pattern: str) -> tuple[dd.DataFrame, dict[str, Any]]:
    files = _parquet_files(pattern)
    if not files:
        raise DataError(f"data {pattern}: no file or folder of Parquet files matches it")
    other = [f for f in files if not f.lower().endswith(_PARQUET)]
    if other:
        raise DataError(
            f"data file {other[0]}: training.engine dask reads Parquet (.parquet) files only"
        )
    try:
        frame = dd.read_parquet(files)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"data {pattern} cannot be read as Parquet: {first}") from exc
    if len(files) == 1 and Path(pattern).expanduser().is_file():
        # One file: the same record as a local run, so a local retrain can read it again.
        return frame, {"kind": "file", "path": str(Path(files[0]).resolve())}
    return frame, {"kind": "parquet", "path": str(Path(pattern).expanduser().absolute())}


def _read_table(
    url: str, table: str, index_column: str | None
) -> tuple[dd.DataFrame, dict[str, Any]]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from pgmlops.store.db import normalize_url

    if not _TABLE.fullmatch(table):
        raise ConfigError(
            f"query {table!r}: with training.engine dask, it names a table "
            "(table or schema.table) that is read in partitions, not a SQL statement",
            params=("query",),
        )
    if not index_column:
        raise ConfigError(
            "training.engine dask reads a database table in partitions of an indexed column: "
            "set training.dask_index_column"
        )
    try:
        full = normalize_url(url)
        safe = redact_url(make_url(full).render_as_string(hide_password=False))
    except ArgumentError as exc:
        raise ConfigError(
            f"data {url!r} is not a usable database URL: {exc}", params=("data",)
        ) from exc
    schema, _, name = table.rpartition(".")
    try:
        frame = dd.read_sql_table(name, full, index_col=index_column, schema=schema or None)
    except (SQLAlchemyError, KeyError, ValueError, TypeError) as exc:
        orig = getattr(exc, "orig", None) or exc
        first = redact_secrets((str(orig).strip().splitlines() or [type(exc).__name__])[0])
        raise DataError(f"SQL table {table!r} cannot be read in partitions: {first}") from exc
    # The index column stays a column, as `SELECT *` returns it to a local run.
    frame = frame.reset_index()
    return frame, {"kind": "sql", "url": safe, "query": f"SELECT * FROM {table}"}
