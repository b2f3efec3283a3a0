"""Estimated performance without labels: CBPE for classifiers, DLE for regression.

If the model's probabilities are calibrated, each prediction is right with the calibrated
probability, so the expected confusion matrix — and every metric derived from it — follows
from the probabilities alone (confidence-based performance estimation). Calibration is
fitted on the validation split at training time and stored as isotonic breakpoints in the
model card.

A regression model has no probabilities; direct loss estimation (DLE, as NannyML's) learns
instead, on the validation split, how large the model's error is from the features and
the prediction. The mean predicted loss of a window estimates its MAE (and, from a second
model of the squared error, its RMSE).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.isotonic import IsotonicRegression

from pgmlops.domain.decision import confidence as confidence  # the one definition
from pgmlops.domain.schema import FeatureSchema

# The column the loss models read the model's prediction from, beside the features.
PREDICTION_COLUMN = "__prediction__"


class Calibration(BaseModel):
    """Per-class isotonic maps, raw to calibrated probability (binary: one map on P(positive))."""

    kind: Literal["binary", "multiclass"]
    classes: list[str]
    x: list[list[float]]
    y: list[list[float]]


def fit_calibration(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> Calibration:
    """Fit isotonic calibration on labelled validation rows (binary positive = classes[1])."""
    labels = np.asarray(y_true).astype(str)
    classes = [str(c) for c in classes]
    kind: Literal["binary", "multiclass"] = "binary" if len(classes) == 2 else "multiclass"
    if len(classes) < 2:
        raise ValueError(f"calibration needs at least 2 classes, got {classes}")
    raw = _as_matrix(np.asarray(proba, dtype=float), kind, len(classes))
    if raw.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {raw.shape[0]} probability rows")
    columns = [1] if kind == "binary" else range(len(classes))
    xs, ys = [], []
    for k in columns:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(raw[:, k], (labels == classes[k]).astype(float))
        xs.append([float(v) for v in iso.X_thresholds_])
        ys.append([float(v) for v in iso.y_thresholds_])
    return Calibration(kind=kind, classes=classes, x=xs, y=ys)


def calibrate(cal: Calibration, proba: np.ndarray) -> np.ndarray:
    """Calibrated probabilities in the input's shape ((n,) binary, (n, k) multiclass)."""
    raw = _as_matrix(np.asarray(proba, dtype=float), cal.kind, len(cal.classes))
    if cal.kind == "binary":
        return np.interp(raw[:, 1], cal.x[0], cal.y[0])
    out = np.column_stack(
        [np.interp(raw[:, k], cal.x[k], cal.y[k]) for k in range(len(cal.classes))]
    )
    total = out.sum(axis=1, keepdims=True)
    # A row every map sends to 0 carries no information: spread it evenly.
    return np.divide(out, total, out=np.full_like(out, 1 / out.shape[1]), where=total > 0)


def estimate_performance(
    cal: Calibration,
    proba: np.ndarray,
    threshold: float | None,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Expected metrics on unlabelled rows from the model's raw probabilities.

    Predictions are made exactly as the model makes them (binary: raw P(positive) >= the
    threshold, 0.5 when None; multiclass: the most probable class); the calibrated
    probabilities then say how likely each prediction is to be right. Keys match the
    labelled metrics: binary accuracy, precision, recall, f1, roc_auc; multiclass accuracy,
    f1_macro, f1_weighted, roc_auc_ovr. Empty input gives nan everywhere. ``weights``
    (binary only) counts row i weights[i] times, as if it were repeated.
    """
    raw = _as_matrix(np.asarray(proba, dtype=float), cal.kind, len(cal.classes))
    if cal.kind == "binary":
        keys = ("accuracy", "precision", "recall", "f1", "roc_auc")
        if raw.shape[0] == 0:
            return dict.fromkeys(keys, float("nan"))
        p = calibrate(cal, raw)
        cut = 0.5 if threshold is None else threshold
        w = np.ones(raw.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        return _binary_estimate(raw[:, 1] >= cut, p, raw[:, 1], w)
    if weights is not None:
        raise ValueError("weighted estimates are for binary models only")
    keys = ("accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr")
    if raw.shape[0] == 0:
        return dict.fromkeys(keys, float("nan"))
    return _multiclass_estimate(raw, calibrate(cal, raw))


def estimate_null(
    cal: Calibration,
    proba: np.ndarray,
    threshold: float | None,
    metric: str,
    n: int,
    *,
    draws: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """Draws of (estimate on n resampled reference rows - estimate on a reference resample).

    An estimate is an expectation over the window's probabilities, so it varies far less
    from window to window than the labelled metric: judged against the labelled metric's
    null, a real fall of the estimate (demo model, numeric_shift 2: -0.010 AUC, 4 sd of
    its own noise at 5,000 rows) looked like chance.
    """
    raw = np.asarray(proba, dtype=float)
    m = raw.shape[0]
    rng = np.random.default_rng([seed, n, 17])
    out = np.empty(draws)
    if cal.kind == "binary":
        # How often each reference row is drawn, not the n drawn indices: the same law
        # (a multinomial is the histogram of uniform draws) in O(reference rows) time and
        # memory, where n indices cost O(n log n) a draw (the AUC sorts them): at 7M window
        # rows the draws were most of `pgmlops monitor`'s time and memory.
        share = np.full(m, 1.0 / m)
        for d in range(draws):
            window = estimate_performance(cal, raw, threshold, rng.multinomial(n, share))
            ref = estimate_performance(cal, raw, threshold, rng.multinomial(m, share))
            out[d] = window[metric] - ref[metric]
        return out
    for d in range(draws):
        window = estimate_performance(cal, raw[rng.integers(0, m, n)], threshold)[metric]
        ref = estimate_performance(cal, raw[rng.integers(0, m, m)], threshold)[metric]
        out[d] = window - ref
    return out


def expected_auc(score: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> float:
    """AUC of `score` if row i is positive with probability p[i], independently.

    Every ordered pair (i, j), i != j, is a (positive, negative) pair with weight
    p_i * (1 - p_j); the AUC is the weighted share of those pairs the score orders
    correctly (ties count half). Sorting once makes it O(n log n). ``weights`` counts row i
    weights[i] times (its copies tie with each other).
    """
    order = np.argsort(score, kind="stable")
    s, q = score[order], p[order]
    w = np.ones(len(q)) if weights is None else np.asarray(weights, dtype=float)[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * q, starts)
    neg = np.add.reduceat(w * (1 - q), starts)
    return grouped_expected_auc(pos, neg, float(np.sum(w * q * (1 - q))))


def grouped_expected_auc(pos: np.ndarray, neg: np.ndarray, self_pairs: float) -> float:
    """``expected_auc`` from groups of tied scores, ascending: expected positives, negatives.

    ``self_pairs`` is the sum of p (1 - p) over all rows. Rows binned together count as tied.
    """
    if len(pos) == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    # A row is never paired with itself; within its tie group it was counted at half weight.
    wins = float(np.sum(pos * (neg_below + 0.5 * neg))) - 0.5 * self_pairs
    pairs = float(pos.sum() * neg.sum()) - self_pairs
    return wins / pairs if pairs > 0 else float("nan")


def fit_loss_models(
    x: pd.DataFrame, predicted: np.ndarray, y_true: np.ndarray, schema: FeatureSchema, *, seed: int
) -> dict[str, Any]:
    """Two regressors of the model's error from features + prediction: "mae" and "rmse".

    Fitted on rows the model did not train on; "mae" learns |error|, "rmse" learns error².
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = _loss_frame(x, predicted, schema)
    error = np.asarray(y_true, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    models: dict[str, Any] = {}
    for name, target in (("mae", np.abs(error)), ("rmse", error**2)):
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False, max_categories=20)
        columns = ColumnTransformer(
            [("num", "passthrough", [*schema.numeric, PREDICTION_COLUMN])]
            + ([("cat", encode, schema.categorical)] if schema.categorical else []),
            remainder="drop",
        )
        # Shallow, strongly regularised trees: the loss is noisy and only its mean matters.
        model = HistGradientBoostingRegressor(
            max_iter=100, learning_rate=0.05, min_samples_leaf=40, random_state=seed
        )
        models[name] = Pipeline([("columns", columns), ("model", model)]).fit(frame, target)
    return models


def estimate_loss(
    models: dict[str, Any], x: pd.DataFrame, predicted: np.ndarray, schema: FeatureSchema
) -> tuple[dict[str, float], np.ndarray]:
    """Estimated mae and rmse of unlabelled rows, and each row's estimated absolute error."""
    frame = _loss_frame(x, predicted, schema)
    if len(frame) == 0:
        return {"mae": float("nan"), "rmse": float("nan")}, np.empty(0)
    absolute = np.maximum(models["mae"].predict(frame), 0.0)
    squared = np.maximum(models["rmse"].predict(frame), 0.0)
    return {"mae": float(absolute.mean()), "rmse": float(np.sqrt(squared.mean()))}, absolute


def _loss_frame(x: pd.DataFrame, predicted: np.ndarray, schema: FeatureSchema) -> pd.DataFrame:
    frame = x[schema.names].reset_index(drop=True).copy()
    frame[PREDICTION_COLUMN] = np.asarray(predicted, dtype=np.float64)
    return frame


def _binary_estimate(
    predicted: np.ndarray, p: np.ndarray, raw: np.ndarray, w: np.ndarray
) -> dict[str, float]:
    tp = float((w * p)[predicted].sum())
    fp = float((w * (1 - p))[predicted].sum())
    fn = float((w * p)[~predicted].sum())
    tn = float((w * (1 - p))[~predicted].sum())
    return {
        "accuracy": (tp + tn) / float(w.sum()),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": expected_auc(raw, p, w),
    }


def _multiclass_estimate(raw: np.ndarray, p: np.ndarray) -> dict[str, float]:
    n, k = raw.shape
    predicted = raw.argmax(axis=1)
    chosen = np.zeros_like(p, dtype=bool)
    chosen[np.arange(n), predicted] = True
    tp = (p * chosen).sum(axis=0)
    fp = ((1 - p) * chosen).sum(axis=0)
    fn = (p * ~chosen).sum(axis=0)
    support = p.sum(axis=0)  # expected number of true members of each class
    f1 = np.array([_ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(k)])
    aucs = [expected_auc(raw[:, c], p[:, c]) for c in range(k)]
    return {
        "accuracy": float(p[np.arange(n), predicted].mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support).sum() / support.sum()),
        "roc_auc_ovr": float(np.nanmean(aucs)) if not np.isnan(aucs).all() else float("nan"),
    }


def _ratio(numerator: float, denominator: float) -> float:
    # Matches the labelled metrics' zero_division=0.
    return numerator / denominator if denominator > 0 else 0.0


def _as_matrix(proba: np.ndarray, kind: str, k: int) -> np.ndarray:
    """Probabilities as (n, k); a binary (n,) vector is P(positive)."""
    if kind == "binary" and proba.ndim == 1:
        return np.column_stack([1 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] != k:
        expected = "(n,) or (n, 2)" if kind == "binary" else f"(n, {k})"
        raise ValueError(f"probabilities have shape {proba.shape}, expected {expected}")
    return proba
