"""Decision threshold tuning: each objective picks the threshold it promises."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from pgmlops.domain.training.threshold import ThresholdPolicy, tune_threshold


@pytest.fixture
def noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, size=2000)
    truth = rng.random(2000) < p
    return truth, p


def _every_cut(truth: np.ndarray, proba: np.ndarray) -> dict[str, np.ndarray]:
    """Brute force: confusion counts at every distinct score used as the threshold."""
    cuts = np.unique(proba)
    predicted = proba[None, :] >= cuts[:, None]
    tp = (predicted & truth).sum(axis=1)
    fp = (predicted & ~truth).sum(axis=1)
    fn = (~predicted & truth).sum(axis=1)
    return {
        "cut": cuts,
        "precision": tp / np.maximum(tp + fp, 1),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "youden": tp / truth.sum() - fp / (~truth).sum(),
    }


def test_f1_objective_picks_the_threshold_with_the_best_f1(noisy):
    truth, proba = noisy
    chosen = tune_threshold(truth, proba, ThresholdPolicy(objective="f1"))
    best = _every_cut(truth, proba)["f1"].max()
    assert f1_score(truth, proba >= chosen) == pytest.approx(best)
    assert f1_score(truth, proba >= 0.5) < best  # the default cut-off would be worse here


def test_youden_objective_maximises_tpr_minus_fpr(noisy):
    truth, proba = noisy

    def youden(t: float) -> float:
        predicted = proba >= t
        return predicted[truth].mean() - predicted[~truth].mean()

    chosen = tune_threshold(truth, proba, ThresholdPolicy(objective="youden"))
    best = _every_cut(truth, proba)["youden"].max()
    assert youden(chosen) == pytest.approx(best)


def test_precision_at_recall_keeps_recall_and_maximises_precision(noisy):
    truth, proba = noisy
    policy = ThresholdPolicy(objective="precision_at_recall", min_recall=0.9)
    chosen = tune_threshold(truth, proba, policy)
    assert recall_score(truth, proba >= chosen) >= 0.9
    cuts = _every_cut(truth, proba)
    best = cuts["precision"][cuts["recall"] >= 0.9].max()
    assert precision_score(truth, proba >= chosen) == pytest.approx(best)


def test_fixed_objective_returns_the_configured_value(noisy):
    truth, proba = noisy
    assert tune_threshold(truth, proba, ThresholdPolicy(objective="fixed", value=0.3)) == 0.3


def test_separable_classes_get_a_threshold_between_them():
    truth = np.array([0, 0, 0, 1, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    for objective in ("f1", "youden", "precision_at_recall"):
        chosen = tune_threshold(truth, proba, ThresholdPolicy(objective=objective))
        assert 0.3 < chosen <= 0.7, objective


def test_falls_back_to_one_half_without_both_classes():
    proba = np.array([0.2, 0.9, 0.4])
    for objective in ("f1", "youden", "precision_at_recall"):
        policy = ThresholdPolicy(objective=objective)
        assert tune_threshold(np.zeros(3, dtype=bool), proba, policy) == 0.5
        assert tune_threshold(np.ones(3, dtype=bool), proba, policy) == 0.5


def test_threshold_is_a_plain_float_in_the_unit_interval(noisy):
    truth, proba = noisy
    for objective in ("f1", "youden", "precision_at_recall", "fixed"):
        chosen = tune_threshold(truth, proba, ThresholdPolicy(objective=objective))
        assert type(chosen) is float and 0.0 <= chosen <= 1.0


def test_policy_refuses_values_outside_their_range():
    with pytest.raises(pydantic.ValidationError, match="min_recall"):
        ThresholdPolicy(min_recall=1.5)
    with pytest.raises(pydantic.ValidationError, match="value"):
        ThresholdPolicy(objective="fixed", value=-0.1)
    with pytest.raises(pydantic.ValidationError, match="objective"):
        ThresholdPolicy(objective="accuracy")
    with pytest.raises(pydantic.ValidationError, match="min_recal"):
        ThresholdPolicy(min_recal=0.9)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="1-D alike"):
        tune_threshold(np.array([0, 1]), np.array([0.1, 0.2, 0.3]), ThresholdPolicy())
