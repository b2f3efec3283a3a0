"""Watermarks: how far an incremental reader got, advanced only after a successful run."""

from __future__ import annotations

import json
from typing import Any

from pgmlops.store.db import Database
from pgmlops.store.tables import WatermarkRow, utcnow


class WatermarkStore:
    """A JSON value per name (e.g. the last id read from a live table and what was read)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            row = s.get(WatermarkRow, name)
            return json.loads(row.value) if row is not None else None

    def advance(self, name: str, value: dict[str, Any], expected: dict[str, Any] | None) -> bool:
        """Store `value` if the watermark still equals `expected`; False if someone moved it."""
        text = json.dumps(value, sort_keys=True, default=str)
        with self.db.session() as s:
            row = s.get(WatermarkRow, name, with_for_update=self.db.is_postgres)
            current = json.loads(row.value) if row is not None else None
            if current != expected:
                return False
            if row is None:
                s.add(WatermarkRow(name=name, value=text, updated_at=utcnow()))
            else:
                row.value, row.updated_at = text, utcnow()
            return True
