"""Retraining runs: one row per run, written at start and completed at the end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pgmlops.errors import NotFoundError
from pgmlops.store.db import Database
from pgmlops.store.tables import RetrainingRunRow, utcnow

RUNNING, SUCCEEDED, FAILED, SKIPPED = "running", "succeeded", "failed", "skipped"


@dataclass(frozen=True)
class RetrainingRun:
    """What a run was asked to do, what it trained on and what the gates decided."""

    id: int
    model_name: str
    status: str
    triggers: dict[str, Any]
    data: dict[str, Any] | None
    candidate_version: int | None
    decision: dict[str, Any] | None
    error: str | None
    pid: int | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "status": self.status,
            "triggers": self.triggers,
            "data": self.data,
            "candidate_version": self.candidate_version,
            "decision": self.decision,
            "error": self.error,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
        }


def _run(row: RetrainingRunRow) -> RetrainingRun:
    return RetrainingRun(
        id=row.id,
        model_name=row.model_name,
        status=row.status,
        triggers=dict(row.triggers or {}),
        data=row.data,
        candidate_version=row.candidate_version,
        decision=row.decision,
        error=row.error,
        pid=row.pid,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


class RetrainingRunStore:
    """Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, model_name: str, triggers: dict[str, Any], pid: int) -> RetrainingRun:
        with self.db.session() as s:
            row = RetrainingRunRow(
                model_name=model_name,
                status=RUNNING,
                triggers=triggers,
                pid=pid,
                started_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _run(row)

    def record_skip(self, model_name: str, triggers: dict[str, Any], reason: str) -> RetrainingRun:
        """A request that ran no training (e.g. nothing new to learn from), kept for the record."""
        now = utcnow()
        with self.db.session() as s:
            row = RetrainingRunRow(
                model_name=model_name,
                status=SKIPPED,
                triggers=triggers,
                error=reason,
                started_at=now,
                finished_at=now,
            )
            s.add(row)
            s.flush()
            return _run(row)

    def update(self, run_id: int, **fields: Any) -> RetrainingRun:
        """Set fields of a run (data, candidate_version, decision, error)."""
        with self.db.session() as s:
            row = self._get(s, run_id)
            for key, value in fields.items():
                setattr(row, key, value)
            s.flush()
            return _run(row)

    def finish(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        **fields: Any,
    ) -> RetrainingRun:
        with self.db.session() as s:
            row = self._get(s, run_id)
            for key, value in fields.items():
                setattr(row, key, value)
            row.status = status
            row.error = error
            row.finished_at = utcnow()
            s.flush()
            return _run(row)

    @staticmethod
    def _get(s: Any, run_id: int) -> RetrainingRunRow:
        row = s.get(RetrainingRunRow, run_id)
        if row is None:
            raise NotFoundError(f"retraining run {run_id} does not exist")
        return row

    def get(self, run_id: int) -> RetrainingRun:
        with self.db.session() as s:
            return _run(self._get(s, run_id))

    def recent(self, model_name: str | None = None, limit: int = 20) -> list[RetrainingRun]:
        """Newest first."""
        stmt = select(RetrainingRunRow).order_by(RetrainingRunRow.id.desc()).limit(limit)
        if model_name:
            stmt = stmt.where(RetrainingRunRow.model_name == model_name)
        with self.db.session() as s:
            return [_run(r) for r in s.scalars(stmt)]

    def running(self, model_name: str | None = None) -> list[RetrainingRun]:
        stmt = select(RetrainingRunRow).where(RetrainingRunRow.status == RUNNING)
        if model_name:
            stmt = stmt.where(RetrainingRunRow.model_name == model_name)
        with self.db.session() as s:
            return [_run(r) for r in s.scalars(stmt.order_by(RetrainingRunRow.id))]

    def last_started(self, model_name: str) -> datetime | None:
        """When the model's last recorded run started (a run that found nothing new counts)."""
        with self.db.session() as s:
            return s.scalars(
                select(RetrainingRunRow.started_at)
                .where(RetrainingRunRow.model_name == model_name)
                .order_by(RetrainingRunRow.id.desc())
                .limit(1)
            ).first()

    def fail_stale(self, model_name: str, reason: str, keep: int | None = None) -> list[int]:
        """Mark every 'running' run of a model failed (except `keep`); call only with its lock."""
        with self.db.session() as s:
            stmt = select(RetrainingRunRow).where(
                RetrainingRunRow.model_name == model_name, RetrainingRunRow.status == RUNNING
            )
            ids = []
            for row in s.scalars(stmt):
                if row.id == keep:
                    continue
                row.status = FAILED
                row.error = reason.format(pid=row.pid, host=row.triggers.get("host", "?"))
                row.finished_at = utcnow()
                ids.append(row.id)
            return ids
