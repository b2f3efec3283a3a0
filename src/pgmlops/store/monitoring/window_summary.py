"""A window of the prediction log summarised inside PostgreSQL: counts, not rows.

Monitoring a window needs, per numeric feature, how many values fall at and between the
reference profile's points and their sums (``width_bucket`` over the stored points), per
categorical feature the count of every category, the same for the model's output, the sum
of the logged confidences, and for labelled rows counts by (label, prediction, score bin)
or, for regression, sums of errors. One pass counts the window's rows by hour and groups the
labelled ones (store/monitoring/window_hours.py); the features' cells come from the hours already
summarised (store/monitoring/log_summaries.py) plus one scan of the rest
(store/monitoring/window_cells.py). Python gets O(features x points x hours) numbers whatever the
window's size. Raw rows are read only as a bounded, reproducible sample (a hash of the prediction id
picks it) for the detectors that need them. SQLite keeps reading rows (store/monitoring/runs.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.kinds import Kind
from pgmlops.domain.monitoring.window_counts import NumericCells
from pgmlops.errors import StoreError
from pgmlops.store.db import Database, first_line
from pgmlops.store.monitoring.log_summaries import (
    StoredHour,
    as_frame,
    hour_of,
    hour_start,
    last_closed_hour,
    lower_bound,
    merge_frames,
    newest_hour,
    outside,
    save_hours,
    spec_key,
    stored_cells,
    stored_rows,
)
from pgmlops.store.monitoring.prediction_windows import PredictionWindow
from pgmlops.store.monitoring.window_cells import (
    TIME_ENTRY,
    NumericSpec,
    cell_groups,
    collect_cells,
    number,
)
from pgmlops.store.monitoring.window_hours import (
    LABELS,
    aliased,
    base_conditions,
    hour_counts,
    locate,
    window_scores,
)
from pgmlops.store.statistics import refresh_statistics


@dataclass(frozen=True)
class WindowSummary:
    """What monitoring reads of a window on PostgreSQL (see the module docstring)."""

    rows: int
    first_at: datetime | None
    last_at: datetime | None
    features: dict[str, NumericCells | dict[str, int]]
    infinite: list[str] = field(default_factory=list)
    output: NumericCells | dict[str, int] | None = None
    output_range: tuple[float | None, float | None] = (None, None)
    confidence: tuple[int, float] = (0, 0.0)
    score_confidence: float | None = None
    scores: pd.DataFrame | None = None
    score_edges: np.ndarray | None = None
    regression: dict[str, Any] | None = None
    sample: PredictionWindow | None = None


class WindowSummaryStore:
    """Summarises windows of logged predictions on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        if not db.is_postgres:
            raise StoreError("window summaries are computed in PostgreSQL; SQLite reads rows")
        self.db = db

    def summarise(
        self,
        model_name: str,
        version: int,
        numeric: dict[str, NumericSpec],
        categorical: Sequence[str],
        *,
        output: NumericSpec | None = None,
        score_edges: np.ndarray | None = None,
        regression: bool = False,
        sample_columns: Sequence[tuple[str, Kind]] = (),
        sample_rows: int = 0,
        last: int | None = None,
        since: datetime | None = None,
    ) -> WindowSummary:
        """Count the newest ``last`` predictions and/or those since ``since``.

        ``output`` counts the outputs on its points (binary P(positive), regression
        predictions); ``score_edges`` groups labelled and unlabelled rows by label,
        prediction and score bin (binary); ``regression`` sums the labelled errors.
        """
        if last is not None and last < 1:
            raise StoreError(f"a window needs at least 1 row, got last={last}")
        import psycopg
        from psycopg import sql

        self.db.ensure_schema()
        refresh_statistics(self.db)
        edges = None if score_edges is None else np.asarray(score_edges, dtype=np.float64)
        spec = spec_key(numeric, categorical, output, edges)
        conditions = base_conditions(model_name, version, since)
        floor = None if since is None else hour_of(since)
        closed = last_closed_hour(datetime.now(UTC))
        try:
            with self._cursor() as cur:
                # Only hash joins with the labels, whatever the row estimates (see
                # store/monitoring/runs.py: a nested loop there is quadratic in the window).
                cur.execute("SET LOCAL enable_nestloop = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                guess = None if last is None else lower_bound(cur, model_name, version, spec, last)
                lo = floor if guess is None else max(guess, floor or guess)
                counts = hour_counts(cur, conditions, lo)
                if guess is not None and sum(counts.values()) < last:
                    counts, lo = hour_counts(cur, conditions, floor), floor
                where, first = locate(cur, conditions, counts, last, since, lo)

                sums = _regression(cur, where) if regression else None
                # The cells query's unnest is a nested loop by nature: disabling those makes
                # the planner give up its parallel plan.
                cur.execute("SET LOCAL enable_nestloop = on")
                cur.execute("SET LOCAL enable_mergejoin = on")
                # Whole, closed hours already stored are summed; the rest of the window is read.
                whole = {h for h in counts if (first is None or h >= first) and h <= closed}
                stored = stored_rows(cur, model_name, version, spec, whole)
                used = {h for h, n in stored.items() if n == counts[h]}
                rest = sql.SQL("{} AND {}").format(where, outside(used))
                scanned = cell_groups(
                    cur, rest, numeric, categorical, output, score_edges=edges, by_hour=True
                )
                cells = collect_cells(
                    merge_frames(
                        chain(
                            [as_frame([g[1:] for g in scanned])],
                            stored_cells(cur, model_name, version, spec, used),
                        )
                    ),
                    numeric,
                    categorical,
                    output,
                )
                scores = None
                if edges is not None:
                    # A nested loop over the labels would be quadratic (see above).
                    cur.execute("SET LOCAL enable_nestloop = off")
                    cur.execute("SET LOCAL enable_mergejoin = off")
                    scores = window_scores(cur, where, edges, cells["scores"])
                sample = None
                if sample_rows and cells["rows"]:
                    sample = _sample(cur, where, sample_columns, sample_rows, cells["rows"])
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            raise StoreError(f"cannot summarise the prediction log: {first_line(exc)}") from exc
        save_hours(self.db, model_name, version, spec, _closed(scanned, whole))
        return WindowSummary(
            rows=cells["rows"],
            first_at=cells["first_at"],
            last_at=cells["last_at"],
            features=cells["features"],
            infinite=cells["infinite"],
            output=cells["output"],
            output_range=cells["output_range"],
            confidence=cells["confidence"],
            score_confidence=cells["score_confidence"],
            scores=scores,
            score_edges=edges,
            regression=sums,
            sample=sample,
        )

    def store_closed_hours(
        self,
        model_name: str,
        version: int,
        numeric: dict[str, NumericSpec],
        categorical: Sequence[str],
        output: NumericSpec | None,
        *,
        score_edges: np.ndarray | None,
        limit: int,
    ) -> int:
        """Count and store up to ``limit`` closed hours after the newest one stored."""
        import psycopg
        from psycopg import sql

        self.db.ensure_schema()
        edges = None if score_edges is None else np.asarray(score_edges, dtype=np.float64)
        spec = spec_key(numeric, categorical, output, edges)
        closed = last_closed_hour(datetime.now(UTC))
        conditions = base_conditions(model_name, version, None)
        try:
            with self._cursor() as cur:
                newest = newest_hour(cur, model_name, version, spec)
                if newest is None:
                    cur.execute(
                        sql.SQL("SELECT min(w.created_at) FROM predictions w WHERE {}").format(
                            aliased(conditions)
                        )
                    )
                    oldest = cur.fetchone()[0]
                    if oldest is None:
                        return 0
                    lo = hour_of(oldest)
                else:
                    lo = newest + 1
                hi = min(closed, lo + limit - 1)
                if hi < lo:
                    return 0
                where = sql.SQL("{} AND w.created_at >= {} AND w.created_at < {}").format(
                    aliased(conditions),
                    sql.Literal(hour_start(lo)),
                    sql.Literal(hour_start(hi + 1)),
                )
                scanned = cell_groups(
                    cur, where, numeric, categorical, output, score_edges=edges, by_hour=True
                )
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            raise StoreError(f"cannot summarise the prediction log: {first_line(exc)}") from exc
        # Hours without rows are stored too (empty), so the next call starts after them.
        found = {h.hour: h for h in _closed(scanned, set(range(lo, hi + 1)))}
        hours = [found.get(h, StoredHour(h, 0, [])) for h in range(lo, hi + 1)]
        return save_hours(self.db, model_name, version, spec, hours)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self.db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            try:
                with raw.cursor() as cur:
                    # JSONB extraction dominates: let worker processes share the scan.
                    cur.execute("SET LOCAL parallel_setup_cost = 0")
                    cur.execute("SET LOCAL parallel_tuple_cost = 0")
                    # Hour x label x bin groups stay in one in-memory hash table.
                    cur.execute("SET LOCAL work_mem = '64MB'")
                    yield cur
            finally:
                raw.rollback()


def _closed(cells: list[tuple[Any, ...]], whole: set[int]) -> list[StoredHour]:
    """The scanned hours among ``whole`` (wholly inside the window, closed), ready to store."""
    by_hour: dict[int, list[tuple[Any, ...]]] = {}
    for group in cells:
        if group[0] in whole:
            by_hour.setdefault(int(group[0]), []).append(tuple(group[1:]))
    return [
        StoredHour(hour, sum(int(g[3]) for g in found if g[0] == TIME_ENTRY), found)
        for hour, found in sorted(by_hour.items())
    ]


_LABELLED = LABELS + " JOIN predictions w ON w.id = f.prediction_id"


def _regression(cur: Any, where: Any) -> dict[str, Any]:
    """Sums of the labelled rows' errors, the count of unusable labels and a few of them."""
    from psycopg import sql

    y = number(sql.SQL("f.label"))
    pred = number(sql.SQL("w.prediction"))
    query = sql.SQL(
        "SELECT count(f.label), count({y}), count(*) FILTER (WHERE f.label IS NOT NULL AND "
        "{y} IS NOT NULL AND {pred} IS NULL), "
        "sum(({y} - {pred}) ^ 2), sum(abs({y} - {pred})), var_pop({y}) "
        "FROM " + _LABELLED + " WHERE {where}"
    ).format(y=y, pred=pred, where=where)
    cur.execute(query)
    labelled, good, bad_predictions, sse, sae, variance = cur.fetchone()
    examples: list[str] = []
    if labelled > good:
        cur.execute(
            sql.SQL(
                'SELECT DISTINCT btrim(f.label) COLLATE "C" AS t FROM '
                + _LABELLED
                + " WHERE {where} AND f.label IS NOT NULL AND {y} IS NULL ORDER BY t LIMIT 5"
            ).format(where=where, y=y)
        )
        examples = [r[0] for r in cur.fetchall()]
    return {
        "n_labelled": int(labelled),
        "n_good": int(good),
        "bad_predictions": int(bad_predictions),
        "sse": float(sse or 0.0),
        "sae": float(sae or 0.0),
        "variance": None if variance is None else float(variance),
        "bad_examples": examples,
    }


def _sample(
    cur: Any, where: Any, columns: Sequence[tuple[str, Kind]], size: int, rows: int
) -> PredictionWindow:
    """About ``size`` rows picked by a hash of their id: cheap, reproducible, unbiased in time."""
    from psycopg import sql

    from pgmlops.store.monitoring.prediction_windows import typed_columns

    # Keep about twice the rows needed, then the lowest hashes: the sort stays small.
    share = min(1.0, 2.0 * size / max(rows, 1))
    # uuid_hash hashes the 16 bytes: no text form of the id is built for every row.
    h = sql.SQL("((uuid_hash(w.id)::float8 + 2147483648) / 4294967296)")
    picked = [sql.SQL("w.features ->> {}").format(sql.Literal(name)) for name, _ in columns]
    query = sql.SQL(
        "SELECT {cols}, w.prediction, w.probability, w.confidence FROM predictions w "
        "WHERE {where} AND {h} < {share} ORDER BY {h}, w.id LIMIT {size}"
    ).format(
        cols=sql.SQL(", ").join(picked) if picked else sql.SQL("NULL"),
        where=where,
        h=h,
        share=sql.Literal(share),
        size=sql.Literal(int(size)),
    )
    cur.execute(query)
    fetched = cur.fetchall()
    width = max(len(columns), 1)
    names = [f"f{i}" for i in range(len(columns))]
    frame = pd.DataFrame([r[: len(columns)] for r in fetched] if columns else None, columns=names)
    outputs = pd.DataFrame(
        [r[width:] for r in fetched], columns=["prediction", "probability", "confidence"]
    )
    frame = pd.concat([frame, outputs], axis=1)
    frame["label"] = pd.Series([None] * len(frame), dtype=object)
    frame = typed_columns(frame, columns, None)
    features = frame[names]
    features.columns = [name for name, _ in columns]
    return PredictionWindow(
        features=features.reset_index(drop=True),
        outputs=pd.DataFrame(
            {
                "created_at": pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]"),
                "prediction": frame["prediction"],
                "probability": frame["probability"],
                "confidence": frame["confidence"],
                "label": frame["label"],
            }
        ),
    )
