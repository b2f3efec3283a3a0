"""A live SQL table of labelled rows, read incrementally past a watermark kept in our database.

The watermark holds the last id (or timestamp) read and a pointer to a Parquet snapshot of
every valid row consumed so far, so each retraining sees all live rows, old and new, while
reading only the new ones. It moves only after a successful run.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from pgmlops.domain.redact import redact_url
from pgmlops.domain.registry.records import StoredFile
from pgmlops.errors import ConfigError, DataError
from pgmlops.retraining_config import LiveSourceConfig
from pgmlops.services.context import Context
from pgmlops.store.watermarks import WatermarkStore


@dataclass(frozen=True)
class LiveRead:
    """Rows read past the watermark, and the watermark to store once they have been used."""

    previous: pd.DataFrame
    new: pd.DataFrame
    watermark_name: str
    expected: dict[str, Any] | None
    last_value: Any


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    from pgmlops.store.db import normalize_url

    try:
        return redact_url(make_url(normalize_url(url)).render_as_string(hide_password=False))
    except Exception:
        return "<unparseable URL>"


def watermark_name(model_name: str, cfg: LiveSourceConfig) -> str:
    """One watermark per model and source: pointing at a new table starts from its first row."""
    what = f"{_safe_url(cfg.url)}|{cfg.table or cfg.query}|{cfg.order_column}"
    return f"live:{model_name}:{hashlib.sha256(what.encode()).hexdigest()[:12]}"


def describe(cfg: LiveSourceConfig) -> str:
    return f"{_safe_url(cfg.url)} {cfg.table or 'query'} by {cfg.order_column}"


def _encode(value: Any) -> dict[str, Any]:
    if isinstance(value, datetime | pd.Timestamp):
        return {"type": "datetime", "value": pd.Timestamp(value).isoformat()}
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float) and value.is_integer():
        return {"type": "int", "value": int(value)}
    return {"type": "str", "value": str(value)}


def _decode(encoded: dict[str, Any]) -> Any:
    if encoded["type"] == "datetime":
        return pd.Timestamp(encoded["value"]).to_pydatetime()
    return encoded["value"]


class LiveSource:
    """Counts and reads the rows a live table gained since the watermark."""

    def __init__(self, ctx: Context, model_name: str, cfg: LiveSourceConfig) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.name = watermark_name(model_name, cfg)
        self.store = WatermarkStore(ctx.db)

    def _engine(self):  # type: ignore[no-untyped-def]
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from pgmlops.store.db import normalize_url

        try:
            return create_engine(normalize_url(self.cfg.url))
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(f"retraining.live_source.url is not usable: {exc}") from exc

    def _select(self, engine: Any, what: str, after: Any) -> tuple[str, dict[str, Any]]:
        quote = engine.dialect.identifier_preparer.quote
        column = ".".join(quote(p) for p in self.cfg.order_column.split("."))
        if self.cfg.table:
            origin = ".".join(quote(p) for p in self.cfg.table.split("."))
        else:
            origin = f"({self.cfg.query.rstrip().rstrip(';')}) AS pgmlops_live"  # type: ignore[union-attr]
        sql = f"SELECT {what} FROM {origin}"
        params: dict[str, Any] = {}
        if after is not None:
            sql += f" WHERE {column} > :after"
            params["after"] = after
        return sql, params

    def _run(self, what: str, after: Any, order: bool) -> pd.DataFrame:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._engine()
        sql, params = self._select(engine, what, after)
        if order:
            quote = engine.dialect.identifier_preparer.quote
            sql += " ORDER BY " + ".".join(quote(p) for p in self.cfg.order_column.split("."))
        try:
            with engine.connect() as conn:
                return pd.read_sql_query(text(sql), conn, params=params)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
            raise DataError(f"live source {describe(self.cfg)} failed: {first}") from exc
        finally:
            engine.dispose()

    def _after(self, mark: dict[str, Any] | None) -> Any:
        return _decode(mark["last"]) if mark and mark.get("last") else None

    def count_new(self) -> int:
        """Rows past the watermark (counted in the source database)."""
        mark = self.store.get(self.name)
        frame = self._run("count(*) AS n", self._after(mark), order=False)
        return int(frame.iloc[0, 0])

    def read(self) -> LiveRead:
        """Every row consumed so far (from the snapshot) and the rows past the watermark."""
        mark = self.store.get(self.name)
        new = self._run("*", self._after(mark), order=True)
        column = self.cfg.order_column.rsplit(".", 1)[-1]
        if not new.empty and column not in new.columns:
            raise DataError(f"live source {describe(self.cfg)} has no column {column!r}")
        previous = pd.DataFrame()
        if mark and mark.get("rows"):
            data = self.ctx.artifacts.get(StoredFile.from_dict(mark["rows"]), "live-row snapshot")
            previous = pd.read_parquet(io.BytesIO(data))
        last = new[column].iloc[-1] if not new.empty else None
        return LiveRead(previous, new, self.name, mark, last)

    def advance(self, read: LiveRead, consumed: pd.DataFrame) -> dict[str, Any] | None:
        """After a successful run: snapshot all consumed rows and move the watermark."""
        if read.last_value is None:
            return read.expected
        buf = io.BytesIO()
        consumed.reset_index(drop=True).to_parquet(buf, index=False)
        stored = self.ctx.artifacts.put(buf.getvalue())
        value = {
            "last": _encode(read.last_value),
            "rows": stored.to_dict(),
            "row_count": len(consumed),
            "source": describe(self.cfg),
        }
        if not self.store.advance(self.name, value, read.expected):
            raise DataError(f"watermark {self.name} moved during this run; its rows stay unread")
        return value
