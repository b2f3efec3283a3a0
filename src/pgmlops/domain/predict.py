"""Turn a fitted pipeline's raw output into labels and probabilities the card describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.metrics import Scores
from pgmlops.domain.registry.card import ModelCard


@dataclass(frozen=True)
class Outputs:
    """Predictions for a batch: labels (or values) and, for classifiers, probabilities."""

    predicted: np.ndarray
    proba: np.ndarray | None  # binary: (n,) P(positive); multiclass: (n, k) in card.classes order


def class_columns(model_classes: Any, classes: list[str]) -> np.ndarray:
    """Indices that reorder the estimator's probability columns into the card's class order."""
    have = [str(c) for c in model_classes]
    return np.array([have.index(c) for c in classes])


def labels_from_proba(card: ModelCard, proba: np.ndarray) -> np.ndarray:
    """Binary: positive at or above the tuned threshold; multiclass: the most probable class."""
    classes = np.array(card.classes or [], dtype=object)
    if card.task == "binary":
        threshold = 0.5 if card.threshold is None else card.threshold
        return np.where(proba >= threshold, classes[1], classes[0])
    return classes[np.argmax(proba, axis=1)]


def predict_outputs(pipeline: Any, card: ModelCard, x: pd.DataFrame) -> Outputs:
    """Run the pipeline on coerced features and shape the answer by task."""
    if card.task == "regression":
        return Outputs(predicted=np.asarray(pipeline.predict(x), dtype=float), proba=None)
    raw = np.asarray(pipeline.predict_proba(x), dtype=float)
    proba = raw[:, class_columns(pipeline.classes_, card.classes or [])]
    if card.task == "binary":
        proba = proba[:, 1]
    return Outputs(predicted=labels_from_proba(card, proba), proba=proba)


def to_scores(card: ModelCard, outputs: Outputs, y_true: np.ndarray) -> Scores:
    """Pair a batch's outputs with the truth for metrics and promotion gates."""
    if card.task == "regression":
        return Scores(
            task="regression", y_true=np.asarray(y_true, float), predicted=outputs.predicted
        )
    return Scores(
        task=card.task,
        y_true=np.asarray(y_true).astype(str),
        predicted=outputs.predicted.astype(str),
        proba=outputs.proba,
        classes=tuple(card.classes or ()),
    )


def baseline_scores(
    task: str, y_train: np.ndarray, y_true: np.ndarray, classes: list[str] | None
) -> Scores:
    """A model that ignores the features: the training prior (or mean) for every row."""
    n = len(y_true)
    if task == "regression":
        mean = float(np.mean(np.asarray(y_train, dtype=float)))
        return Scores(
            task="regression", y_true=np.asarray(y_true, float), predicted=np.full(n, mean)
        )
    labels = list(classes or [])
    train = np.asarray(y_train).astype(str)
    prior = np.array([(train == c).mean() for c in labels])
    majority = labels[int(np.argmax(prior))]
    proba = np.tile(prior, (n, 1)) if task == "multiclass" else np.full(n, prior[1])
    return Scores(
        task=task,  # type: ignore[arg-type]
        y_true=np.asarray(y_true).astype(str),
        predicted=np.full(n, majority, dtype=object).astype(str),
        proba=proba,
        classes=tuple(labels),
    )
