"""Counts in, the same statistics out: cells for drift, binned scores for performance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from pgmlops.domain.monitoring.binned_metrics import (
    ScoreBins,
    binary_metrics,
    cbpe_from_bins,
    regression_metrics,
    score_edges,
)
from pgmlops.domain.monitoring.performance import estimate_performance, fit_calibration
from pgmlops.domain.monitoring.profile import numeric_profile
from pgmlops.domain.monitoring.window_counts import (
    NumericCells,
    cell_points,
    cells_distance,
    cells_from_values,
    numeric_distance,
)


def _profile(values: np.ndarray):
    return numeric_profile("x", values, np.random.default_rng(0))


def test_cells_from_sql_codes_give_the_distance_of_the_rows() -> None:
    rng = np.random.default_rng(1)
    ref = _profile(np.round(rng.normal(size=5_000), 2))
    window = np.round(rng.normal(0.3, 1.2, size=3_000), 2)
    window[:40] = np.nan
    points = cell_points(ref)
    # What width_bucket gives: bucket b counts values >= points[b-1]; equal ones are a point.
    present = window[~np.isnan(window)]
    bucket = np.searchsorted(points, present, side="right")
    exact = (bucket > 0) & (points[np.maximum(bucket - 1, 0)] == present)
    codes = 2 * bucket - exact.astype(int)
    uniq, inverse = np.unique(codes, return_inverse=True)
    cells = NumericCells.from_codes(
        points,
        uniq,
        np.bincount(inverse).astype(float),
        np.bincount(inverse, weights=present),
        n_missing=40,
    )
    expected = numeric_distance(ref, window)
    got = cells_distance(ref, cells)
    assert got.ks == pytest.approx(expected.ks, abs=1e-12)
    assert got.psi == pytest.approx(expected.psi, rel=1e-12)
    assert got.wasserstein_norm == pytest.approx(expected.wasserstein_norm, rel=1e-9)
    assert got.missing_rate == pytest.approx(40 / 3_000)
    from_rows = cells_from_values(window, points, "x")
    assert np.array_equal(cells.at, from_rows.at)
    assert np.array_equal(cells.inside, from_rows.inside)
    assert cells.inside_sum == pytest.approx(from_rows.inside_sum, rel=1e-12, abs=1e-9)


def test_cells_distance_matches_a_direct_wasserstein_for_values_far_outside_the_grid() -> None:
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(2)
    reference = rng.normal(size=4_000)
    ref = _profile(reference)
    window = rng.normal(5.0, 1.0, size=2_000)  # mostly beyond the reference's last grid point
    w1 = wasserstein_distance(reference, window) / ref.std
    assert numeric_distance(ref, window).wasserstein_norm == pytest.approx(w1, rel=0.01)


def test_an_all_missing_window_has_no_wasserstein_and_a_full_missing_rate() -> None:
    ref = _profile(np.random.default_rng(3).normal(size=1_000))
    dist = numeric_distance(ref, np.full(500, np.nan))
    assert dist.wasserstein_norm is None and dist.missing_rate == 1.0 and dist.ks > 0.99


def _binned(edges: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ScoreBins]:
    bins = np.searchsorted(edges, p, side="right")  # width_bucket's numbering
    return bins, ScoreBins.collect(edges, bins, np.ones_like(p), p, p * p)


def test_labelled_binary_metrics_from_counts_match_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(2, 5, size=6_000)
    truth = rng.random(6_000) < p
    predicted = p >= 0.3
    edges = score_edges(rng.beta(2, 5, size=10_000), None, 0.3)
    bins, _ = _binned(edges, p)
    eps = np.finfo(float).eps
    ln_p = np.log(np.clip(p, eps, 1 - eps))
    ln_q = np.log(np.clip(1 - p, eps, 1 - eps))
    got = binary_metrics(truth, predicted, bins, np.ones_like(p), [p, p * p, ln_p, ln_q])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(truth, predicted), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(truth, predicted), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(truth, predicted), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(truth, p), rel=1e-9)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(truth, p), rel=1e-9)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, p), abs=2e-3)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(truth, p), abs=5e-3)


def test_probability_metrics_are_nan_without_probabilities_or_with_one_class() -> None:
    n = np.array([5.0, 7.0])
    without = binary_metrics(np.array([True, False]), np.array([True, True]), [0, 1], n, None)
    assert np.isnan(without["roc_auc"]) and np.isnan(without["brier"])
    assert without["precision"] == pytest.approx(5 / 12)
    zeros = [np.zeros(2)] * 4
    one_class = binary_metrics(np.array([True, True]), np.array([True, False]), [0, 1], n, zeros)
    assert np.isnan(one_class["roc_auc"]) and np.isnan(one_class["pr_auc"])


def test_cbpe_from_bins_matches_cbpe_on_rows() -> None:
    rng = np.random.default_rng(5)
    raw_val = rng.beta(2, 3, size=3_000)
    cal = fit_calibration((rng.random(3_000) < raw_val**1.3).astype(int), raw_val, ["0", "1"])
    window = rng.beta(2, 4, size=8_000)
    edges = score_edges(raw_val, cal, 0.4)
    _, bins = _binned(edges, window)
    expected = estimate_performance(cal, window, 0.4)
    got = cbpe_from_bins(cal, bins, 0.4)
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert got[metric] == pytest.approx(expected[metric], rel=1e-9), metric
    assert got["roc_auc"] == pytest.approx(expected["roc_auc"], abs=2e-3)


def test_regression_metrics_from_sums_match_scikit_learn() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(size=500)
    pred = y + rng.normal(0, 0.5, size=500)
    err = y - pred
    got = regression_metrics(500, float(np.sum(err**2)), float(np.sum(np.abs(err))), float(y.var()))
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-9)
    assert np.isnan(regression_metrics(1, 0.0, 0.0, 0.0)["r2"])
