"""Estimating performance without labels: close to the labelled truth when calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from pgmlops.domain.monitoring.performance import (
    Calibration,
    calibrate,
    confidence,
    estimate_loss,
    estimate_performance,
    expected_auc,
    fit_calibration,
    fit_loss_models,
)
from pgmlops.domain.schema import FeatureSchema, FeatureSpec

IDENTITY = Calibration(kind="binary", classes=["0", "1"], x=[[0.0, 1.0]], y=[[0.0, 1.0]])
N = 20_000


def labelled_binary(truth: np.ndarray, raw: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = raw >= threshold
    return {
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted, zero_division=0),
        "recall": recall_score(truth, predicted, zero_division=0),
        "f1": f1_score(truth, predicted, zero_division=0),
        "roc_auc": roc_auc_score(truth, raw),
    }


def assert_close(estimated: dict[str, float], actual: dict[str, float], tolerance: float):
    assert estimated.keys() == actual.keys()
    for name, value in actual.items():
        assert estimated[name] == pytest.approx(value, abs=tolerance), name


def calibrated_world(seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities p, and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-0.5, 1.5, size=n)))
    return p, rng.random(n) < p


def overconfident(p: np.ndarray) -> np.ndarray:
    """A mildly miscalibrated model: same ranking, logits stretched and shifted."""
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-(1.6 * logit + 0.4)))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_estimates_match_the_labelled_truth_when_probabilities_are_calibrated(threshold):
    p, truth = calibrated_world(seed=1)
    estimated = estimate_performance(IDENTITY, p, threshold)
    assert_close(estimated, labelled_binary(truth, p, threshold), tolerance=0.02)


def test_fitted_calibration_corrects_a_mildly_miscalibrated_model():
    p, truth = calibrated_world(seed=2)
    raw = overconfident(p)
    half = N // 2
    cal = fit_calibration(np.where(truth[:half], "1", "0"), raw[:half], ["0", "1"])
    actual = labelled_binary(truth[half:], raw[half:], 0.5)
    assert_close(estimate_performance(cal, raw[half:], 0.5), actual, tolerance=0.03)
    # Taken at face value the same probabilities mislead: the calibration is what helps.
    naive = estimate_performance(IDENTITY, raw[half:], 0.5)
    assert max(abs(naive[k] - actual[k]) for k in actual) > 0.03


def test_multiclass_estimates_match_the_labelled_truth():
    rng = np.random.default_rng(3)
    classes = ["a", "b", "c"]
    logits = rng.normal(size=(N, 3)) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    drawn = (rng.random(N)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    truth = np.array(classes)[drawn]
    predicted = np.array(classes)[p.argmax(axis=1)]
    identity = Calibration(
        kind="multiclass", classes=classes, x=[[0.0, 1.0]] * 3, y=[[0.0, 1.0]] * 3
    )
    estimated = estimate_performance(identity, p, None)
    ovr = np.mean([roc_auc_score(truth == c, p[:, k]) for k, c in enumerate(classes)])
    actual = {
        "accuracy": accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro"),
        "f1_weighted": f1_score(truth, predicted, average="weighted"),
        "roc_auc_ovr": ovr,
    }
    assert_close(estimated, actual, tolerance=0.02)


def test_multiclass_calibration_rows_sum_to_one_and_improve_the_estimate():
    rng = np.random.default_rng(4)
    classes = ["x", "y", "z"]
    logits = rng.normal(size=(N, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    drawn = (rng.random(N)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    truth = np.array(classes)[drawn]
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)  # overconfident
    half = N // 2
    cal = fit_calibration(truth[:half], sharp[:half], classes)
    assert cal.kind == "multiclass" and len(cal.x) == 3
    calibrated = calibrate(cal, sharp[half:])
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    actual = accuracy_score(truth[half:], np.array(classes)[sharp[half:].argmax(axis=1)])
    assert estimate_performance(cal, sharp[half:], None)["accuracy"] == pytest.approx(
        actual, abs=0.03
    )


def test_expected_auc_equals_the_labelled_auc_when_outcomes_are_certain():
    rng = np.random.default_rng(5)
    score = rng.random(500).round(2)  # with ties
    truth = rng.random(500) < score
    assert expected_auc(score, truth.astype(float)) == pytest.approx(roc_auc_score(truth, score))


def test_expected_auc_is_one_half_for_an_uninformative_score():
    p = np.random.default_rng(6).random(1000)
    assert expected_auc(np.zeros(1000), p) == pytest.approx(0.5)


def test_calibration_survives_a_round_trip_through_the_model_card_json():
    p, truth = calibrated_world(seed=7, n=2000)
    cal = fit_calibration(np.where(truth, "yes", "no"), overconfident(p), ["no", "yes"])
    restored = Calibration.model_validate_json(cal.model_dump_json())
    np.testing.assert_array_equal(calibrate(restored, p), calibrate(cal, p))


def test_calibrated_probabilities_are_monotone_and_clipped_to_the_seen_range():
    p, truth = calibrated_world(seed=8, n=2000)
    cal = fit_calibration(truth.astype(int), overconfident(p), ["0", "1"])
    grid = np.linspace(-0.5, 1.5, 101)
    mapped = calibrate(cal, grid)
    assert np.all(np.diff(mapped) >= 0)
    assert mapped.min() >= 0 and mapped.max() <= 1
    assert mapped[0] == mapped[1]  # below the fitted range: clipped, not extrapolated


def test_binary_accepts_two_column_probabilities():
    p, _ = calibrated_world(seed=9, n=100)
    two_columns = np.column_stack([1 - p, p])
    assert estimate_performance(IDENTITY, two_columns, 0.5) == estimate_performance(
        IDENTITY, p, 0.5
    )


def test_nothing_to_estimate_on_no_rows():
    estimated = estimate_performance(IDENTITY, np.array([]), 0.5)
    assert all(np.isnan(v) for v in estimated.values())


def test_wrong_probability_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        calibrate(
            Calibration(kind="multiclass", classes=["a", "b", "c"], x=[[0, 1]] * 3, y=[[0, 1]] * 3),
            np.ones((4, 2)),
        )


def test_confidence_is_distance_from_a_coin_flip_or_the_top_probability():
    np.testing.assert_allclose(confidence(np.array([0.5, 0.9, 0.0]), "binary"), [0.0, 0.8, 1.0])
    np.testing.assert_allclose(confidence(np.array([[0.2, 0.8], [0.5, 0.5]]), "binary"), [0.6, 0])
    multiclass = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    np.testing.assert_allclose(confidence(multiclass, "multiclass"), [0.5, 0.9])
    with pytest.raises(ValueError, match="regression"):
        confidence(np.array([1.0]), "regression")


def test_direct_loss_estimation_follows_the_error_where_it_grows():
    """DLE learns where the model errs; a window of noisier rows gets a larger estimate."""
    schema = FeatureSchema(
        task="regression",
        target="y",
        features=[FeatureSpec(name="x", kind="numeric"), FeatureSpec(name="g", kind="categorical")],
    )

    def rows(n: int, seed: int, low: float) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.uniform(low, 1.0, n)
        g = rng.choice(["a", "b"], n)
        predicted = 2 * x
        truth = predicted + rng.normal(size=n) * x * np.where(g == "a", 1.0, 2.0)
        return pd.DataFrame({"x": x, "g": g}), predicted, truth

    models = fit_loss_models(*rows(3_000, 1, 0.0), schema, seed=0)
    estimates = []
    for seed, low in ((2, 0.0), (3, 0.7)):  # the second window lies where errors are larger
        x, predicted, truth = rows(2_000, seed, low)
        estimated, per_row = estimate_loss(models, x, predicted, schema)
        error = truth - predicted
        assert estimated["mae"] == pytest.approx(np.abs(error).mean(), rel=0.1)
        assert estimated["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=0.1)
        assert per_row.shape == (2_000,)
        estimates.append(estimated["mae"])
    assert estimates[1] > 1.4 * estimates[0]


def test_the_estimates_null_is_narrower_than_the_labelled_metrics_and_centred() -> None:
    from pgmlops.domain.intervals import null_differences
    from pgmlops.domain.metrics import Scores
    from pgmlops.domain.monitoring.performance import estimate_null

    p, truth = calibrated_world(21, n=8_000)
    scores = Scores(
        task="binary",
        y_true=np.where(truth, "1", "0"),
        predicted=np.where(p >= 0.5, "1", "0"),
        proba=p,
        classes=("0", "1"),
    )
    estimated = estimate_null(IDENTITY, p, None, "roc_auc", 2_000, draws=100)
    labelled = null_differences(scores, "roc_auc", 2_000, draws=100)
    # An expectation over the probabilities varies less than the labelled metric.
    assert estimated.std() < 0.6 * labelled.std()
    assert abs(estimated.mean()) < 2 * estimated.std() / np.sqrt(100) + 1e-3


def test_a_weighted_estimate_counts_each_row_as_often_as_its_weight() -> None:
    p, _ = calibrated_world(22, n=500)
    p = np.round(p, 2)  # ties, which repeated rows also make
    weights = np.random.default_rng(3).integers(0, 4, len(p))
    weighted = estimate_performance(IDENTITY, p, 0.4, weights)
    repeated = estimate_performance(IDENTITY, np.repeat(p, weights), 0.4)
    for metric, value in repeated.items():
        assert weighted[metric] == pytest.approx(value, rel=1e-12), metric


def test_the_estimates_null_costs_the_same_at_ten_million_rows() -> None:
    from pgmlops.domain.monitoring.performance import estimate_null

    p, _ = calibrated_world(23, n=2_000)
    # Drawn as counts over the 2,000 reference rows, not as 10M indices (~1 GB, minutes).
    draws = estimate_null(IDENTITY, p, None, "roc_auc", 10_000_000, draws=20)
    assert draws.shape == (20,) and np.all(np.abs(draws) < 0.05)
