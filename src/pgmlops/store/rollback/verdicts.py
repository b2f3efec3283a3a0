"""Verdicts of the watch after a promotion: one per promotion move, never judged twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pgmlops.errors import ConflictError
from pgmlops.store.db import Database
from pgmlops.store.tables import RollbackVerdictRow


@dataclass(frozen=True)
class RollbackVerdict:
    """An automatic rollback (outcome rolled_back) or one refused because its target failed
    artifact verification (outcome refused), with the signal that set it off."""

    id: int
    model_name: str
    promotion_event_id: int
    version: int
    target_version: int | None
    outcome: str
    signal: str
    reason: str
    figures: dict[str, Any]
    actor: str
    rollback_event_id: int | None
    created_at: datetime


def _verdict(row: RollbackVerdictRow) -> RollbackVerdict:
    return RollbackVerdict(
        id=row.id,
        model_name=row.model_name,
        promotion_event_id=row.promotion_event_id,
        version=row.version,
        target_version=row.target_version,
        outcome=row.outcome,
        signal=row.signal,
        reason=row.reason,
        figures=dict(row.figures or {}),
        actor=row.actor,
        rollback_event_id=row.rollback_event_id,
        created_at=row.created_at,
    )


class RollbackVerdictStore:
    """One transaction per method."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, verdict: RollbackVerdict) -> RollbackVerdict:
        """Store a verdict; ConflictError when the move was judged already."""
        row = RollbackVerdictRow(
            model_name=verdict.model_name,
            promotion_event_id=verdict.promotion_event_id,
            version=verdict.version,
            target_version=verdict.target_version,
            outcome=verdict.outcome,
            signal=verdict.signal,
            reason=verdict.reason,
            figures=verdict.figures,
            actor=verdict.actor,
            rollback_event_id=verdict.rollback_event_id,
            created_at=verdict.created_at,
        )
        try:
            with self.db.session() as s:
                s.add(row)
                s.flush()
                return _verdict(row)
        except IntegrityError:
            raise ConflictError(
                f"promotion move {verdict.promotion_event_id} was judged already"
            ) from None

    def for_move(self, promotion_event_id: int) -> RollbackVerdict | None:
        """The verdict on one promotion move, if any."""
        with self.db.session() as s:
            row = s.scalars(
                select(RollbackVerdictRow).where(
                    RollbackVerdictRow.promotion_event_id == promotion_event_id
                )
            ).one_or_none()
            return _verdict(row) if row is not None else None

    def for_model(self, model_name: str) -> list[RollbackVerdict]:
        """A model's verdicts, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(RollbackVerdictRow)
                .where(RollbackVerdictRow.model_name == model_name)
                .order_by(RollbackVerdictRow.id)
            )
            return [_verdict(r) for r in rows]

    def totals(self) -> list[tuple[str, str, str, int]]:
        """(model, signal, outcome, count) over every verdict, for /metrics."""
        stmt = select(
            RollbackVerdictRow.model_name,
            RollbackVerdictRow.signal,
            RollbackVerdictRow.outcome,
            func.count(),
        ).group_by(
            RollbackVerdictRow.model_name, RollbackVerdictRow.signal, RollbackVerdictRow.outcome
        )
        with self.db.session() as s:
            return [(str(m), str(g), str(o), int(n)) for m, g, o, n in s.execute(stmt)]
