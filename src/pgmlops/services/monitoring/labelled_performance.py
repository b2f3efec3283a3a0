"""Labelled performance of one prediction window: the card's metrics on feedback labels.

Labels this model cannot be scored against are refused and counted; the metrics are compared
with the held-out outputs kept at training time, at the window's own number of labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.config import MonitoringConfig
from pgmlops.domain.kinds import Task
from pgmlops.domain.metrics import Scores, evaluate
from pgmlops.domain.monitoring.defined_metrics import undefined_metrics
from pgmlops.domain.monitoring.labelled_views import labelled_view
from pgmlops.domain.monitoring.status import judge_metrics
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.errors import DataError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.signals import (
    finite,
    metric_drop,
    metric_null,
    reference_metrics,
    reference_outputs,
    relative_drop,
    window_proba,
)
from pgmlops.store.monitoring.prediction_windows import PredictionWindow


def labelled_performance(
    ctx: Context, mv: ModelVersion, window: PredictionWindow, settings: MonitoringConfig
) -> dict[str, Any]:
    """The card's metrics on the window's labelled rows, against the reference interval.

    Degraded only with ``min_labels`` labels, a shortfall significant at ``alarm_alpha``
    for a window of that many labels, and a relative drop beyond ``performance_drop``.
    """
    card = mv.card
    labels = window.outputs["label"]
    has = labels.notna().to_numpy()
    y_true, good, bad_examples = valid_labels(labels[has], card.task, card.classes)
    n_bad = int((~good).sum())
    rows = np.flatnonzero(has)[good]
    if len(rows) == 0:
        return judge_labelled(ctx, mv, 0, None, n_bad, bad_examples, settings)
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
    undefined = undefined_metrics(card.task, y_true[good], predicted, card.classes)
    block = judge_labelled(
        ctx,
        mv,
        len(rows),
        metrics,
        n_bad,
        bad_examples,
        settings,
        undefined=undefined,
        class_counts=class_counts(y_true[good], card.classes),
    )
    block["view"] = labelled_view(card.task, y_true[good], predicted, card.classes)
    return block


def judge_labelled(
    ctx: Context,
    mv: ModelVersion,
    n_labels: int,
    metrics: dict[str, Any] | None,
    n_bad: int,
    bad_examples: list[str],
    settings: MonitoringConfig,
    *,
    undefined: dict[str, str] | None = None,
    class_counts: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The labelled-performance block for ``metrics`` measured on ``n_labels`` labels.

    ``undefined``: metrics the window's labels leave undefined (defined_metrics.py), reported
    as null with their reason and never judged. ``class_counts``: the window's labels per
    class (the card's order); the null is then drawn at those counts (domain/intervals.py).
    """
    card = mv.card
    undefined = undefined or {}
    if metrics is not None:
        metrics = {k: None if k in undefined else v for k, v in metrics.items()}
    limit, min_labels = settings.performance_drop, settings.min_labels
    ref = reference_outputs(ctx, mv)
    ref_scores = ref.scores() if ref is not None else None
    reference = reference_metrics(mv, ref_scores) if ref_scores is not None else dict(card.metrics)
    result: dict[str, Any] = {
        "n_labels": n_labels,
        "min_labels": min_labels,
        "metric": ctx.settings.promotion.primary_for(card.task),
        "metrics": {},
        "reference": reference,
        "reference_source": "held-out rows" if ref is not None else "holdout metrics in the card",
        "reference_interval": None,
        "drop": None,
        "limit": limit,
        "alpha": settings.alarm_alpha,
        "degraded": False,
        "bad_labels": {"count": n_bad, "examples": bad_examples},
        "judged": [],
        "undefined": undefined,
    }
    if n_labels == 0 or metrics is None:
        return result
    metric = result["metric"]
    enough = n_labels >= min_labels
    result["judged"] = judge_metrics(
        metrics,
        reference,
        primary=metric,
        guards=list(ctx.settings.promotion.guards_for(card.task)),
        n_labels=n_labels,
        min_labels=min_labels,
        limit=limit,
        alpha=settings.alarm_alpha,
        null_for=None
        if ref_scores is None
        else lambda name: metric_null(mv, ref, name, n_labels, class_counts),
    )
    for row in result["judged"]:
        if row["metric"] in undefined:
            row["verdict"], row["note"] = "undefined", undefined[row["metric"]]
    if ref_scores is None:
        drop = relative_drop(metric, metrics.get(metric), reference.get(metric))
        result.update(
            metrics=metrics, drop=drop, degraded=enough and drop is not None and drop > limit
        )
        return result
    verdict = metric_drop(
        mv,
        ref,
        metric,
        n_labels,
        metrics.get(metric),
        reference.get(metric),
        settings,
        class_counts,
    )
    block = verdict.block()
    block["degraded"] = enough and verdict.degraded
    result.update(metrics=metrics, **block)
    return result


def class_counts(
    labels: np.ndarray, classes: list[str] | None, weights: np.ndarray | None = None
) -> tuple[int, ...] | None:
    """Labels per class in the card's order (each row weighted by ``weights`` if given)."""
    if not classes:
        return None
    text = np.asarray(labels).astype(str)
    w = np.ones(len(text)) if weights is None else np.asarray(weights, dtype=np.float64)
    return tuple(int(w[text == str(c)].sum()) for c in classes)


def valid_labels(
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
