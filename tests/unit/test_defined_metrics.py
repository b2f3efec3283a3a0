"""A window's labels can leave a metric undefined; monitoring must then never judge it."""

import numpy as np

from pgmlops.domain.monitoring.defined_metrics import undefined_metrics

CLASSES = ["0", "1"]


def labels(*values: str) -> np.ndarray:
    return np.array(values, dtype=object)


def test_window_without_positives_has_no_recall_and_no_auc():
    undefined = undefined_metrics("binary", labels("0", "0", "0"), labels("0", "1", "0"), CLASSES)
    assert set(undefined) == {"recall", "roc_auc", "pr_auc"}
    assert "no label is the positive class '1'" in undefined["recall"]


def test_f1_and_precision_are_undefined_when_nothing_is_positive_or_flagged():
    undefined = undefined_metrics("binary", labels("0", "0"), labels("0", "0"), CLASSES)
    assert set(undefined) == {"recall", "roc_auc", "pr_auc", "f1", "precision"}


def test_window_of_only_positives_has_no_auc_but_keeps_recall():
    undefined = undefined_metrics("binary", labels("1", "1"), labels("1", "0"), CLASSES)
    assert set(undefined) == {"roc_auc", "pr_auc"}


def test_one_positive_label_leaves_every_metric_defined():
    assert undefined_metrics("binary", labels("0", "1", "0"), labels("0", "1", "1"), CLASSES) == {}


def test_regression_and_multiclass_are_not_affected():
    assert undefined_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0]), None) == {}
    assert undefined_metrics("multiclass", labels("a"), labels("b"), ["a", "b", "c"]) == {}
