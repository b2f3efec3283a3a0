"""Choosing a binary model's decision threshold on validation probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from pgmlops.domain.policies import ThresholdPolicy as ThresholdPolicy

# Used whenever the data cannot inform a choice (a single class in the validation rows).
DEFAULT_THRESHOLD = 0.5


def tune_threshold(
    y_true_positive: np.ndarray, proba: np.ndarray, policy: ThresholdPolicy
) -> float:
    """The threshold in [0, 1] that best meets the policy's objective on these rows.

    - ``f1``: the threshold with the highest F1.
    - ``youden``: the threshold maximising TPR - FPR (Youden's J).
    - ``precision_at_recall``: the best precision among thresholds whose recall is at least
      ``min_recall``; if none reaches it, the threshold with the highest recall. (With
      scikit-learn's curve the lowest score always gives recall 1, so the fallback only
      guards against a future curve that drops that point.)
    - ``fixed``: ``value`` as given.

    Without both classes in the rows there is nothing to trade off, so the result is 0.5
    (or ``value`` for ``fixed``).
    """
    if policy.objective == "fixed":
        return float(policy.value)
    truth = np.asarray(y_true_positive).astype(bool)
    scores = np.asarray(proba, dtype=float)
    if truth.shape != scores.shape or truth.ndim != 1:
        raise ValueError(f"labels {truth.shape} and probabilities {scores.shape} must be 1-D alike")
    if truth.all() or not truth.any():
        return DEFAULT_THRESHOLD
    if policy.objective == "youden":
        fpr, tpr, thresholds = roc_curve(truth, scores)
        # Index 0 is the "predict nothing" point at +inf; it never makes a usable threshold.
        best = 1 + int(np.argmax((tpr - fpr)[1:]))
        return _clip(thresholds[best])
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    # The curve's last point (precision 1, recall 0) has no threshold; drop it.
    precision, recall = precision[:-1], recall[:-1]
    if policy.objective == "f1":
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        return _clip(thresholds[int(np.argmax(f1))])
    eligible = recall >= policy.min_recall
    if not eligible.any():
        return _clip(thresholds[int(np.argmax(recall))])
    best = int(np.argmax(np.where(eligible, precision, -1.0)))
    return _clip(thresholds[best])


def _clip(threshold: float) -> float:
    return float(min(max(threshold, 0.0), 1.0))
