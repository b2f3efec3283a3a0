"""Live figures per version and role, read from the prediction log and its feedback.

What the live comparison (services/live/comparison.py) and any decision on live evidence
(live promotion, automatic rollback) read. A row's role is "production" (the log's NULL),
"shadow" or "canary". Counts and latency percentiles are aggregated in SQL (PostgreSQL:
``percentile_cont``; SQLite has none, so the latencies of the window are read and cut here).
Outputs with their current label come back column-wise, newest first and bounded by
``limit``, for the statistics that need rows (agreement, bootstraps, score distributions).

What the log can and cannot say about errors: a shadow challenger that fails, is dropped
from its queue or finds the log busy leaves a production row with no shadow partner, so
``shadow_coverage`` counts those misses exactly. A canary row whose challenger failed is
answered, and logged, by production, and a request refused before scoring is not logged at
all: neither is in this table (they are counted in /metrics, per process).

Signatures here are relied on by other services (live promotion, rollback): keep them stable.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, false, func, literal, or_, select, true
from sqlalchemy.orm import aliased

from pgmlops.store.db import Database
from pgmlops.store.live.figure_records import (
    LoggedOutputs,
    RoleTraffic,
    ShadowCoverage,
    ShadowPairs,
)
from pgmlops.store.tables import FeedbackRow, PredictionRow

# The records are re-exported: other services import them from here.
__all__ = [
    "DEFAULT_LIMIT",
    "PRODUCTION_ROLE",
    "ROLES",
    "LiveFigureStore",
    "LoggedOutputs",
    "RoleTraffic",
    "ShadowCoverage",
    "ShadowPairs",
]

PRODUCTION_ROLE = "production"
ROLES = ("production", "shadow", "canary")
# Rows read for row-level statistics (newest first): enough for a bootstrap of a metric
# difference to a few thousandths, small enough to hold in memory in any serving host.
DEFAULT_LIMIT = 100_000


def _role() -> Any:
    return func.coalesce(PredictionRow.role, literal(PRODUCTION_ROLE))


def _window(stmt: Any, row: Any, since: datetime | None, until: datetime | None) -> Any:
    if since is not None:
        stmt = stmt.where(row.created_at >= since)
    if until is not None:
        stmt = stmt.where(row.created_at < until)
    return stmt


def _current_labels() -> Any:
    """Feedback rows to outer-join on (prediction_id, current): the index ix_feedback_prediction
    answers each row's lookup, instead of grouping the whole feedback table first. Two racing
    writers can leave two current labels; rows are ordered newest label first and the reader
    keeps a prediction's first row."""
    return aliased(FeedbackRow)


def _label_join(labels: Any, prediction_id: Any) -> Any:
    return and_(labels.prediction_id == prediction_id, labels.superseded_at.is_(None))


class LiveFigureStore:
    """Reads only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def traffic(
        self, model_name: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[RoleTraffic]:
        """Every (version, role) logged in [since, until): rows, requests, p50/p99 latency."""
        role = _role()
        counts = _window(
            select(
                PredictionRow.version,
                role.label("role"),
                func.count().label("rows"),
                func.count(func.distinct(PredictionRow.request_id)).label("requests"),
                func.min(PredictionRow.created_at).label("first_at"),
                func.max(PredictionRow.created_at).label("last_at"),
            )
            .where(PredictionRow.model_name == model_name)
            .group_by(PredictionRow.version, role),
            PredictionRow,
            since,
            until,
        )
        with self.db.session() as s:
            groups = list(s.execute(counts))
            latency = self._latency(s, model_name, since, until)
        out = []
        for g in groups:
            p50, p99 = latency.get((g.version, g.role), (None, None))
            out.append(
                RoleTraffic(
                    version=int(g.version),
                    role=str(g.role),
                    rows=int(g.rows),
                    requests=int(g.requests) or None,
                    p50_latency_ms=p50,
                    p99_latency_ms=p99,
                    first_at=_aware(g.first_at),
                    last_at=_aware(g.last_at),
                )
            )
        return sorted(out, key=lambda t: (t.version, ROLES.index(t.role) if t.role in ROLES else 9))

    def _latency(
        self, s: Any, model_name: str, since: datetime | None, until: datetime | None
    ) -> dict[tuple[int, str], tuple[float | None, float | None]]:
        role = _role()
        if self.db.is_postgres:
            stmt = _window(
                select(
                    PredictionRow.version,
                    role.label("role"),
                    func.percentile_cont(0.5).within_group(PredictionRow.latency_ms).label("p50"),
                    func.percentile_cont(0.99).within_group(PredictionRow.latency_ms).label("p99"),
                )
                .where(PredictionRow.model_name == model_name)
                .group_by(PredictionRow.version, role),
                PredictionRow,
                since,
                until,
            )
            return {
                (int(r.version), str(r.role)): (_num(r.p50), _num(r.p99)) for r in s.execute(stmt)
            }
        # SQLite has no percentile aggregate: the same linear interpolation, here.
        stmt = _window(
            select(PredictionRow.version, role.label("role"), PredictionRow.latency_ms).where(
                PredictionRow.model_name == model_name
            ),
            PredictionRow,
            since,
            until,
        )
        values: dict[tuple[int, str], list[float]] = {}
        for r in s.execute(stmt):
            values.setdefault((int(r.version), str(r.role)), []).append(float(r.latency_ms))
        return {
            key: (float(np.percentile(v, 50)), float(np.percentile(v, 99)))
            for key, v in values.items()
        }

    def shadow_coverage(
        self,
        model_name: str,
        challenger_version: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        spans: Sequence[tuple[datetime, datetime | None]] | None = None,
    ) -> ShadowCoverage:
        """Production rows in the challenger's shadow span and how many have a shadow row.

        ``spans`` ([start, end) times the challenger was deployed in shadow mode, end None:
        still) keeps out production rows of other times inside the span, e.g. a canary.
        """
        shadow = and_(
            PredictionRow.model_name == model_name,
            PredictionRow.version == challenger_version,
            PredictionRow.role == "shadow",
        )
        span = _window(
            select(func.min(PredictionRow.created_at), func.max(PredictionRow.created_at)).where(
                shadow
            ),
            PredictionRow,
            since,
            until,
        )
        partner = aliased(PredictionRow)
        with self.db.session() as s:
            first, last = s.execute(span).one()
            if first is None:
                return ShadowCoverage(challenger_version, 0, 0)
            production = select(PredictionRow.id).where(
                PredictionRow.model_name == model_name,
                PredictionRow.role.is_(None),
                PredictionRow.created_at <= last,
                PredictionRow.created_at >= first,
            )
            if spans is not None:
                production = production.where(
                    or_(
                        false(),
                        *(
                            and_(
                                PredictionRow.created_at >= lo,
                                PredictionRow.created_at < hi if hi else true(),
                            )
                            for lo, hi in spans
                        ),
                    )
                )
            rows = s.scalar(select(func.count()).select_from(production.subquery()))
            paired = s.scalar(
                select(func.count(func.distinct(partner.paired_id))).where(
                    partner.model_name == model_name,
                    partner.version == challenger_version,
                    partner.role == "shadow",
                    partner.paired_id.in_(production),
                )
            )
        return ShadowCoverage(challenger_version, int(rows or 0), int(paired or 0))

    def outputs(
        self,
        model_name: str,
        version: int,
        role: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> LoggedOutputs:
        """One (version, role)'s newest ``limit`` outputs in the window, with current labels."""
        labels = _current_labels()
        role_test = (
            PredictionRow.role.is_(None) if role == PRODUCTION_ROLE else PredictionRow.role == role
        )
        stmt = _window(
            select(
                PredictionRow.id,
                PredictionRow.prediction,
                PredictionRow.probability,
                PredictionRow.output,
                labels.label,
            )
            .outerjoin(labels, _label_join(labels, PredictionRow.id))
            .where(
                PredictionRow.model_name == model_name,
                PredictionRow.version == version,
                role_test,
            )
            .order_by(PredictionRow.created_at.desc(), PredictionRow.id.desc(), labels.id.desc())
            .limit(limit),
            PredictionRow,
            since,
            until,
        )
        with self.db.session() as s:
            return _columns(list(s.execute(stmt)))

    def shadow_pairs(
        self,
        model_name: str,
        production_version: int,
        challenger_version: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> ShadowPairs:
        """The newest ``limit`` records both versions scored (shadow row + its production row)."""
        labels_p = _current_labels()
        labels_s = _current_labels()
        prod = aliased(PredictionRow)
        shadow = PredictionRow
        stmt = _window(
            select(
                prod.id.label("p_id"),
                prod.prediction.label("p_prediction"),
                prod.probability.label("p_probability"),
                prod.output.label("p_output"),
                shadow.id.label("s_id"),
                shadow.prediction.label("s_prediction"),
                shadow.probability.label("s_probability"),
                shadow.output.label("s_output"),
                func.coalesce(labels_p.label, labels_s.label).label("label"),
            )
            .join(prod, prod.id == shadow.paired_id)
            .outerjoin(labels_p, _label_join(labels_p, prod.id))
            .outerjoin(labels_s, _label_join(labels_s, shadow.id))
            .where(
                shadow.model_name == model_name,
                shadow.version == challenger_version,
                shadow.role == "shadow",
                prod.model_name == model_name,
                prod.version == production_version,
                prod.role.is_(None),
            )
            .order_by(
                shadow.created_at.desc(), shadow.id.desc(), labels_p.id.desc(), labels_s.id.desc()
            )
            .limit(limit),
            shadow,
            since,
            until,
        )
        with self.db.session() as s:
            rows = list(s.execute(stmt))
        seen: set[Any] = set()
        kept = []
        for r in rows:
            if r.s_id not in seen:  # a racing second current label repeats a pair
                seen.add(r.s_id)
                kept.append(r)
        return ShadowPairs(
            production=LoggedOutputs(
                [str(r.p_id) for r in kept],
                [r.p_prediction for r in kept],
                [_num(r.p_probability) for r in kept],
                [r.p_output for r in kept],
                [r.label for r in kept],
            ),
            challenger=LoggedOutputs(
                [str(r.s_id) for r in kept],
                [r.s_prediction for r in kept],
                [_num(r.s_probability) for r in kept],
                [r.s_output for r in kept],
                [r.label for r in kept],
            ),
        )


def _columns(rows: list[Any]) -> LoggedOutputs:
    seen: set[uuid.UUID] = set()
    kept = []
    for r in rows:
        if r.id not in seen:
            seen.add(r.id)
            kept.append(r)
    return LoggedOutputs(
        [str(r.id) for r in kept],
        [r.prediction for r in kept],
        [_num(r.probability) for r in kept],
        [r.output for r in kept],
        [r.label for r in kept],
    )


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
