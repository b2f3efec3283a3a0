"""Job queue: the API enqueues, workers claim each job exactly once.

PostgreSQL claims with ``SELECT ... FOR UPDATE SKIP LOCKED`` so workers never wait on each
other; SQLite serialises writers (``BEGIN IMMEDIATE``) and claims with a conditional UPDATE.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pgmlops.errors import NotFoundError
from pgmlops.store.db import Database
from pgmlops.store.tables import JobRow, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


@dataclass(frozen=True)
class Job:
    """One queued or finished unit of work."""

    id: int
    kind: str
    model_name: str
    payload: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "model_name": self.model_name,
            "payload": self.payload,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        payload=dict(row.payload or {}),
        status=row.status,
        result=row.result,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def worker_identity() -> str:
    """host:pid of this process, recorded on the jobs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore:
    """Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(
        self, kind: str, model_name: str, payload: dict[str, Any] | None = None
    ) -> tuple[Job, bool]:
        """Queue a job; an identical job still waiting is returned instead. (job, created)."""
        payload = dict(payload or {})
        with self.db.session() as s:
            waiting = s.scalars(
                select(JobRow)
                .where(
                    JobRow.kind == kind, JobRow.model_name == model_name, JobRow.status == QUEUED
                )
                .order_by(JobRow.id)
            )
            for row in waiting:
                if dict(row.payload or {}) == payload:
                    return _job(row), False
            row = JobRow(
                kind=kind,
                model_name=model_name,
                payload=payload,
                status=QUEUED,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _job(row), True

    def claim(self, kinds: Sequence[str] | None = None, worker: str | None = None) -> Job | None:
        """Take the oldest queued job (of `kinds`) for this worker, or None; never twice."""
        worker = worker or worker_identity()
        with self.db.session() as s:
            if self.db.is_postgres:
                row = s.scalars(
                    self._next(kinds).with_for_update(skip_locked=True).limit(1)
                ).first()
                if row is None:
                    return None
                self._start(row, worker)
                s.flush()
                return _job(row)
            return self._claim_sqlite(s, kinds, worker)

    def _next(self, kinds: Sequence[str] | None):  # type: ignore[no-untyped-def]
        stmt = select(JobRow).where(JobRow.status == QUEUED).order_by(JobRow.id)
        if kinds:
            stmt = stmt.where(JobRow.kind.in_(list(kinds)))
        return stmt

    def _claim_sqlite(self, s: Session, kinds: Sequence[str] | None, worker: str) -> Job | None:
        # BEGIN IMMEDIATE already holds SQLite's write lock; the conditional UPDATE keeps the
        # claim correct even if that ever changes.
        for job_id in s.scalars(self._next(kinds).with_only_columns(JobRow.id).limit(5)):
            done = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == QUEUED)
                .values(status=RUNNING, started_at=utcnow(), result={"worker": worker})
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return _job(s.get_one(JobRow, job_id, populate_existing=True))
        return None

    @staticmethod
    def _start(row: JobRow, worker: str) -> None:
        row.status = RUNNING
        row.started_at = utcnow()
        row.result = {"worker": worker}

    def finish(self, job_id: int, result: dict[str, Any] | None = None) -> Job:
        return self._end(job_id, SUCCEEDED, result, None)

    def fail(self, job_id: int, error: str, result: dict[str, Any] | None = None) -> Job:
        return self._end(job_id, FAILED, result, error)

    def _end(
        self, job_id: int, status: str, result: dict[str, Any] | None, error: str | None
    ) -> Job:
        with self.db.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} does not exist")
            worker = (row.result or {}).get("worker")
            row.status = status
            row.result = {**({"worker": worker} if worker else {}), **(result or {})}
            row.error = error
            row.finished_at = utcnow()
            s.flush()
            return _job(row)

    def get(self, job_id: int) -> Job:
        with self.db.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} does not exist")
            return _job(row)

    def recent(
        self,
        *,
        model_name: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first."""
        stmt = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if model_name:
            stmt = stmt.where(JobRow.model_name == model_name)
        if statuses:
            stmt = stmt.where(JobRow.status.in_(list(statuses)))
        with self.db.session() as s:
            return [_job(r) for r in s.scalars(stmt)]

    def fail_abandoned(self, is_gone: Callable[[str], bool]) -> list[int]:
        """Mark running jobs whose worker is gone (``is_gone(host:pid)``) failed; their ids."""
        with self.db.session() as s:
            running = [
                (row.id, str((row.result or {}).get("worker") or ""))
                for row in s.scalars(select(JobRow).where(JobRow.status == RUNNING))
            ]
        # Outside any transaction: `is_gone` may take a lock of its own (SQLite has one writer).
        gone = {w for w in {w for _, w in running} if w and is_gone(w)}
        failed: list[int] = []
        if not gone:
            return failed
        with self.db.session() as s:
            for job_id, worker in running:
                row = s.get(JobRow, job_id)
                # Still running, still that worker's: a job finished meanwhile is left alone.
                if worker not in gone or row is None or row.status != RUNNING:
                    continue
                if (row.result or {}).get("worker") != worker:
                    continue
                row.status = FAILED
                row.error = f"worker {worker} stopped before finishing this job"
                row.finished_at = utcnow()
                failed.append(row.id)
        return failed
