"""Read training data from CSV, Parquet or a SQL query, and fingerprint it."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pgmlops.domain.redact import redact_secrets, redact_url
from pgmlops.errors import ConfigError, DataError, Note

_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")


@dataclass(frozen=True)
class Dataset:
    """A loaded table and where it came from (recorded so retraining can read it again)."""

    frame: pd.DataFrame
    source: dict[str, Any]
    sha256: str
    # What reading noticed (a sniffed delimiter, a fallback encoding), shown as warnings.
    notes: list[str] = field(default_factory=list)

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


# Tried in order: UTF-8 (a BOM is dropped), then Windows' Western European code page, then
# Latin-1, which decodes any byte, so a file always reads.
_ENCODINGS = ("utf-8", "cp1252", "latin-1")
_DELIMITERS = ",;\t|"
_SAMPLE_BYTES = 64 * 1024


def decimal_option(decimal: str | None) -> str | None:
    """The `decimal` mark checked: "." or ","."""
    if decimal is not None and decimal not in (".", ","):
        raise ConfigError(f"decimal {decimal!r} must be '.' or ','", params=("decimal",))
    return decimal


# A number written with a decimal comma ("1,5", "-0,25", "12"), as opposed to one with a point.
_COMMA_NUMBER = re.compile(r"^[+-]?\d*,\d+$")
_POINT_NUMBER = re.compile(r"^[+-]?\d*\.\d+$")
_INTEGER = re.compile(r"^[+-]?\d+$")
# A column is decimal-comma numbers when this share of its non-blank sampled cells are.
_DECIMAL_SHARE = 0.9


def sniff_decimal(text: str, sep: str) -> str:
    """ "," when a column of the sample holds numbers with decimal commas and none with points."""
    if sep == "," or not text:
        return "."
    # The sample may end inside a row: drop its last, possibly partial, line.
    lines = text.splitlines()
    body = "\n".join(lines[:-1] if len(lines) > 2 else lines)
    try:
        sample = pd.read_csv(io.StringIO(body), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return "."
    comma = point = False
    for name in sample.columns:
        cells = sample[name].str.strip()
        cells = cells[cells != ""]
        if cells.empty:
            continue
        is_comma = cells.str.match(_COMMA_NUMBER.pattern)
        numbers = is_comma | cells.str.match(_INTEGER.pattern)
        if is_comma.any() and numbers.mean() >= _DECIMAL_SHARE:
            comma = True
        if cells.str.match(_POINT_NUMBER.pattern).mean() >= _DECIMAL_SHARE:
            point = True
    return "," if comma and not point else "."


def csv_options(sep: str | None, encoding: str | None) -> tuple[str | None, str | None]:
    """`sep`/`encoding` checked: one character ("\\t" or "tab" for a tab), a known codec."""
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(sep, sep)
        if len(sep) != 1:
            raise ConfigError(
                f"sep {sep!r} must be a single character, e.g. ';' or '\\t'", params=("sep",)
            )
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ConfigError(
                f"encoding {encoding!r} is not a known encoding (e.g. utf-8, cp1252, latin-1)",
                params=("encoding",),
            ) from None
    return sep, encoding


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV sample among , ; tab and |; a comma when it cannot tell."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if not lines:
        return ","
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","
    # The Sniffer may choose a character that merely repeats inside values; a header split
    # into more fields by a comma keeps the comma.
    if found != "," and lines[0].count(",") > lines[0].count(found):
        return ","
    return found


def _decoded_sample(path: Path, encoding: str | None) -> tuple[str, str]:
    """The file's first bytes as text, and the first encoding that reads them."""
    with path.open("rb") as handle:
        raw = handle.read(_SAMPLE_BYTES)
    if encoding:
        return raw.decode(encoding, errors="replace"), encoding
    if raw.startswith(codecs.BOM_UTF8):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    for name in _ENCODINGS:
        try:
            # Not final when the sample is cut: a split multi-byte character is no error.
            text = codecs.getincrementaldecoder(name)().decode(raw, final=len(raw) < _SAMPLE_BYTES)
        except UnicodeDecodeError:
            continue
        return text, name
    return raw.decode("latin-1"), "latin-1"


def sniff_csv_format(
    path: Path, sep: str | None, encoding: str | None, decimal: str | None
) -> tuple[str, str, str]:
    """A CSV's delimiter, encoding and decimal mark, from its first bytes (given ones win)."""
    if path.name.lower().endswith(".gz"):
        sample, found = "", encoding or "utf-8"
    else:
        sample, found = _decoded_sample(path, encoding)
    if sep is None:
        sep = "\t" if path.name.lower().endswith(".tsv") else sniff_delimiter(sample)
    if decimal is None:
        decimal = sniff_decimal(sample, sep)
    return sep, found, decimal


def _read_csv(
    path: Path, sep: str | None, encoding: str | None, decimal: str | None, notes: list[str]
) -> tuple[pd.DataFrame, str, str, str]:
    """Read a CSV with its sniffed (or given) delimiter, encoding and decimal mark."""
    given, given_decimal = sep, decimal
    sep, first, decimal = sniff_csv_format(path, sep, encoding, decimal)
    if given is None and sep not in (",", "\t"):
        said = f"{path.name}: columns separated by {sep!r} (sniffed; sep= overrides)"
        notes.append(Note(said, params=("sep",)))
    if given_decimal is None and decimal == ",":
        said = f"{path.name}: numbers read with decimal commas (sniffed; decimal= overrides)"
        notes.append(Note(said, params=("decimal",)))
    # The sample decoded; a later byte may not: fall back along the list, Latin-1 last.
    later = list(_ENCODINGS[_ENCODINGS.index(first) + 1 :]) if first in _ENCODINGS else []
    tries = [first] if encoding else [first, *later]
    for k, name in enumerate(tries):
        try:
            frame = pd.read_csv(path, sep=sep, encoding=name, decimal=decimal, low_memory=False)
        except UnicodeDecodeError:
            if k == len(tries) - 1:
                raise
            continue
        if not encoding and name not in ("utf-8", "utf-8-sig"):
            said = f"{path.name}: read as {name} text, not UTF-8 (encoding= overrides)"
            notes.append(Note(said, params=("encoding",)))
        return frame, sep, name, decimal
    raise DataError(f"data file {path} cannot be decoded")  # unreachable: Latin-1 reads all


def _read_file(
    path: Path, sep: str | None, encoding: str | None, decimal: str | None, notes: list[str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return pd.read_parquet(path), {}
    if name.endswith(_CSV):
        frame, used_sep, used_encoding, used_decimal = _read_csv(
            path, sep, encoding, decimal, notes
        )
        read_as = {"sep": used_sep, "encoding": used_encoding}
        if used_decimal != ".":
            # Recorded only when not the default, so older sources read as they always did.
            read_as["decimal"] = used_decimal
        return frame, read_as
    raise DataError(f"data file {path}: unsupported format (use .csv, .tsv or .parquet)")


def load_file(
    path_text: str,
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
) -> Dataset:
    """Read a CSV/TSV/Parquet file with errors that name the file and the problem.

    A CSV's delimiter, encoding and decimal mark are sniffed unless given; all are recorded in
    the source, so retraining reads the file the same way.
    """
    sep, encoding = csv_options(sep, encoding)
    decimal = decimal_option(decimal)
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory, not a file")
    notes: list[str] = []
    try:
        frame, read_as = _read_file(path, sep, encoding, decimal, notes)
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
    source = {"kind": "file", "path": str(path.resolve()), **read_as}
    return Dataset(frame, source, fingerprint(frame), notes)


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
        raise ConfigError(
            f"data {url!r} is not a usable database URL: {exc}", params=("data",)
        ) from exc
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(text(query), conn)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # pandas wraps the driver's error ("Execution failed on sql ..."); the driver's own
        # first line names the problem (syntax error, missing table, permission).
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
        orig = getattr(cause, "orig", None) or cause or exc
        first = redact_secrets(str(orig).strip().splitlines()[0])
        raise DataError(f"SQL data source failed: {first}") from exc
    finally:
        engine.dispose()
    if frame.empty:
        raise DataError("SQL data source returned no rows")
    # The registry never stores a credential, in the userinfo or in a `?password=`.
    safe_url = redact_url(engine.url.render_as_string(hide_password=False))
    return Dataset(frame, {"kind": "sql", "url": safe_url, "query": query}, fingerprint(frame))


def csv_only() -> ConfigError:
    """The refusal of CSV options given with a query."""
    return ConfigError(
        "sep, encoding and decimal apply to CSV files, not to query",
        params=("sep", "encoding", "decimal", "query"),
    )


def looks_like_url(data: str) -> ConfigError:
    """The refusal of a database URL given without a query."""
    return ConfigError(
        f"data {data!r} looks like a URL: give query to read from a database",
        params=("data", "query"),
    )


def load_dataset(
    data: str,
    query: str | None = None,
    *,
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
) -> Dataset:
    """A file path, or (with `query`) a database URL to run the query against."""
    if query:
        if sep is not None or encoding is not None or decimal is not None:
            raise csv_only()
        return load_query(data, query)
    if "://" in data and not data.startswith("file://"):
        raise looks_like_url(data)
    return load_file(data.removeprefix("file://"), sep, encoding, decimal)


SOURCE_URL_ENV = "PGMLOPS_SOURCE_DATABASE_URL"


def load_source(source: dict[str, Any]) -> Dataset:
    """Read a recorded training source again (used by retraining)."""
    if source.get("kind") == "frame":
        raise DataError("it was a DataFrame passed from Python, which is not kept")
    if source.get("kind") == "parquet":
        # Several files are read in partitions, by training.engine dask only.
        raise DataError(
            f"it is a set of Parquet files ({source['path']}): set training.engine dask "
            "to retrain from them"
        )
    if source.get("kind") == "sql":
        return load_query(source_url(source), source["query"])
    # A source recorded before decimal marks were sniffed was read with points.
    decimal = source.get("decimal", "." if source.get("sep") else None)
    return load_file(source["path"], source.get("sep"), source.get("encoding"), decimal)


def source_url(source: dict[str, Any]) -> str:
    """A recorded SQL source's URL, its password from PGMLOPS_SOURCE_DATABASE_URL if needed."""
    url = str(source["url"])
    if "***" in url:
        # The registry never stores a password; the operator supplies the full URL.
        url = os.environ.get(SOURCE_URL_ENV, "")
        if not url:
            raise ConfigError(
                f"the training source {source['url']} needs its password: set "
                f"{SOURCE_URL_ENV} to the full database URL"
            )
    return url
