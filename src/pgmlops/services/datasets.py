"""Read training data from CSV, Parquet or a SQL query, and fingerprint it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pgmlops.domain.redact import redact_secrets, redact_url
from pgmlops.errors import ConfigError, DataError

_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")


@dataclass(frozen=True)
class Dataset:
    """A loaded table and where it came from (recorded so retraining can read it again)."""

    frame: pd.DataFrame
    source: dict[str, Any]
    sha256: str

    @property
    def description(self) -> str:
        if self.source["kind"] == "sql":
            return f"sql: {self.source['query']}"
        return str(self.source.get("path"))


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the table's columns and cell values, independent of the file format."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _read_file(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return pd.read_parquet(path)
    if name.endswith(_CSV):
        sep = "\t" if name.endswith(".tsv") else ","
        return pd.read_csv(path, sep=sep, low_memory=False)
    raise DataError(f"data file {path}: unsupported format (use .csv, .tsv or .parquet)")


def load_file(path_text: str) -> Dataset:
    """Read a CSV/TSV/Parquet file with errors that name the file and the problem."""
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory, not a file")
    try:
        frame = _read_file(path)
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {path} is empty") from exc
    except PermissionError as exc:
        raise DataError(f"data file {path} is not readable: permission denied") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data file {path} cannot be parsed: {first}") from exc
    if frame.empty:
        raise DataError(f"data file {path} has no rows")
    source = {"kind": "file", "path": str(path.resolve())}
    return Dataset(frame, source, fingerprint(frame))


FRAME_SOURCE = "(in-memory DataFrame)"


def frame_dataset(frame: pd.DataFrame) -> Dataset:
    """A DataFrame handed over in Python, used as it is (no temporary file)."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, a path or a query, not {type(frame)}")
    if frame.empty:
        raise DataError("the DataFrame has no rows")
    # Training adds no columns, but a caller's frame is never modified in place.
    return Dataset(
        frame.copy(deep=False), {"kind": "frame", "path": FRAME_SOURCE}, fingerprint(frame)
    )


def load_query(url: str, query: str) -> Dataset:
    """Run a SQL query against a database URL and return its rows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    from pgmlops.store.db import normalize_url

    try:
        engine = create_engine(normalize_url(url))
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"--data {url!r} is not a usable database URL: {exc}") from exc
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(text(query), conn)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = redact_secrets(str(orig).strip().splitlines()[0])
        raise DataError(f"SQL data source failed: {first}") from exc
    finally:
        engine.dispose()
    if frame.empty:
        raise DataError("SQL data source returned no rows")
    # The registry never stores a credential, in the userinfo or in a `?password=`.
    safe_url = redact_url(engine.url.render_as_string(hide_password=False))
    return Dataset(frame, {"kind": "sql", "url": safe_url, "query": query}, fingerprint(frame))


def load_dataset(data: str, query: str | None = None) -> Dataset:
    """A file path, or (with `query`) a database URL to run the query against."""
    if query:
        return load_query(data, query)
    if "://" in data and not data.startswith("file://"):
        raise ConfigError(f"--data {data!r} looks like a URL: pass --query to read from a database")
    return load_file(data.removeprefix("file://"))


SOURCE_URL_ENV = "PGMLOPS_SOURCE_DATABASE_URL"


def load_source(source: dict[str, Any]) -> Dataset:
    """Read a recorded training source again (used by retraining)."""
    if source.get("kind") == "frame":
        raise DataError("it was a DataFrame passed from Python, which is not kept")
    if source.get("kind") == "parquet":
        # Several files are read in partitions by training.engine dask, which retraining
        # does not run yet: `pgmlops train --engine dask` on the same files does.
        raise DataError(f"it is a set of Parquet files ({source['path']}) read by engine dask")
    if source.get("kind") == "sql":
        url = source["url"]
        if "***" in url:
            # The registry never stores a password; the operator supplies the full URL.
            url = os.environ.get(SOURCE_URL_ENV, "")
            if not url:
                raise ConfigError(
                    f"the training source {source['url']} needs its password: set "
                    f"{SOURCE_URL_ENV} to the full database URL"
                )
        return load_query(url, source["query"])
    return load_file(source["path"])
