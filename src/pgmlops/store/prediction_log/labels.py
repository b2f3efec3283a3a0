"""Labelled feedback read back for retraining: logged features joined with current labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select

from pgmlops.store.db import Database
from pgmlops.store.statistics import refresh_statistics
from pgmlops.store.tables import FeedbackRow, PredictionRow


@dataclass(frozen=True)
class LabelledRow:
    """One logged prediction's raw features and its current (not superseded) label."""

    prediction_id: str
    version: int
    features: dict[str, Any]
    label: str
    labelled_at: datetime


class LabelStore:
    """Reads only; the API's feedback route writes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def labelled_rows(self, model_name: str) -> list[LabelledRow]:
        """Every current label of the model's predictions, in prediction order."""
        # Joins planned on missing statistics may pick a nested loop over a full scan.
        refresh_statistics(self.db)
        stmt = (
            select(
                PredictionRow.id,
                PredictionRow.version,
                PredictionRow.features,
                FeedbackRow.label,
                FeedbackRow.created_at,
            )
            .join(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
            .where(PredictionRow.model_name == model_name, FeedbackRow.superseded_at.is_(None))
            .order_by(PredictionRow.created_at, PredictionRow.id, FeedbackRow.id)
        )
        # Two racing writers could leave two current labels: the newest one counts.
        out: dict[str, LabelledRow] = {}
        with self.db.session() as s:
            for r in s.execute(stmt):
                key = str(r.id)
                out[key] = LabelledRow(
                    key, r.version, dict(r.features or {}), r.label, r.created_at
                )
        return list(out.values())

    def count_since(self, model_name: str, since: datetime | None) -> int:
        """Current labels of the model's predictions that arrived after `since`."""
        refresh_statistics(self.db)
        stmt = (
            select(func.count(distinct(FeedbackRow.prediction_id)))
            .select_from(FeedbackRow)
            .join(PredictionRow, PredictionRow.id == FeedbackRow.prediction_id)
            .where(PredictionRow.model_name == model_name, FeedbackRow.superseded_at.is_(None))
        )
        if since is not None:
            stmt = stmt.where(FeedbackRow.created_at > since)
        with self.db.session() as s:
            return int(s.scalar(stmt) or 0)
