"""Monitoring repository: the stored monitoring runs.

The windows of logged predictions they are computed on are read by
`store/monitoring/prediction_windows.py` (`read_window`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pgmlops.store.db import Database
from pgmlops.store.monitoring.prediction_windows import PredictionWindow
from pgmlops.store.tables import MonitoringRunRow, utcnow

# PredictionWindow keeps its old import path here.
__all__ = ["MonitoringRun", "MonitoringStore", "PredictionWindow"]


@dataclass(frozen=True)
class MonitoringRun:
    """One stored monitoring run: its window and the full report as JSON."""

    id: int
    model_name: str
    version: int
    created_at: datetime
    window: dict[str, Any]
    report: dict[str, Any]
    dataset_drift: bool


def _run(row: MonitoringRunRow) -> MonitoringRun:
    return MonitoringRun(
        id=row.id,
        model_name=row.model_name,
        version=row.version,
        created_at=row.created_at,
        window=dict(row.window),
        report=dict(row.report),
        dataset_drift=row.dataset_drift,
    )


class MonitoringStore:
    """Writes and reads monitoring runs; returns plain records."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- monitoring runs -----------------------------------------------------------------

    def add_run(
        self,
        model_name: str,
        version: int,
        window: dict[str, Any],
        report: dict[str, Any],
        dataset_drift: bool,
    ) -> MonitoringRun:
        """Store one run; ``window`` and ``report`` must be JSON-ready (no NaN)."""
        with self.db.session() as s:
            row = MonitoringRunRow(
                model_name=model_name,
                version=version,
                created_at=utcnow(),
                window=window,
                report=report,
                dataset_drift=dataset_drift,
            )
            s.add(row)
            s.flush()
            return _run(row)

    def latest_run(self, model_name: str) -> MonitoringRun | None:
        """The newest run of a model, or None."""
        runs = self.list_runs(model_name, 1)
        return runs[0] if runs else None

    def list_runs(self, model_name: str, limit: int = 50) -> list[MonitoringRun]:
        """A model's runs, newest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(MonitoringRunRow)
                .where(MonitoringRunRow.model_name == model_name)
                .order_by(MonitoringRunRow.created_at.desc(), MonitoringRunRow.id.desc())
                .limit(max(int(limit), 0))
            )
            return [_run(r) for r in rows]
