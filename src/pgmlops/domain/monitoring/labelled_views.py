"""What a labelled window looks like: a confusion matrix (classification) or residuals (regression).

Stored with the run, so the report draws any stored run without the prediction log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.kinds import Task

# A scatter of a few hundred points reads as well as one of thousands and keeps runs small.
MAX_RESIDUAL_POINTS = 400


def labelled_view(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, classes: list[str] | None
) -> dict[str, Any]:
    """The confusion matrix (rows: true class) or a sample of (prediction, residual) points."""
    if task == "regression":
        return residual_view(y_true, predicted)
    return confusion_view(y_true, predicted, classes or [])


def confusion_view(
    y_true: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Counts of (true, predicted) class pairs in ``classes`` order; ``weights``: rows per pair
    (the PostgreSQL path hands over counted groups, not rows)."""
    labels = [str(c) for c in classes]
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    counts = np.ones(len(y_true), dtype=np.int64) if weights is None else np.asarray(weights)
    for truth, guess, count in zip(y_true, predicted, counts, strict=True):
        i, j = index.get(str(truth)), index.get(str(guess))
        if i is not None and j is not None:
            matrix[i, j] += int(count)
    return {"kind": "confusion", "labels": labels, "matrix": matrix.tolist()}


def residual_view(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Up to MAX_RESIDUAL_POINTS (prediction, truth - prediction) points, a seeded sample."""
    truth = pd.to_numeric(pd.Series(y_true), errors="coerce").to_numpy(dtype=np.float64)
    guess = pd.to_numeric(pd.Series(predicted), errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(truth) & np.isfinite(guess)
    truth, guess = truth[keep], guess[keep]
    if len(truth) > MAX_RESIDUAL_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(truth), MAX_RESIDUAL_POINTS, False))
        truth, guess = truth[pick], guess[pick]
    residual = truth - guess
    return {
        "kind": "residuals",
        "n": int(keep.sum()),
        "predicted": [round(float(v), 6) for v in guess],
        "residual": [round(float(v), 6) for v in residual],
    }
