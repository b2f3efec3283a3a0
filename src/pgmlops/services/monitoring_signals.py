"""The confidence and performance signals of one prediction window.

Confidence decay needs nothing but the logged confidences. Estimated performance (CBPE)
needs the model card's calibration and is compared with the same estimate on the version's
holdout. Labelled performance uses feedback labels, refusing (and counting) labels that are
not a value this model can be scored against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.config import MonitoringConfig
from pgmlops.domain.kinds import Task
from pgmlops.domain.metrics import Scores, evaluate, improvement
from pgmlops.domain.performance import Calibration
from pgmlops.domain.performance import estimate_performance as estimate
from pgmlops.domain.policies import PRIMARY_METRIC
from pgmlops.domain.records import ModelVersion
from pgmlops.domain.schema import coerce_features
from pgmlops.errors import DataError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.store.monitoring import PredictionWindow


def finite(value: Any) -> Any:
    """The same structure with NaN and infinite floats replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def window_proba(window: PredictionWindow, task: Task) -> np.ndarray | None:
    """Logged class probabilities: P(positive) (n,) for binary, (n, k) for multiclass."""
    if task == "binary":
        return window.outputs["probability"].to_numpy(dtype=np.float64)
    return window.proba


def _relative_drop(metric: str, current: float | None, reference: float | None) -> float | None:
    """How much worse ``current`` is, as a fraction of ``reference`` (negative: better)."""
    if current is None or reference is None or not reference:
        return None
    if not (math.isfinite(current) and math.isfinite(reference)):
        return None
    return -improvement(metric, current, reference) / abs(reference)


def confidence_signal(
    window: PredictionWindow, reference: float | None, limit: float
) -> dict[str, Any]:
    """Mean logged confidence against the holdout's; degraded past ``limit`` as a fraction."""
    values = window.outputs["confidence"].to_numpy(dtype=np.float64)
    current = float(np.nanmean(values)) if np.isfinite(values).any() else None
    drop = None
    if current is not None and reference:
        drop = (reference - current) / reference
    return {
        "reference": reference,
        "current": current,
        "drop": drop,
        "limit": limit,
        "degraded": drop is not None and drop > limit,
    }


def estimated_performance(
    ctx: Context, mv: ModelVersion, window: PredictionWindow, limit: float
) -> dict[str, Any]:
    """CBPE on the window, against CBPE on the version's holdout (like with like)."""
    card = mv.card
    empty = {"metric": None, "metrics": {}, "reference": {}, "drop": None, "limit": limit}
    if card.task == "regression" or card.calibration is None:
        why = "regression" if card.task == "regression" else "no calibration in the model card"
        return {**empty, "degraded": False, "note": f"not estimated: {why}"}
    cal = Calibration.model_validate(card.calibration)
    proba = window_proba(window, card.task)
    if proba is None:
        return {**empty, "degraded": False, "note": "not estimated: no class probabilities logged"}
    keep = np.isfinite(proba if proba.ndim == 1 else proba.sum(axis=1))
    metrics = finite(estimate(cal, proba[keep], card.threshold))
    reference, source = _holdout_estimate(ctx, mv, cal)
    metric = _primary(ctx, card.task, metrics)
    drop = _relative_drop(metric, metrics.get(metric), reference.get(metric))
    return {
        "metric": metric,
        "metrics": metrics,
        "reference": reference,
        "reference_source": source,
        "rows": int(keep.sum()),
        "drop": drop,
        "limit": limit,
        "degraded": drop is not None and drop > limit,
    }


def _holdout_estimate(
    ctx: Context, mv: ModelVersion, cal: Calibration
) -> tuple[dict[str, float | None], str]:
    # CBPE runs a little optimistic when the calibration map is fitted on few rows, so the
    # window is compared with the same estimate on the holdout, not with the holdout's labels.
    from pgmlops.services.promotion import read_holdout, version_engine

    card = mv.card
    try:
        holdout = read_holdout(ctx, mv)
        x = coerce_features(holdout, card.feature_schema)
        out = version_engine(ctx, mv).predict_frame(x)
    except PgmlopsError:
        labelled = {k: v for k, v in card.metrics.items() if v is not None}
        return labelled, "holdout labels (the holdout could not be scored)"
    return finite(estimate(cal, out.proba, card.threshold)), "holdout estimate"


def _primary(ctx: Context, task: Task, available: dict[str, Any]) -> str:
    configured = ctx.settings.promotion.primary_metric
    return configured if configured in available else PRIMARY_METRIC[task]


def labelled_performance(
    ctx: Context, mv: ModelVersion, window: PredictionWindow, settings: MonitoringConfig
) -> dict[str, Any]:
    """The card's metrics on the window's labelled rows; degraded only with enough labels."""
    card = mv.card
    labels = window.outputs["label"]
    has = labels.notna().to_numpy()
    y_true, good, bad_examples = _valid_labels(labels[has], card.task, card.classes)
    n_bad = int((~good).sum())
    rows = np.flatnonzero(has)[good]
    limit, min_labels = settings.performance_drop, settings.min_labels
    result: dict[str, Any] = {
        "n_labels": len(rows),
        "min_labels": min_labels,
        "metric": ctx.settings.promotion.primary_for(card.task),
        "metrics": {},
        "reference": dict(card.metrics),
        "drop": None,
        "limit": limit,
        "degraded": False,
        "bad_labels": {"count": n_bad, "examples": bad_examples},
    }
    if len(rows) == 0:
        return result
    predicted = window.outputs["prediction"].to_numpy(dtype=object)[rows]
    proba = window_proba(window, card.task)
    proba = None if proba is None else proba[rows]
    if proba is not None and not np.isfinite(proba).all():
        proba = None
    try:
        scores = Scores(
            task=card.task,
            y_true=y_true[good],
            predicted=predicted,
            proba=proba,
            classes=tuple(card.classes) if card.classes else None,
        )
    except ValueError as exc:
        raise DataError(
            f"{mv.model_name} v{mv.version}: logged outputs are unusable: {exc}"
        ) from exc
    metrics = finite(evaluate(scores))
    metric = result["metric"]
    drop = _relative_drop(metric, metrics.get(metric), card.metrics.get(metric))
    result.update(
        metrics=metrics,
        drop=drop,
        degraded=len(rows) >= min_labels and drop is not None and drop > limit,
    )
    return result


def _valid_labels(
    labels: pd.Series, task: Task, classes: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(normalised labels, which are usable, a few unusable ones) for the model's task."""
    text = labels.astype(str).str.strip()
    if task == "regression":
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        good = np.isfinite(values)
        return values, good, sorted(set(text[~good].tolist()))[:5]
    known = set(classes or [])
    fixed = text.map({u: _class_label(u, known) for u in text.unique()})
    good = fixed.isin(known).to_numpy()
    return fixed.to_numpy(dtype=object), good, sorted(set(text[~good].tolist()))[:5]


def _class_label(text: str, known: set[str]) -> str:
    """``text``, or the class it names as a float ("1.0" for class "1", as some tools write)."""
    if text in known:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and str(int(number)) in known:
        return str(int(number))
    return text
