"""Alarms with intervals: a window alarms on a significant AND large enough shortfall only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pgmlops.domain.intervals import (
    concat_scores,
    delong,
    drop_test,
    mean_drop_test,
    null_differences,
    reference_outputs,
)
from pgmlops.domain.metrics import Scores, metric_value
from pgmlops.domain.monitoring.drift import compare
from pgmlops.domain.monitoring.performance import confidence
from pgmlops.domain.monitoring.profile import build_profile
from pgmlops.domain.schema import FeatureSchema, FeatureSpec

CLASSES = ("0", "1")


def binary_rows(n: int, rng: np.random.Generator, separation: float = 1.5) -> Scores:
    """A scored binary sample: 20% positives, scores a logistic of a shifted normal."""
    truth = rng.random(n) < 0.2
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * truth - 1.5)))
    return Scores(
        task="binary",
        y_true=np.where(truth, "1", "0"),
        predicted=np.where(p >= 0.5, "1", "0"),
        proba=p,
        classes=CLASSES,
    )


def test_delong_matches_the_brute_force_placements() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(300) < 0.3
    score = np.round(rng.normal(size=300) + truth, 1)  # rounded: ties must count half
    pos, neg = score[truth], score[~truth]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = wins.mean(axis=1), wins.mean(axis=0)
    brute = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    auc, variance = delong(truth, score)
    assert auc == pytest.approx(roc_auc_score(truth, score))
    assert variance == pytest.approx(brute)


def test_bootstrap_null_has_the_delong_spread_at_the_window_size() -> None:
    rng = np.random.default_rng(2)
    reference = binary_rows(4_000, rng)
    truth = reference.positive
    _, var_ref = delong(truth, reference.proba)
    for n in (100, 500, 2_000):
        # DeLong's variance scales with 1/rows; the null holds the window's and the reference's.
        expected = np.sqrt(var_ref * len(reference) / n + var_ref)
        spread = null_differences(reference, "roc_auc", n, draws=300).std()
        assert spread == pytest.approx(expected, rel=0.15), n


@pytest.mark.parametrize("n", [100, 1_000])
def test_in_distribution_windows_alarm_at_most_5_percent(n: int) -> None:
    rng = np.random.default_rng(3)
    reference = binary_rows(4_000, rng)
    null = null_differences(reference, "roc_auc", n)
    ref_auc = metric_value("roc_auc", reference)
    alarms = 0
    for _ in range(150):
        window = binary_rows(n, rng)
        verdict = drop_test(
            "roc_auc",
            metric_value("roc_auc", window),
            ref_auc,
            null,
            alpha=0.01,
            tolerance=0.05,
        )
        alarms += verdict.degraded
    assert alarms / 150 <= 0.05


def window_aucs(windows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The AUC of ``windows`` fresh windows of n rows drawn like ``binary_rows``."""
    truth = rng.random((windows, n)) < 0.2
    score = rng.normal(size=(windows, n)) + 1.5 * truth
    ranks = score.argsort(axis=1).argsort(axis=1) + 1.0
    pos = truth.sum(axis=1)
    return ((ranks * truth).sum(axis=1) - pos * (pos + 1) / 2) / (pos * (n - pos))


def test_the_null_at_100_labels_alarms_at_alpha_whatever_its_seed() -> None:
    # Every window of a size shares one seeded null, so its alpha quantile must be precise:
    # with 400 draws one seed's false-alarm rate could sit a point or two off alpha.
    rng = np.random.default_rng(8)
    # A reference this size (AUC within 0.002 of the truth here): the test is about the null.
    reference = binary_rows(8_000, rng)
    ref_auc = metric_value("roc_auc", reference)
    drops = window_aucs(4_000, 100, rng) - ref_auc
    rates = []
    for seed in range(2):
        null = null_differences(reference, "roc_auc", 100, seed=seed)
        assert null.size == 2_000
        rates.append(float(np.mean(drops <= np.quantile(null, 0.03))))
    assert all(0.015 <= r <= 0.045 for r in rates), rates


def test_a_real_drop_is_caught_and_reported_with_its_interval() -> None:
    rng = np.random.default_rng(4)
    reference = binary_rows(4_000, rng)
    null = null_differences(reference, "roc_auc", 1_000)
    ref_auc = metric_value("roc_auc", reference)
    caught = 0
    for _ in range(50):
        worse = metric_value("roc_auc", binary_rows(1_000, rng, separation=1.0))
        verdict = drop_test("roc_auc", worse, ref_auc, null, alpha=0.01, tolerance=0.05)
        caught += verdict.degraded
    assert caught / 50 >= 0.8
    lo, hi = verdict.interval
    assert lo < ref_auc < hi and verdict.block()["reference_interval"] == [lo, hi]


def test_a_significant_drop_below_the_tolerance_does_not_alarm() -> None:
    rng = np.random.default_rng(5)
    reference = binary_rows(4_000, rng)
    ref_auc = metric_value("roc_auc", reference)
    null = null_differences(reference, "roc_auc", 5_000)
    verdict = drop_test("roc_auc", ref_auc - 0.03, ref_auc, null, alpha=0.01, tolerance=0.05)
    assert verdict.significant and not verdict.degraded


def test_lower_is_better_metrics_alarm_when_the_error_grows() -> None:
    rng = np.random.default_rng(6)
    truth = rng.normal(size=4_000)
    scores = Scores(task="regression", y_true=truth, predicted=truth + rng.normal(size=4_000))
    ref = metric_value("rmse", scores)
    null = null_differences(scores, "rmse", 1_000)
    assert drop_test("rmse", ref * 1.3, ref, null, alpha=0.01, tolerance=0.05).degraded
    assert not drop_test("rmse", ref * 0.8, ref, null, alpha=0.01, tolerance=0.05).significant


def test_mean_confidence_needs_a_significant_and_large_fall() -> None:
    rng = np.random.default_rng(7)
    reference = rng.beta(2, 2, 5_000)
    same = mean_drop_test(rng.beta(2, 2, 200), reference, alpha=0.01, tolerance=0.1)
    lower = mean_drop_test(rng.beta(2, 3, 2_000) * 0.8, reference, alpha=0.01, tolerance=0.1)
    assert not same.degraded and lower.degraded
    lo, hi = lower.interval
    assert lo < lower.reference < hi


def test_reference_outputs_are_a_bounded_seeded_sample() -> None:
    rng = np.random.default_rng(8)
    scores = concat_scores(binary_rows(3_000, rng), binary_rows(3_000, rng))
    kept = reference_outputs(scores, seed=1, limit=2_000)
    again = reference_outputs(scores, seed=1, limit=2_000)
    assert kept.n_source == 6_000 and len(kept.y_true) == 2_000
    assert kept == again
    back = kept.scores()
    assert back.task == "binary" and back.proba.shape == (2_000,)


def test_confidence_has_one_definition_in_the_profile_and_output_drift() -> None:
    """Serving's |p - 0.5| * 2 is also what the reference profile and output drift report."""
    rng = np.random.default_rng(9)
    schema = FeatureSchema(
        task="binary",
        target="y",
        classes=list(CLASSES),
        features=[FeatureSpec(name="x", kind="numeric")],
    )
    frame = pd.DataFrame({"x": rng.normal(size=2_000)})
    p = rng.beta(2, 5, 2_000)
    profile = build_profile(frame, schema, scores=p)
    served = confidence(p, "binary")
    assert profile.output is not None
    assert profile.output.mean_confidence == pytest.approx(served.mean())
    report = compare(profile, frame, scores=p)
    assert report.output is not None
    assert report.output.mean_confidence_current == pytest.approx(served.mean())
    assert report.output.mean_confidence_reference == pytest.approx(
        report.output.mean_confidence_current
    )


def test_an_alarm_alpha_outside_0_to_half_is_refused_with_its_key(tmp_path) -> None:
    from pgmlops.config import load_settings
    from pgmlops.errors import ConfigError

    config = tmp_path / "pgmlops.yaml"
    config.write_text("monitoring:\n  alarm_alpha: 0.7\n")
    with pytest.raises(ConfigError, match=r"monitoring\.alarm_alpha"):
        load_settings(config)
    config.write_text("monitoring:\n  alarm_alpha: 0.02\n")
    assert load_settings(config).monitoring.alarm_alpha == 0.02


def one_positive_windows(windows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The AUC of windows of n rows holding exactly one positive (scores as window_aucs)."""
    score = rng.normal(size=(windows, n))
    score[:, 0] += 1.5  # row 0 is the positive
    return (score[:, 1:] < score[:, :1]).mean(axis=1)


def test_windows_with_one_positive_are_judged_at_their_own_class_counts() -> None:
    # Issue 24: one positive among 200 makes AUC the rank of a single row; against the null
    # of windows with the reference's ~40 positives it alarmed on 19% of healthy windows.
    rng = np.random.default_rng(9)
    reference = binary_rows(8_000, rng)
    ref_auc = metric_value("roc_auc", reference)
    aucs = one_positive_windows(1_000, 200, rng)

    def alarm_rate(null: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    drop_test("roc_auc", a, ref_auc, null, alpha=0.03, tolerance=0.03).degraded
                    for a in aucs
                ]
            )
        )

    unconditional = alarm_rate(null_differences(reference, "roc_auc", 200))
    conditional = alarm_rate(null_differences(reference, "roc_auc", 200, class_counts=(199, 1)))
    assert unconditional > 0.10  # the old null: the failure this guards against
    assert conditional <= 0.05
