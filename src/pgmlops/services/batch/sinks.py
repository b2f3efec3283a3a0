"""Where batch results go: Parquet, CSV or a PostgreSQL table, appended chunk by chunk.

Nothing looks complete before the job is: files are written under a temporary name beside
the target and renamed on success; a table is filled inside one transaction.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa

from pgmlops.domain.redact import redact_secrets
from pgmlops.errors import ConfigError, DataError, StoreError

_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class Sink(Protocol):
    """An output opened for appending; commit makes it visible, abort leaves no trace."""

    description: str

    def write(self, table: pa.Table) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _FileSink(ABC):
    """A file written beside its final name and renamed over it at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer: Any = None
        self.schema: pa.Schema | None = None

    def _conform(self, table: pa.Table) -> pa.Table:
        """Every chunk in the first chunk's column types (a SQL chunk may type a column null)."""
        if self.schema is None:
            self.schema = table.schema
            return table
        try:
            return table.cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"output {self.path}: column types changed between chunks: {_first(exc)}"
            ) from exc

    @abstractmethod
    def _open(self, schema: pa.Schema) -> Any:
        """The format's writer on the temporary file, for chunks of ``schema``."""

    def write(self, table: pa.Table) -> None:
        table = self._conform(table)
        if self.writer is None:
            self.writer = self._open(table.schema)
        self.writer.write_table(table)

    def commit(self) -> None:
        if self.writer is None and self.schema is not None:
            self.writer = self._open(self.schema)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        self.tmp.unlink(missing_ok=True)


class ParquetSink(_FileSink):
    """Appends row groups to one Parquet file."""

    def _open(self, schema: pa.Schema) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(self.tmp, schema)


class CsvSink(_FileSink):
    """Appends rows to one CSV file (header once)."""

    def _open(self, schema: pa.Schema) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.CSVWriter(self.tmp, schema)


class RejectsFile:
    """Refused rows with their original fields and the reason, as CSV; renamed at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.rows = 0

    def write(self, rows: pd.DataFrame) -> None:
        # The columns of every chunk are the input's, so appending keeps one header.
        rows.to_csv(self.tmp, mode="a", header=self.rows == 0, index=False)
        self.rows += len(rows)

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


_PG_TYPES = {
    "string": "text",
    "large_string": "text",
    "double": "double precision",
    "float": "double precision",
    "int64": "bigint",
    "int32": "integer",
    "int16": "smallint",
    "bool": "boolean",
}


class TableSink:
    """A PostgreSQL table filled by COPY inside one transaction: all rows or none."""

    def __init__(self, url: str, table: str) -> None:
        import psycopg

        self.table = table
        self.description = f"table {table}"
        try:
            self.conn = psycopg.connect(url)
        except psycopg.Error as exc:
            raise StoreError(
                f"the output database is unreachable: {redact_secrets(_first(exc))}"
            ) from exc
        self.created = False
        self.columns: list[str] = []

    def _ident(self) -> Any:
        from psycopg import sql

        return sql.Identifier(*self.table.split(".", 1))

    def _create(self, schema: pa.Schema) -> None:
        from psycopg import sql

        columns = []
        for f in schema:
            kind = "uuid" if f.name == "prediction_id" else _PG_TYPES.get(str(f.type), "text")
            columns.append(sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(kind)))
        self.columns = list(schema.names)
        stmt = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            self._ident(), sql.SQL(", ").join(columns)
        )
        self._run(lambda cur: cur.execute(stmt))
        self.created = True

    def _run(self, action: Any) -> None:
        import psycopg

        try:
            with self.conn.cursor() as cur:
                action(cur)
        except psycopg.Error as exc:
            raise StoreError(f"writing {self.description} failed: {_first(exc)}") from exc

    def write(self, table: pa.Table) -> None:
        import pyarrow.csv as pacsv
        from psycopg import sql

        if not self.created:
            self._create(table.schema)
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            self._ident(), sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )

        def copy(cur: Any) -> None:
            with cur.copy(stmt) as out:
                out.write(buf.getvalue())

        self._run(copy)

    def commit(self) -> None:
        import psycopg

        try:
            self.conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"writing {self.description} failed: {_first(exc)}") from exc
        finally:
            self.conn.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()
        with contextlib.suppress(Exception):
            self.conn.close()


def _table_url(out: str) -> tuple[str, str]:
    """(connection URL without `table`, table name) from postgresql://…?table=T."""
    parts = urlsplit(out)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [v for k, v in query if k == "table"]
    if not tables or not tables[0]:
        raise ConfigError(
            "out database URL needs ?table=NAME naming the table to write", params=("out",)
        )
    rest = [(k, v) for k, v in query if k != "table"]
    scheme = "postgresql" if parts.scheme in _PG_SCHEMES else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), "")), tables[0]


def check_output(out: str) -> None:
    """Refuse a bad `out` before any row is read: its kind, its folder, its table name."""
    if "://" in out and not out.startswith("file://"):
        scheme = urlsplit(out).scheme
        if scheme not in _PG_SCHEMES:
            raise ConfigError(
                f"out URL must be postgresql://…?table=NAME, got scheme {scheme!r}", params=("out",)
            )
        _, table = _table_url(out)
        if len(table.split(".")) > 2 or not all(table.split(".")):
            raise ConfigError(
                f"out table {table!r} is not a table name (NAME or SCHEMA.NAME)", params=("out",)
            )
        return
    path = Path(out.removeprefix("file://")).expanduser()
    name = path.name.lower()
    if not (name.endswith((".parquet", ".pq")) or name.endswith(".csv")):
        raise ConfigError(
            f"out {path}: unsupported format (use .parquet, .csv or a table URL)", params=("out",)
        )
    if path.is_dir():
        raise ConfigError(f"out {path} is a directory", params=("out",))
    if not path.resolve().parent.is_dir():
        raise ConfigError(
            f"out {path}: folder {path.resolve().parent} does not exist", params=("out",)
        )


def open_output(out: str) -> Sink:
    """Open `out` for appending; call check_output first."""
    if "://" in out and not out.startswith("file://"):
        url, table = _table_url(out)
        return TableSink(url, table)
    path = Path(out.removeprefix("file://")).expanduser().resolve()
    try:
        if path.name.lower().endswith(".csv"):
            return CsvSink(path)
        return ParquetSink(path)
    except PermissionError as exc:
        raise ConfigError(f"out {path}: folder is not writable", params=("out",)) from exc


def open_rejects(path: Path) -> RejectsFile:
    """The rejects file, written aside and renamed when the job succeeds."""
    path = path.expanduser().resolve()
    if path.is_dir() or not path.parent.is_dir():
        raise ConfigError(f"rejects {path}: not a file in an existing folder", params=("rejects",))
    try:
        return RejectsFile(path)
    except PermissionError as exc:
        raise ConfigError(f"rejects {path}: folder is not writable", params=("rejects",)) from exc
