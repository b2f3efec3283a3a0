"""The live comparison's statistics (domain/live/comparison.py), without a database."""

from __future__ import annotations

import numpy as np
import pytest

from pgmlops.domain.live.comparison import (
    LivePolicy,
    agreement,
    gain_interval,
    mean_abs_difference,
    score_distance,
)
from pgmlops.domain.metrics import Scores

CLASSES = ("0", "1")


def _binary(truth: np.ndarray, proba: np.ndarray) -> Scores:
    predicted = np.where(proba >= 0.5, "1", "0")
    return Scores("binary", truth.astype(str), predicted, proba, CLASSES)


def _pair(n: int, skill_a: float, skill_b: float, seed: int = 0) -> tuple[Scores, Scores]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.4).astype(int)
    common = rng.normal(0, 0.25, n)  # the records' own difficulty, shared by both versions
    a = np.clip(0.5 + skill_a * (truth - 0.5) + common + rng.normal(0, 0.05, n), 0, 1)
    b = np.clip(0.5 + skill_b * (truth - 0.5) + common + rng.normal(0, 0.05, n), 0, 1)
    return _binary(truth, a), _binary(truth, b)


def test_agreement_and_mean_absolute_difference_count_records_both_scored() -> None:
    assert agreement(["a", "b", "b", "c"], ["a", "b", "c", "c"]) == 0.75
    assert agreement([], []) is None
    assert mean_abs_difference([1.0, 2.0, np.nan], [1.5, 1.0, 3.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same records"):
        agreement(["a"], ["a", "b"])


def test_score_distance_is_zero_for_equal_outputs_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(2, 5, 2000)
    same = score_distance(p, p, kind="probability")
    shifted = score_distance(p, np.clip(p + 0.3, 0, 1), kind="probability")
    assert same is not None and same.js_distance == 0.0 and same.ks_statistic == 0.0
    assert shifted is not None and shifted.js_distance > 0.4 and shifted.ks_p_value < 1e-6
    values = score_distance(rng.normal(0, 1, 500), rng.normal(0, 1, 500), kind="value")
    moved = score_distance(rng.normal(0, 1, 500), rng.normal(1, 1, 500), kind="value")
    # Sampling noise alone puts ~0.1 between two draws of 500 on ten bins.
    assert values is not None and values.js_distance < 0.15 and "deciles" in values.basis
    assert moved is not None and moved.js_distance > 0.3 and moved.ks_p_value < 1e-6
    classes = score_distance(["a", "a", "b"], ["b", "b", "b"], kind="class")
    assert classes is not None and classes.ks_statistic is None and classes.js_distance > 0.5
    assert score_distance([], [0.5], kind="probability") is None


def test_a_clearly_better_version_gets_an_interval_above_zero() -> None:
    a, b = _pair(600, 0.2, 0.6)
    gain = gain_interval("roc_auc", a, b, paired=True, policy=LivePolicy())
    assert gain.enough and gain.favours_challenger and not gain.favours_production
    assert gain.low <= gain.gain <= gain.high and gain.gain > 0
    assert gain.describe().startswith("roc_auc gain +") and "paired, n=600" in gain.describe()
    reverse = gain_interval("roc_auc", b, a, paired=True, policy=LivePolicy())
    assert reverse.favours_production and reverse.to_dict()["favours"] == "production"


def test_pairing_cancels_the_records_difficulty_so_the_paired_interval_is_narrower() -> None:
    a, b = _pair(800, 0.5, 0.55, seed=2)
    paired = gain_interval("roc_auc", a, b, paired=True, policy=LivePolicy())
    unpaired = gain_interval("roc_auc", a, b, paired=False, policy=LivePolicy())
    assert paired.pairing == "paired" and unpaired.pairing == "unpaired"
    assert paired.gain == unpaired.gain
    assert (paired.high - paired.low) < 0.6 * (unpaired.high - unpaired.low)


def test_equal_versions_get_an_interval_around_zero_and_lower_is_better_is_signed() -> None:
    a, b = _pair(500, 0.5, 0.5, seed=3)
    gain = gain_interval("roc_auc", a, b, paired=False, policy=LivePolicy())
    assert gain.low < 0 < gain.high and gain.to_dict()["favours"] is None
    rng = np.random.default_rng(4)
    truth = rng.normal(0, 1, 400)
    good = Scores("regression", truth, truth + rng.normal(0, 0.1, 400))
    bad = Scores("regression", truth, truth + rng.normal(0, 1.0, 400))
    rmse = gain_interval("rmse", bad, good, paired=True, policy=LivePolicy())
    assert rmse.gain > 0 and rmse.favours_challenger  # lower rmse: a positive gain


def test_too_few_labels_give_no_interval_and_say_so() -> None:
    a, b = _pair(150, 0.2, 0.9)
    gain = gain_interval("roc_auc", a, b, paired=True, policy=LivePolicy(min_labels=200))
    assert not gain.enough and gain.low is None and gain.high is None
    assert gain.note == "not enough labels (n=150 < 200)"
    assert gain.describe() == "roc_auc: not enough labels (n=150 < 200)"
    assert gain.to_dict()["interval"] is None and gain.to_dict()["favours"] is None
    assert gain.gain is not None  # the point estimate is still shown
    missing = gain_interval("roc_auc", None, b, paired=False, policy=LivePolicy())
    assert missing.note == "not enough labels (n=0 < 200)"


def test_a_metric_undefined_on_the_labels_gives_no_interval() -> None:
    truth = np.zeros(300, dtype=int)  # one class only: no AUC
    p = np.random.default_rng(5).random(300)
    a, b = _binary(truth, p), _binary(truth, p[::-1].copy())
    gain = gain_interval("roc_auc", a, b, paired=True, policy=LivePolicy())
    assert not gain.enough and "undefined" in gain.note


def test_the_interval_is_seeded() -> None:
    a, b = _pair(300, 0.3, 0.5, seed=6)
    first = gain_interval("roc_auc", a, b, paired=False, policy=LivePolicy(seed=7))
    again = gain_interval("roc_auc", a, b, paired=False, policy=LivePolicy(seed=7))
    other = gain_interval("roc_auc", a, b, paired=False, policy=LivePolicy(seed=8))
    assert (first.low, first.high) == (again.low, again.high) != (other.low, other.high)
