"""Cross-fitted (out-of-fold) outputs on the training rows, for monitoring's reference.

The reference a window is compared with should be the model's true performance. Held-out
rows alone give a noisy figure (the demo model's 4,000-row holdout said AUC 0.868, the
truth on 200,000 fresh rows is 0.858), and a lucky reference makes every later window look
worse than it is. Scoring each training row with a copy of the pipeline fitted on the other
folds adds those rows to the reference without letting any row score itself. A fold model
learns from fewer rows, so its outputs are at worst a little pessimistic, the safe side
for an alarm. Boosting models are refitted with the number of rounds the final model chose
(early stopping switches itself on and off with the row count, and a fold model that trains
differently would not be the same model on fewer rows).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from pgmlops.domain.intervals import REFERENCE_ROWS, concat_scores
from pgmlops.domain.metrics import Scores
from pgmlops.domain.monitoring.design_effect import repeated_rows
from pgmlops.domain.predict import predict_outputs, to_scores
from pgmlops.domain.training.pipeline import snap_thresholds_to_float32


def refit_copy(pipeline: Any) -> Any:
    """An unfitted clone of a fitted pipeline that trains its final step the same way."""
    copy = clone(pipeline)
    name, fitted = pipeline.steps[-1]
    params = fitted.get_params(deep=False)
    rounds = getattr(fitted, "n_iter_", None)
    if rounds is not None and "max_iter" in params and "early_stopping" in params:
        copy.set_params(**{f"{name}__max_iter": int(rounds), f"{name}__early_stopping": False})
    return copy


def cross_fitted_scores(
    pipeline: Any,
    card: Any,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    folds: int,
    seed: int,
) -> Scores | None:
    """Out-of-fold scores of every row of (x, y); None when a fold could miss a class."""
    if folds < 2 or len(x) < 2 * folds:
        return None
    target = np.asarray(y)
    if card.task == "regression":
        splitter: Any = KFold(folds, shuffle=True, random_state=seed)
    else:
        _, counts = np.unique(target.astype(str), return_counts=True)
        if counts.min() < folds:
            return None
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    parts: list[tuple[np.ndarray, Scores]] = []
    for train_rows, test_rows in splitter.split(x, target.astype(str)):
        model = refit_copy(pipeline)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            model.fit(x.iloc[train_rows], y.iloc[train_rows])
        snap_thresholds_to_float32(model)
        out = predict_outputs(model, card, x.iloc[test_rows])
        parts.append((test_rows, to_scores(card, out, target[test_rows])))
    order = np.argsort(np.concatenate([rows for rows, _ in parts]))
    first = parts[0][1]
    proba = None
    if first.proba is not None:
        proba = np.concatenate([s.proba for _, s in parts])[order]  # type: ignore[misc]
    return Scores(
        task=first.task,
        y_true=np.concatenate([s.y_true for _, s in parts])[order],
        predicted=np.concatenate([s.predicted for _, s in parts])[order],
        proba=proba,
        classes=first.classes,
    )


def with_cross_fitted(
    held_out: Scores,
    pipeline: Any,
    card: Any,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    folds: int,
    seed: int,
) -> Scores:
    """The held-out scores, joined by the training rows' out-of-fold scores when they help.

    Where held-out rows already fill the reference, more rows would be sampled away: the
    refits (about two extra fits of the model) are only paid for on smaller datasets.
    """
    if folds < 2 or len(held_out) >= REFERENCE_ROWS:
        return held_out
    crossed = cross_fitted_scores(pipeline, card, x, y, folds=folds, seed=seed)
    return held_out if crossed is None else concat_scores(crossed, held_out)


def served_scores(pipeline: Any, card: Any, x: pd.DataFrame, pooled: Scores) -> Scores:
    """``pooled`` (training rows ``x`` out of fold, then held-out rows) as traffic is served.

    Traffic that repeats a training feature vector is answered by the final model, which fitted
    that vector's copies: its output, not a fold model's, is what such a row gets, so repeated
    vectors take it. A vector seen once stands for the vectors traffic brings that training
    never saw (Good-Turing: their share of traffic is about the share of rows seen once), whose
    outputs are the final model's on unseen rows: out-of-fold outputs stand in. Held-out rows
    already hold the final model's outputs.
    """
    repeated = np.flatnonzero(repeated_rows(x))
    predicted = np.array(pooled.predicted, copy=True)
    proba = None if pooled.proba is None else np.array(pooled.proba, copy=True)
    if len(repeated):
        # Only the repeated vectors are scored again; the rest keep their pooled values.
        out = predict_outputs(pipeline, card, x.iloc[repeated])
        final = to_scores(card, out, pooled.y_true[repeated])
        predicted[repeated] = final.predicted
        if proba is not None and final.proba is not None:
            proba[repeated] = final.proba
    return Scores(
        task=pooled.task,
        y_true=pooled.y_true,
        predicted=predicted,
        proba=proba,
        classes=pooled.classes,
    )
