"""A window of the prediction log summarised inside PostgreSQL: counts, not rows.

Monitoring a window needs, per numeric feature, how many values fall at and between the
reference profile's points and their sums (``width_bucket`` over the stored points), per
categorical feature the count of every category, the same for the model's output, the sum
of the logged confidences, and for labelled rows counts by (label, prediction, score bin)
or, for regression, sums of errors. One query per aggregate scans the window (the features'
cells in one scan: store/window_cells.py); Python gets O(features x points) numbers whatever
the window's size. Raw rows are read only as a
bounded, reproducible sample (a hash of the prediction id picks it) for the detectors that
need them. SQLite keeps reading rows (store/monitoring.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.domain.kinds import Kind
from pgmlops.domain.window_counts import NumericCells
from pgmlops.errors import StoreError
from pgmlops.store.db import Database, first_line
from pgmlops.store.monitoring import PredictionWindow, cutoff_time
from pgmlops.store.statistics import refresh_statistics
from pgmlops.store.window_cells import NumericSpec, count_cells, number

# log_loss clips probabilities at the float64 epsilon, as scikit-learn does.
_EPS = float(np.finfo(np.float64).eps)


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

        self.db.ensure_schema()
        refresh_statistics(self.db)
        try:
            with self._cursor() as cur:
                where = _window(cur, model_name, version, last, since)
                cells = count_cells(cur, where, numeric, categorical, output)
                # Only a hash join with the labels, whatever the row estimates (see
                # store/monitoring.py: a nested loop there is quadratic in the window).
                # Not before the cells query: its unnest is a nested loop by nature, and
                # disabling those makes the planner give up its parallel plan.
                cur.execute("SET LOCAL enable_nestloop = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                scores = _scores(cur, where, score_edges) if score_edges is not None else None
                sums = _regression(cur, where) if regression else None
                sample = None
                if sample_rows and cells["rows"]:
                    sample = _sample(cur, where, sample_columns, sample_rows, cells["rows"])
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            raise StoreError(f"cannot summarise the prediction log: {first_line(exc)}") from exc
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
            score_edges=None if score_edges is None else np.asarray(score_edges, dtype=np.float64),
            regression=sums,
            sample=sample,
        )

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self.db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            try:
                with raw.cursor() as cur:
                    # JSONB extraction dominates: let worker processes share the scan.
                    cur.execute("SET LOCAL parallel_setup_cost = 0")
                    cur.execute("SET LOCAL parallel_tuple_cost = 0")
                    yield cur
            finally:
                raw.rollback()


def _window(
    cur: Any, model_name: str, version: int, last: int | None, since: datetime | None
) -> Any:
    """The WHERE clause (on alias w) selecting the window's rows."""
    from psycopg import sql

    where = [
        sql.SQL("model_name = {}").format(sql.Literal(model_name)),
        sql.SQL("version = {}").format(sql.Literal(int(version))),
    ]
    if since is not None:
        where.append(sql.SQL("created_at >= {}").format(sql.Literal(since)))
    if last is not None:
        cutoff = cutoff_time(cur, where, last)
        if cutoff is not None:
            at_cut = [*where, sql.SQL("created_at = {}").format(sql.Literal(cutoff))]
            where.append(sql.SQL("created_at >= {}").format(sql.Literal(cutoff)))
            cur.execute(
                sql.SQL("SELECT count(*) FROM predictions WHERE {}").format(
                    sql.SQL(" AND ").join(where)
                )
            )
            excess = int(cur.fetchone()[0]) - last
            if excess > 0:
                # Rows sharing the cutoff time (one logged batch): keep `last` in all, by id.
                where.append(
                    sql.SQL(
                        "id NOT IN (SELECT id FROM predictions WHERE {} ORDER BY id LIMIT {})"
                    ).format(sql.SQL(" AND ").join(at_cut), sql.Literal(excess))
                )
    return sql.SQL(" AND ").join(sql.SQL("w.") + c for c in where)


_LABELS = (
    "LEFT JOIN (SELECT DISTINCT ON (prediction_id) prediction_id, label FROM feedback "
    "WHERE superseded_at IS NULL ORDER BY prediction_id, id DESC) f ON f.prediction_id = w.id"
)


def _scores(cur: Any, where: Any, edges: np.ndarray) -> pd.DataFrame:
    """Rows by (label, prediction, score bin): counts, sums of p, p², and the log losses."""
    from psycopg import sql

    p = sql.SQL("{}::float8[]").format(sql.Literal([float(v) for v in edges]))
    eps = sql.Literal(_EPS)
    query = sql.SQL(
        "SELECT f.label, w.prediction, width_bucket(w.probability, {p}) AS bin, count(*), "
        "count(w.probability), coalesce(sum(w.probability), 0), "
        "coalesce(sum(w.probability * w.probability), 0), "
        "coalesce(sum(ln(greatest(least(w.probability, 1 - {eps}), {eps}))), 0), "
        "coalesce(sum(ln(greatest(least(1 - w.probability, 1 - {eps}), {eps}))), 0) "
        "FROM predictions w " + _LABELS + " WHERE {where} GROUP BY 1, 2, 3"
    ).format(p=p, eps=eps, where=where)
    cur.execute(query)
    columns = ["label", "prediction", "bin", "n", "n_scored", "sum_p", "sum_p2", "ln_p", "ln_q"]
    frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for name in columns[3:]:
        frame[name] = frame[name].astype("float64")
    frame["bin"] = frame["bin"].astype("Int64")
    return frame


def _regression(cur: Any, where: Any) -> dict[str, Any]:
    """Sums of the labelled rows' errors, the count of unusable labels and a few of them."""
    from psycopg import sql

    y = number(sql.SQL("f.label"))
    pred = number(sql.SQL("w.prediction"))
    query = sql.SQL(
        "SELECT count(f.label), count({y}), count(*) FILTER (WHERE f.label IS NOT NULL AND "
        "{y} IS NOT NULL AND {pred} IS NULL), "
        "sum(({y} - {pred}) ^ 2), sum(abs({y} - {pred})), var_pop({y}) "
        "FROM predictions w " + _LABELS + " WHERE {where}"
    ).format(y=y, pred=pred, where=where)
    cur.execute(query)
    labelled, good, bad_predictions, sse, sae, variance = cur.fetchone()
    examples: list[str] = []
    if labelled > good:
        cur.execute(
            sql.SQL(
                'SELECT DISTINCT btrim(f.label) COLLATE "C" AS t FROM predictions w '
                + _LABELS
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

    from pgmlops.store.monitoring import _typed

    # Keep about twice the rows needed, then the lowest hashes: the sort stays small.
    share = min(1.0, 2.0 * size / max(rows, 1))
    h = sql.SQL("((hashtext(w.id::text)::float8 + 2147483648) / 4294967296)")
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
    frame = _typed(frame, columns, None)
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
