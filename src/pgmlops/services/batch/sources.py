"""Where batch rows come from: CSV, Parquet or a SQL query, read one chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pgmlops.domain.redact import redact_secrets
from pgmlops.errors import ConfigError, DataError
from pgmlops.services.datasets import (
    csv_only,
    csv_options,
    decimal_option,
    looks_like_url,
    sniff_csv_format,
)

_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
# Tokens a CSV may use for an empty number (pandas' defaults); a text column treats only an
# empty cell as missing, so a category such as "NA" stays a category, as it would in JSON.
_NUMBER_NA = ["", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A"]


@dataclass
class Source:
    """An opened input: its column names, row count if known, and a chunk iterator."""

    description: str
    columns: list[str]
    total_rows: int | None
    _chunks: Any

    def chunks(self) -> Iterator[pd.DataFrame]:
        """DataFrames of at most the chunk size, in file order."""
        try:
            yield from self._chunks()
        except (DataError, ConfigError):
            raise
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
            raise DataError(f"{self.description} cannot be read: {_first(exc)}") from exc


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_source(
    data: str,
    query: str | None,
    chunk_rows: int,
    *,
    numeric: list[str],
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
) -> Source:
    """Open `data` (with `query` for a database) without reading more than its header.

    A CSV's delimiter, encoding and decimal mark are sniffed from its first bytes unless given.
    """
    sep, encoding = csv_options(sep, encoding)
    decimal = decimal_option(decimal)
    if query is not None:
        if "://" not in data or data.startswith("file://"):
            raise ConfigError(
                f"query needs data to be a database URL, got {data!r}", params=("query", "data")
            )
        if sep is not None or encoding is not None or decimal is not None:
            raise csv_only()
        return _query_source(data, query, chunk_rows)
    if "://" in data and not data.startswith("file://"):
        raise looks_like_url(data)
    path = Path(data.removeprefix("file://")).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory, not a file")
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return _parquet_source(path, chunk_rows)
    if name.endswith(_CSV):
        return _csv_source(
            path, chunk_rows, numeric=numeric, sep=sep, encoding=encoding, decimal=decimal
        )
    raise DataError(f"data file {path}: unsupported format (use .csv, .tsv or .parquet)")


def _csv_source(
    path: Path,
    chunk_rows: int,
    *,
    numeric: list[str],
    sep: str | None,
    encoding: str | None,
    decimal: str | None,
) -> Source:
    try:
        sep, encoding, decimal = sniff_csv_format(path, sep, encoding, decimal)
        header = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {path} is empty") from exc
    except PermissionError as exc:
        raise DataError(f"data file {path} is not readable: permission denied") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"data file {path} cannot be parsed: {_first(exc)}") from exc
    columns = [str(c) for c in header.columns]
    wanted_numeric = set(numeric)
    na_values = {c: _NUMBER_NA if c in wanted_numeric else [""] for c in columns}
    # Text features and every non-feature column (ids) stay text: no leading zero is lost and
    # a column's type cannot change from one chunk to the next.
    dtype = {c: str for c in columns if c not in wanted_numeric}

    def chunks() -> Iterator[pd.DataFrame]:
        with pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            chunksize=chunk_rows,
            dtype=dtype,
            keep_default_na=False,
            na_values=na_values,
        ) as reader:
            yield from reader

    return Source(f"data file {path}", columns, None, chunks)


def _parquet_source(path: Path, chunk_rows: int) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} cannot be parsed: {_first(exc)}") from exc

    def chunks() -> Iterator[pd.DataFrame]:
        try:
            for batch in handle.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        except pa.ArrowException as exc:
            raise DataError(f"data file {path} cannot be read: {_first(exc)}") from exc
        finally:
            handle.close()

    return Source(
        f"data file {path}", list(handle.schema_arrow.names), handle.metadata.num_rows, chunks
    )


def _query_source(url: str, query: str, chunk_rows: int) -> Source:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    from pgmlops.store.db import normalize_url

    # Wrapped as a subquery to learn the columns without running it: no trailing semicolon.
    query = query.strip().rstrip(";").strip()
    if not query:
        raise ConfigError("query is empty", params=("query",))
    try:
        engine = create_engine(normalize_url(url))
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(
            f"data is not a usable database URL: {_first(exc)}", params=("data",)
        ) from exc

    def failed(exc: SQLAlchemyError) -> DataError:
        orig = getattr(exc, "orig", None) or exc
        return DataError(f"SQL data source failed: {redact_secrets(_first(orig))}")

    try:
        with engine.connect() as conn:
            columns = list(conn.execute(text(f"SELECT * FROM ({query}) AS q LIMIT 0")).keys())
    except SQLAlchemyError as exc:
        engine.dispose()
        raise failed(exc) from exc

    def chunks() -> Iterator[pd.DataFrame]:
        try:
            # A server-side cursor: the database hands over chunk_rows rows at a time.
            with engine.connect() as conn:
                streaming = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
                yield from pd.read_sql_query(text(query), streaming, chunksize=chunk_rows)
        except SQLAlchemyError as exc:
            raise failed(exc) from exc
        finally:
            engine.dispose()

    return Source("SQL data source", columns, None, chunks)
