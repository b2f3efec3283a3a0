"""Requests per version, hour and outcome, added up by every serving process on every host.

The prediction log holds answered rows only: a request a version refused (its schema) or
failed on (an exception) leaves no row. Each serving process counts its requests in memory
and adds them here every few seconds with one upsert, so a version's error rate is known
across workers and hosts (automatic rollback reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pgmlops.store.db import Database
from pgmlops.store.tables import ServingCountRow

OUTCOMES = ("answered", "refused", "failed")
# (model, version, hour since 1970, outcome) -> requests
CountKey = tuple[str, int, int, str]


def hour_of(when: datetime) -> int:
    """Whole hours since 1970 (UTC) of a moment."""
    return int(when.timestamp() // 3600)


@dataclass(frozen=True)
class RequestCounts:
    """A version's requests in a span of hours, by outcome."""

    answered: int = 0
    refused: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.answered + self.refused + self.failed

    @property
    def errors(self) -> int:
        """Server errors only: a refused request (4xx) is the client's mistake, not the model's."""
        return self.failed


class ServingCountStore:
    """Adds counts (one transaction per call) and reads them back per version."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, counts: Mapping[CountKey, int]) -> None:
        """Add each key's requests to its row (created when missing)."""
        rows = [
            {"model_name": m, "version": v, "hour": h, "outcome": o, "requests": n}
            for (m, v, h, o), n in counts.items()
            if n
        ]
        if not rows:
            return
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        stmt = insert(ServingCountRow).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_name", "version", "hour", "outcome"],
            set_={"requests": ServingCountRow.requests + stmt.excluded.requests},
        )
        with self.db.session() as s:
            s.execute(stmt)

    def counts(
        self, model_name: str, version: int, *, since: datetime, until: datetime | None = None
    ) -> RequestCounts:
        """The version's requests in the hours from ``since``'s to ``until``'s (inclusive)."""
        stmt = (
            select(ServingCountRow.outcome, func.sum(ServingCountRow.requests))
            .where(
                ServingCountRow.model_name == model_name,
                ServingCountRow.version == version,
                ServingCountRow.hour >= hour_of(since),
            )
            .group_by(ServingCountRow.outcome)
        )
        if until is not None:
            stmt = stmt.where(ServingCountRow.hour <= hour_of(until))
        with self.db.session() as s:
            got = {str(o): int(n or 0) for o, n in s.execute(stmt)}
        return RequestCounts(**{o: got.get(o, 0) for o in OUTCOMES})
