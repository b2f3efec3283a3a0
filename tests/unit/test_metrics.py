"""Metrics per task: values, robustness on awkward holdouts, and the resampling shortcut."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from pgmlops.domain.metrics import (
    LOWER_IS_BETTER,
    PRIMARY_METRIC,
    Scores,
    confusion,
    evaluate,
    improvement,
    metric_names,
    metric_value,
    resampled_metric,
)
from pgmlops.errors import ConfigError

NO, YES = "no", "yes"


def binary(y_true, proba, threshold: float = 0.5) -> Scores:
    proba = np.asarray(proba, dtype=float)
    predicted = np.where(proba >= threshold, YES, NO)
    return Scores("binary", np.asarray(y_true), predicted, proba, (NO, YES))


def random_scores(task: str, n: int, seed: int) -> Scores:
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(size=n)
        return Scores("regression", y, y + rng.normal(size=n))
    if task == "binary":
        p = rng.random(n).round(2)  # rounding creates ties the rank-based AUC must handle
        return binary(np.where(rng.random(n) < p, YES, NO), p)
    classes = ("a", "b", "c")
    proba = rng.dirichlet([1, 1, 1], size=n).round(2)
    y = np.array([rng.choice(classes, p=row / row.sum()) for row in proba])
    return Scores("multiclass", y, np.array(classes)[proba.argmax(axis=1)], proba, classes)


def test_each_task_has_its_metrics_and_a_primary_among_them():
    assert metric_names("binary") == [
        "roc_auc", "pr_auc", "recall", "precision", "f1", "accuracy", "log_loss", "brier"
    ]  # fmt: skip
    assert metric_names("multiclass") == [
        "accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr", "log_loss"
    ]  # fmt: skip
    assert metric_names("regression") == ["rmse", "mae", "r2"]
    for task, primary in PRIMARY_METRIC.items():
        assert primary in metric_names(task)
    assert {"rmse", "mae", "log_loss", "brier"} == LOWER_IS_BETTER


def test_binary_metrics_on_a_hand_checked_example():
    scores = binary([NO, NO, YES, YES], [0.1, 0.4, 0.35, 0.8])
    values = evaluate(scores)
    assert values["roc_auc"] == pytest.approx(0.75)
    assert values["recall"] == pytest.approx(0.5)
    assert values["precision"] == pytest.approx(1.0)
    assert values["accuracy"] == pytest.approx(0.75)
    assert values["f1"] == pytest.approx(2 / 3)
    assert values["brier"] == pytest.approx((0.01 + 0.16 + 0.65**2 + 0.04) / 4)
    assert all(type(v) is float for v in values.values())


def test_positive_class_is_the_second_of_classes():
    scores = Scores("binary", np.array(["b", "a", "a"]), np.array(["a", "a", "a"]),
                    np.array([0.9, 0.8, 0.7]), ("b", "a"))  # fmt: skip
    assert metric_value("recall", scores) == pytest.approx(1.0)
    assert metric_value("precision", scores) == pytest.approx(2 / 3)


def test_roc_auc_is_nan_not_a_crash_when_the_holdout_has_one_class():
    values = evaluate(binary([NO, NO, NO], [0.2, 0.6, 0.1]))
    assert np.isnan(values["roc_auc"])
    assert np.isnan(values["pr_auc"])
    assert values["accuracy"] == pytest.approx(2 / 3)
    assert np.isfinite(values["log_loss"]) and np.isfinite(values["brier"])


def test_precision_is_zero_when_nothing_is_predicted_positive():
    values = evaluate(binary([NO, YES, YES], [0.1, 0.2, 0.3]))
    assert values["precision"] == 0.0
    assert values["recall"] == 0.0
    assert values["f1"] == 0.0


def test_probability_metrics_are_nan_for_a_model_without_probabilities():
    scores = Scores("binary", np.array([NO, YES]), np.array([NO, YES]), None, (NO, YES))
    values = evaluate(scores)
    assert values["accuracy"] == 1.0
    assert all(np.isnan(values[m]) for m in ("roc_auc", "pr_auc", "log_loss", "brier"))


def test_a_two_column_predict_proba_is_reduced_to_the_positive_column():
    two_columns = np.array([[0.9, 0.1], [0.2, 0.8]])
    scores = Scores("binary", np.array([NO, YES]), np.array([NO, YES]), two_columns, (NO, YES))
    assert scores.proba is not None
    assert scores.proba.tolist() == [0.1, 0.8]


def test_multiclass_metrics_on_a_hand_checked_example():
    classes = ("a", "b", "c")
    y = np.array(["a", "a", "b", "c"])
    predicted = np.array(["a", "b", "b", "c"])
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    values = evaluate(Scores("multiclass", y, predicted, proba, classes))
    assert values["accuracy"] == pytest.approx(0.75)
    assert values["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert values["f1_weighted"] == pytest.approx(f1_score(y, predicted, average="weighted"))
    expected_log_loss = -np.mean(np.log([0.7, 0.3, 0.8, 0.8]))
    assert values["log_loss"] == pytest.approx(expected_log_loss)


def test_roc_auc_ovr_averages_only_the_classes_that_can_be_scored():
    classes = ("a", "b", "c")
    y = np.array(["a", "a", "b", "b"])  # "c" never occurs in this holdout
    proba = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2]])
    scores = Scores("multiclass", y, np.array(classes)[proba.argmax(axis=1)], proba, classes)
    auc_a = roc_auc_score(y == "a", proba[:, 0])
    auc_b = roc_auc_score(y == "b", proba[:, 1])
    assert metric_value("roc_auc_ovr", scores) == pytest.approx((auc_a + auc_b) / 2)


def test_regression_metrics_on_a_hand_checked_example():
    scores = Scores("regression", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    values = evaluate(scores)
    assert values["rmse"] == pytest.approx(1.0)
    assert values["mae"] == pytest.approx(0.5)
    assert values["r2"] == pytest.approx(1 - 4 / 5)


def test_unknown_metric_is_a_config_error_listing_the_valid_names():
    with pytest.raises(ConfigError, match=r"'auc'.*roc_auc, pr_auc, recall"):
        metric_value("auc", binary([NO, YES], [0.2, 0.7]))
    with pytest.raises(ConfigError, match="rmse"):
        metric_value("rmse", binary([NO, YES], [0.2, 0.7]))


def test_confusion_rows_are_truth_and_columns_predictions_in_class_order():
    scores = binary([NO, NO, YES, YES, YES], [0.9, 0.1, 0.8, 0.7, 0.2])
    assert confusion(scores) == [[1, 1], [1, 2]]
    with pytest.raises(ValueError, match="classification"):
        confusion(Scores("regression", np.array([1.0]), np.array([1.0])))


def test_improvement_is_positive_when_better_in_either_direction():
    assert improvement("roc_auc", 0.8, 0.7) == pytest.approx(0.1)
    assert improvement("rmse", 2.0, 3.0) == pytest.approx(1.0)
    assert improvement("rmse", 3.0, 2.0) == pytest.approx(-1.0)
    assert improvement("log_loss", 0.3, 0.4) > 0
    with pytest.raises(ConfigError):
        improvement("speed", 1.0, 2.0)


def test_scores_refuse_inconsistent_inputs():
    with pytest.raises(ValueError, match="2 true values but 3 predictions"):
        Scores("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="'maybe'"):
        Scores("binary", np.array(["maybe"]), np.array([NO]), None, (NO, YES))
    with pytest.raises(ValueError, match="shape"):
        Scores("binary", np.array([NO]), np.array([NO]), np.array([0.1, 0.2]), (NO, YES))
    with pytest.raises(ValueError, match="classes"):
        Scores("multiclass", np.array(["a"]), np.array(["a"]))


@pytest.mark.parametrize(
    ("task", "metric"),
    [(task, m) for task in ("binary", "multiclass", "regression") for m in metric_names(task)],
)
@pytest.mark.parametrize("n", [12, 300])
def test_resampled_metric_equals_the_metric_on_the_resampled_rows(task, metric, n):
    scores = random_scores(task, n, seed=n)
    rng = np.random.default_rng(7)
    rows = rng.integers(0, n, size=(25, n))
    counts = np.stack([np.bincount(r, minlength=n) for r in rows])
    expected = [metric_value(metric, scores.take(r)) for r in rows]
    got = resampled_metric(metric, scores, counts)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_resampled_metric_with_every_row_once_is_the_plain_metric():
    scores = random_scores("binary", 200, seed=3)
    ones = np.ones((1, 200))
    for metric in metric_names("binary"):
        assert resampled_metric(metric, scores, ones)[0] == pytest.approx(
            metric_value(metric, scores)
        )
