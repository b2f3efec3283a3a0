"""Model metrics per task, computed with scikit-learn, plus a vectorised form for bootstraps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
from sklearn import metrics as skm

# The names live with the policies (no scikit-learn there); they are part of this API too.
from pgmlops.domain.policies import _METRICS, metric_names
from pgmlops.domain.policies import LOWER_IS_BETTER as LOWER_IS_BETTER
from pgmlops.domain.policies import PRIMARY_METRIC as PRIMARY_METRIC
from pgmlops.domain.policies import check_metric as check_metric
from pgmlops.domain.schema import Task
from pgmlops.errors import ConfigError

_ALL_METRICS: frozenset[str] = frozenset(m for names in _METRICS.values() for m in names)
_NEEDS_PROBA: frozenset[str] = frozenset({"roc_auc", "pr_auc", "log_loss", "brier", "roc_auc_ovr"})
# Binary metrics of the labels cut at a threshold, rather than of the probabilities.
THRESHOLD_METRICS: frozenset[str] = frozenset({"recall", "precision", "f1", "accuracy"})


@dataclass(frozen=True, eq=False)
class Scores:
    """What a model produced on a set of rows, plus the truth for those rows.

    Classification labels are strings; ``predicted`` holds the labels the model returned
    (binary: already cut at its threshold). ``proba`` is P(classes[1]) with shape (n,) for
    binary — a 2-column ``predict_proba`` output is accepted and reduced to that column —
    and (n, k) in ``classes`` order for multiclass. It may be None for a model without
    probabilities, in which case the probability metrics are nan.
    """

    task: Task
    y_true: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in get_args(Task):
            raise ValueError(f"Scores.task must be one of {get_args(Task)}, got {self.task!r}")
        n = len(self.y_true)
        if n == 0:
            raise ValueError("Scores needs at least one row")
        if len(self.predicted) != n:
            raise ValueError(f"Scores: {n} true values but {len(self.predicted)} predictions")
        if self.task == "regression":
            self._set("y_true", np.asarray(self.y_true, dtype=float))
            self._set("predicted", np.asarray(self.predicted, dtype=float))
            if self.proba is not None:
                raise ValueError("Scores: a regression model has no class probabilities")
            return
        if self.classes is None:
            raise ValueError(f"Scores: task {self.task!r} needs the model's classes")
        classes = tuple(str(c) for c in self.classes)
        self._set("classes", classes)
        if self.task == "binary" and len(classes) != 2:
            raise ValueError(f"Scores: a binary model has 2 classes, got {len(classes)}")
        self._set("y_true", np.asarray(self.y_true).astype(str))
        self._set("predicted", np.asarray(self.predicted).astype(str))
        unknown = (set(self.y_true.tolist()) | set(self.predicted.tolist())) - set(classes)
        if unknown:
            shown = ", ".join(repr(u) for u in sorted(unknown)[:5])
            raise ValueError(f"Scores: label(s) {shown} are not among classes {list(classes)}")
        if self.proba is not None:
            self._set("proba", self._checked_proba(np.asarray(self.proba, dtype=float), n))

    def _set(self, name: str, value: object) -> None:
        # Normalising inputs once here keeps every metric free of dtype guesswork.
        object.__setattr__(self, name, value)

    def _checked_proba(self, proba: np.ndarray, n: int) -> np.ndarray:
        k = len(self.classes or ())
        if self.task == "binary" and proba.ndim == 2 and proba.shape[1] == 2:
            proba = proba[:, 1]
        expected = (n,) if self.task == "binary" else (n, k)
        if proba.shape != expected:
            raise ValueError(f"Scores: proba has shape {proba.shape}, expected {expected}")
        return proba

    @property
    def positive(self) -> np.ndarray:
        """Binary truth as booleans (True = classes[1])."""
        return self.y_true == self._positive_label()

    @property
    def predicted_positive(self) -> np.ndarray:
        """Binary predictions as booleans (True = classes[1])."""
        return self.predicted == self._positive_label()

    def _positive_label(self) -> str:
        if self.task != "binary" or self.classes is None:
            raise ValueError("only binary Scores have a positive class")
        return self.classes[1]

    def __len__(self) -> int:
        return len(self.y_true)

    def take(self, rows: np.ndarray) -> Scores:
        """The same scores restricted to (or resampled by) the given row indices."""
        return Scores(
            task=self.task,
            y_true=self.y_true[rows],
            predicted=self.predicted[rows],
            proba=None if self.proba is None else self.proba[rows],
            classes=self.classes,
        )


def metric_value(name: str, scores: Scores) -> float:
    """One metric on the scores; nan when it is undefined on these rows (see `evaluate`)."""
    check_metric(name, scores.task)
    if name in _NEEDS_PROBA and scores.proba is None:
        return float("nan")
    if scores.task == "regression":
        return _regression(name, scores)
    if scores.task == "binary":
        return _binary(name, scores)
    return _multiclass(name, scores)


def evaluate(scores: Scores) -> dict[str, float]:
    """All metrics of the task as plain floats.

    Undefined values are nan rather than errors, so a small holdout never crashes
    evaluation: roc_auc and pr_auc when the rows hold a single class, roc_auc_ovr when no
    class has both members and non-members, and every probability metric without proba.
    Precision/recall/F1 with an empty denominator are 0 (scikit-learn's zero_division=0).
    """
    return {name: metric_value(name, scores) for name in metric_names(scores.task)}


def alert_rate(scores: Scores) -> float:
    """Share of rows a binary model flags positive at its own threshold."""
    return float(scores.predicted_positive.mean())


def at_alert_rate(scores: Scores, rate: float) -> Scores:
    """Binary scores re-cut on their proba so that about `rate` of the rows are flagged.

    The cut is a real threshold (rows with proba >= cut are positive): among the cuts the
    scores allow, the one whose flagged count is nearest round(rate * n); tied scores are
    never split, and of two equally near counts the smaller is taken. Comparing two models
    this way judges their ranking at the same workload, not their threshold choices.
    """
    if scores.task != "binary" or scores.proba is None or scores.classes is None:
        raise ValueError("re-cutting at an alert rate needs binary scores with proba")
    wanted = round(min(max(rate, 0.0), 1.0) * len(scores))
    values = np.unique(scores.proba)[::-1]  # distinct cuts, highest first
    flagged = np.r_[0, np.searchsorted(np.sort(-scores.proba), -values, side="right")]
    best = int(np.argmin(np.abs(flagged - wanted)))  # first = fewest flagged on a tie
    positive = scores.proba >= values[best - 1] if best > 0 else np.zeros(len(scores), bool)
    labels = np.where(positive, scores.classes[1], scores.classes[0])
    return Scores("binary", scores.y_true, labels, scores.proba, scores.classes)


def confusion(scores: Scores) -> list[list[int]]:
    """Confusion matrix: rows are true classes, columns predicted, both in classes order."""
    if scores.task == "regression" or scores.classes is None:
        raise ValueError("a confusion matrix needs a classification model")
    labels = list(scores.classes)
    matrix = skm.confusion_matrix(scores.y_true, scores.predicted, labels=labels)
    return [[int(v) for v in row] for row in matrix]


def improvement(name: str, candidate: float, champion: float) -> float:
    """Candidate minus champion, signed so that a positive number is always better."""
    if name not in _ALL_METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; expected one of {', '.join(sorted(_ALL_METRICS))}"
        )
    delta = candidate - champion
    return -delta if name in LOWER_IS_BETTER else delta


def _regression(name: str, s: Scores) -> float:
    if name == "rmse":
        return float(skm.root_mean_squared_error(s.y_true, s.predicted))
    if name == "mae":
        return float(skm.mean_absolute_error(s.y_true, s.predicted))
    if len(s) < 2:
        return float("nan")
    return float(skm.r2_score(s.y_true, s.predicted))


def _binary(name: str, s: Scores) -> float:
    truth, pred = s.positive, s.predicted_positive
    if name == "recall":
        return float(skm.recall_score(truth, pred, zero_division=0))
    if name == "precision":
        return float(skm.precision_score(truth, pred, zero_division=0))
    if name == "f1":
        return float(skm.f1_score(truth, pred, zero_division=0))
    if name == "accuracy":
        return float(skm.accuracy_score(truth, pred))
    assert s.proba is not None
    if name == "log_loss":
        return float(skm.log_loss(truth.astype(int), s.proba, labels=[0, 1]))
    if name == "brier":
        return float(skm.brier_score_loss(truth.astype(int), s.proba, pos_label=1))
    if truth.all() or not truth.any():
        return float("nan")
    if name == "roc_auc":
        return float(skm.roc_auc_score(truth, s.proba))
    return float(skm.average_precision_score(truth, s.proba))


def _multiclass(name: str, s: Scores) -> float:
    if name == "accuracy":
        return float(skm.accuracy_score(s.y_true, s.predicted))
    if name in ("f1_macro", "f1_weighted"):
        average = name.removeprefix("f1_")
        return float(skm.f1_score(s.y_true, s.predicted, average=average, zero_division=0))
    assert s.proba is not None and s.classes is not None
    if name == "log_loss":
        return float(skm.log_loss(s.y_true, _row_normalised(s.proba), labels=list(s.classes)))
    # One-vs-rest macro AUC over the classes that can be scored on these rows; scikit-learn's
    # multi_class="ovr" returns nan as soon as one class is missing from a small holdout.
    per_class = [
        skm.roc_auc_score(member, s.proba[:, k])
        for k, label in enumerate(s.classes)
        if 0 < (member := s.y_true == label).sum() < len(s)
    ]
    return float(np.mean(per_class)) if per_class else float("nan")


def _row_normalised(proba: np.ndarray) -> np.ndarray:
    # Float32 models drift off 1.0; scikit-learn only warns, so renormalise for a true loss.
    total = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, total, out=np.full_like(proba, 1 / proba.shape[1]), where=total > 0)


# --- the same metrics under row counts, many resamples at once -------------------------


def resampled_metric(name: str, scores: Scores, counts: np.ndarray) -> np.ndarray:
    """The metric on each resample, where counts[b, i] is how often row i is drawn in resample b.

    Equal to ``metric_value(name, scores.take(rows_of_b))`` for each b, but computed as
    matrix products (and running rank sums for the AUCs): a 1000-round bootstrap over 20k
    rows costs about a second per model instead of thousands of scikit-learn calls.
    """
    check_metric(name, scores.task)
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    if counts.shape[1] != len(scores):
        raise ValueError(f"counts has {counts.shape[1]} columns for {len(scores)} rows")
    if name in _NEEDS_PROBA and scores.proba is None:
        return np.full(counts.shape[0], np.nan)
    total = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if scores.task == "regression":
            return _resampled_regression(name, scores, counts, total)
        if name == "accuracy":
            return counts @ (scores.y_true == scores.predicted) / total
        if scores.task == "binary":
            return _resampled_binary(name, scores, counts, total)
        return _resampled_multiclass(name, scores, counts, total)


def _resampled_regression(name: str, s: Scores, c: np.ndarray, total: np.ndarray) -> np.ndarray:
    err = s.y_true - s.predicted
    if name == "rmse":
        return np.sqrt(c @ err**2 / total)
    if name == "mae":
        return c @ np.abs(err) / total
    centre = s.y_true.mean()  # centring first keeps the variance free of cancellation
    spread = c @ (s.y_true - centre) ** 2
    mean_b = c @ (s.y_true - centre) / total
    ss_tot = spread - total * mean_b**2
    ss_tot = np.where(ss_tot <= 1e-12 * spread, 0.0, ss_tot)  # rounding residue of a constant truth
    ss_res = c @ err**2
    # scikit-learn's force_finite convention for a constant truth: 1 if perfect, else 0.
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    r2 = np.where((ss_tot == 0) & (ss_res == 0), 1.0, r2)
    return np.where(total >= 2, r2, np.nan)


def _resampled_binary(name: str, s: Scores, c: np.ndarray, total: np.ndarray) -> np.ndarray:
    truth, pred = s.positive, s.predicted_positive
    if name in ("recall", "precision", "f1"):
        tp = c @ (truth & pred)
        fp = c @ (~truth & pred)
        fn = c @ (truth & ~pred)
        denom = {"recall": tp + fn, "precision": tp + fp, "f1": 2 * tp + fp + fn}[name]
        numer = 2 * tp if name == "f1" else tp
        return np.where(denom > 0, numer / np.where(denom > 0, denom, 1), 0.0)
    assert s.proba is not None
    if name == "log_loss":
        eps = np.finfo(float).eps
        p = np.clip(s.proba, eps, 1 - eps)
        return c @ -np.where(truth, np.log(p), np.log1p(-p)) / total
    if name == "brier":
        return c @ (s.proba - truth) ** 2 / total
    if name == "roc_auc":
        return _weighted_auc(truth, s.proba, c)
    return _weighted_average_precision(truth, s.proba, c)


def _resampled_multiclass(name: str, s: Scores, c: np.ndarray, total: np.ndarray) -> np.ndarray:
    classes = np.asarray(s.classes)
    truth = s.y_true[:, None] == classes[None, :]
    if name in ("f1_macro", "f1_weighted"):
        pred = s.predicted[:, None] == classes[None, :]
        tp = c @ (truth & pred)
        support = c @ truth
        denom = support + c @ pred  # = 2tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        if name == "f1_weighted":
            return (f1 * support).sum(axis=1) / support.sum(axis=1)
        # Like scikit-learn without `labels`: average over classes seen in truth or predictions.
        present = denom > 0
        return (f1 * present).sum(axis=1) / present.sum(axis=1)
    assert s.proba is not None
    if name == "log_loss":
        eps = np.finfo(float).eps
        p = np.clip(_row_normalised(s.proba)[truth], eps, 1 - eps)
        return c @ -np.log(p) / total
    per_class = np.stack(
        [_weighted_auc(truth[:, k], s.proba[:, k], c) for k in range(len(classes))], axis=1
    )
    scored = ~np.isnan(per_class)
    summed = np.where(scored, per_class, 0.0).sum(axis=1)
    return np.where(scored.any(axis=1), summed / np.maximum(scored.sum(axis=1), 1), np.nan)


@dataclass(frozen=True, eq=False)
class _Ranked:
    """Resampled counts in score order, with running totals and each row's tie group."""

    pos: np.ndarray  # (b, n) count of each row if it is positive, else 0
    neg: np.ndarray
    cum_pos: np.ndarray  # inclusive running totals along the score order
    cum_neg: np.ndarray
    first: np.ndarray | None  # index of the first / last row of each row's tie group;
    last: np.ndarray | None  # None when every score is distinct (each row is its own group)


def _ranked(truth: np.ndarray, score: np.ndarray, c: np.ndarray, descending: bool) -> _Ranked:
    # Running sums over a column permutation replace per-group reductions (np.add.reduceat
    # on a wide matrix is several times slower); ties only cost two gathers when present.
    order = np.argsort(-score if descending else score, kind="stable")
    ordered = score[order]
    weights = np.take(c, order, axis=1)
    pos = weights * truth[order]
    neg = weights - pos
    first = last = None
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    if not starts.all():
        n = len(score)
        index = np.arange(n)
        first = np.maximum.accumulate(np.where(starts, index, 0))
        ends = np.r_[starts[1:], True]
        last = np.minimum.accumulate(np.where(ends, index, n)[::-1])[::-1]
    return _Ranked(pos, neg, np.cumsum(pos, axis=1), np.cumsum(neg, axis=1), first, last)


def _weighted_auc(truth: np.ndarray, score: np.ndarray, c: np.ndarray) -> np.ndarray:
    # Mann-Whitney: each positive beats the negatives below it and ties count half.
    r = _ranked(truth, score, c, descending=False)
    below = r.cum_neg - r.neg
    if r.first is None or r.last is None:
        beaten = below + 0.5 * r.neg
    else:
        beaten = 0.5 * (below[:, r.first] + r.cum_neg[:, r.last])
    wins = (r.pos * beaten).sum(axis=1)
    pairs = r.cum_pos[:, -1] * r.cum_neg[:, -1]
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


def _weighted_average_precision(truth: np.ndarray, score: np.ndarray, c: np.ndarray) -> np.ndarray:
    # Step-wise AP as scikit-learn defines it: sum over thresholds of recall gain x precision,
    # where a threshold admits a whole tie group at once.
    r = _ranked(truth, score, c, descending=True)
    tp, fp = r.cum_pos, r.cum_neg
    if r.last is not None:
        tp, fp = tp[:, r.last], fp[:, r.last]
    precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
    n_pos, n_neg = r.cum_pos[:, -1], r.cum_neg[:, -1]
    ap = (r.pos * precision).sum(axis=1) / np.where(n_pos > 0, n_pos, 1)
    return np.where((n_pos > 0) & (n_neg > 0), ap, np.nan)
