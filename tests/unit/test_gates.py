"""Promotion gates: a worse model is refused, a better one approved, always with reasons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor

from pgmlops.domain.metrics import Scores, alert_rate, at_alert_rate, metric_value
from pgmlops.domain.promotion.gates import Decision, PromotionPolicy, decide
from pgmlops.domain.promotion.paired_bootstrap import (
    BOOTSTRAP_MAX_ROWS,
    paired_bootstrap,
    row_clusters,
)
from pgmlops.errors import ConfigError

CLASSES = ("no", "yes")
N = 4000


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return np.random.default_rng(0).random(N) < 0.3


def model(truth: np.ndarray, skill: float, threshold: float = 0.5, seed: int = 1) -> Scores:
    """A binary model whose scores separate the classes by `skill` standard deviations."""
    rng = np.random.default_rng(seed)
    logit = skill * (truth - 0.5) * 2 + rng.normal(size=truth.size) - 0.8
    proba = 1 / (1 + np.exp(-logit))
    labels = np.where(truth, "yes", "no")
    return Scores("binary", labels, np.where(proba >= threshold, "yes", "no"), proba, CLASSES)


def dummy_baseline(truth: np.ndarray) -> Scores:
    """What the caller builds for a first model: a prior-probability DummyClassifier."""
    labels = np.where(truth, "yes", "no")
    x = np.zeros((truth.size, 1))
    dummy = DummyClassifier(strategy="prior").fit(x, labels)
    return Scores("binary", labels, dummy.predict(x), dummy.predict_proba(x), CLASSES)


def regression(y: np.ndarray, noise: float, seed: int) -> Scores:
    rng = np.random.default_rng(seed)
    return Scores("regression", y, y + rng.normal(scale=noise, size=y.size))


def gate(decision: Decision, name: str):
    return next(g for g in decision.gates if g.name == name)


def test_approves_clear_improvement(truth):
    champion = model(truth, skill=0.6, seed=1)
    candidate = model(truth, skill=1.2, seed=2)
    decision = decide(candidate, champion, None, PromotionPolicy())
    assert decision.approved
    assert [g.name for g in decision.gates] == ["primary", "guard:recall", "bootstrap"]
    assert decision.failed() == []
    assert gate(decision, "primary").numbers["improvement"] > 0.1
    assert decision.summary().startswith("approved")


def worse_at_the_top(champion: Scores, truth: np.ndarray) -> Scores:
    """The champion's scores with its top 30% shuffled and the rest perfectly ranked.

    A better AUC overall, but among the rows the champion flags it catches fewer positives.
    """
    assert champion.proba is not None
    rng = np.random.default_rng(3)
    proba = champion.proba.copy()
    order = np.argsort(-proba)
    top, rest = order[: int(0.3 * N)], order[int(0.3 * N) :]
    proba[top] = rng.permutation(proba[top])
    positives_first = rest[np.lexsort((rng.random(rest.size), ~truth[rest]))]
    proba[positives_first] = np.sort(proba[rest])[::-1]
    return Scores("binary", champion.y_true, np.where(proba >= 0.5, "yes", "no"), proba, CLASSES)


def test_refuses_promotion_when_recall_drops_at_the_champions_alert_rate(truth):
    champion = model(truth, skill=1.0, seed=1)
    candidate = worse_at_the_top(champion, truth)
    decision = decide(candidate, champion, None, PromotionPolicy())
    assert not decision.approved
    assert gate(decision, "primary").passed and gate(decision, "bootstrap").passed
    assert [g.name for g in decision.failed()] == ["guard:recall"]
    guard = gate(decision, "guard:recall")
    assert guard.numbers["drop"] > 0.05
    assert guard.numbers["matched_alert_rate"] == pytest.approx(
        guard.numbers["champion_alert_rate"], abs=1 / N
    )
    assert "at the champion's alert rate" in guard.detail and "exceeds" in guard.detail
    assert "guard:recall" in decision.summary()


def test_a_stricter_cut_off_alone_is_not_a_loss_of_recall(truth):
    # Better ranking, higher threshold: fewer alerts and a lower recall at its own cut, but
    # at the champion's workload it catches more positives, so the guard lets it through.
    champion = model(truth, skill=1.0, threshold=0.3, seed=1)
    candidate = model(truth, skill=1.2, threshold=0.6, seed=2)
    decision = decide(candidate, champion, None, PromotionPolicy())
    assert decision.approved, decision.summary()
    numbers = gate(decision, "guard:recall").numbers
    assert numbers["candidate"] < numbers["champion"] - 0.1  # the old, own-threshold figure
    assert numbers["candidate_at_champion_rate"] > numbers["champion"]
    assert numbers["candidate_alert_rate"] < numbers["champion_alert_rate"]
    detail = gate(decision, "guard:recall").detail
    assert f"recall {numbers['candidate']:.4f})" in detail  # both figures are shown
    assert f"recall {numbers['candidate_at_champion_rate']:.4f} at the champion's" in detail


def test_recall_drop_within_the_tolerance_is_allowed(truth):
    champion = model(truth, skill=1.0, seed=1)
    candidate = worse_at_the_top(champion, truth)
    drop = gate(decide(candidate, champion, None, PromotionPolicy()), "guard:recall").numbers
    assert drop["drop"] > 0.05
    allowed = PromotionPolicy(guard_metrics={"recall": drop["drop"]})
    assert decide(candidate, champion, None, allowed).approved


def test_without_probabilities_the_guard_compares_the_own_thresholds(truth):
    champion = model(truth, skill=1.0, threshold=0.3, seed=1)
    scored = model(truth, skill=1.2, threshold=0.6, seed=2)
    labels_only = Scores("binary", scored.y_true, scored.predicted, None, CLASSES)
    guard = gate(decide(labels_only, champion, None, PromotionPolicy()), "guard:recall")
    assert not guard.passed and "candidate_at_champion_rate" not in guard.numbers
    assert guard.detail.startswith(f"recall {guard.numbers['candidate']:.4f} vs champion")


def test_the_matched_cut_never_splits_tied_scores():
    proba = np.array([0.9, 0.8, 0.8, 0.8, 0.5, 0.2, 0.2, 0.1, 0.1, 0.1])
    scores = Scores("binary", np.array(["no", "yes"] * 5), np.full(10, "no"), proba, CLASSES)
    flagged = {rate: alert_rate(at_alert_rate(scores, rate)) for rate in (0, 0.2, 0.3, 0.6, 1)}
    # 2 of 10 wanted: 1 or 4 are possible, 1 is nearer; 3 wanted: 4 is nearer than 1;
    # 6 wanted: 5 and 7 are equally near, and the smaller workload is taken.
    assert flagged == {0: 0.0, 0.2: 0.1, 0.3: 0.4, 0.6: 0.5, 1: 1.0}


def test_refuses_when_primary_improvement_below_min_delta(truth):
    champion = model(truth, skill=1.0, seed=1)
    candidate = model(truth, skill=1.05, seed=2)
    no_interval = PromotionPolicy(bootstrap=False)
    gain = gate(decide(candidate, champion, None, no_interval), "primary").numbers
    assert 0 < gain["improvement"] < 0.05
    decision = decide(candidate, champion, None, PromotionPolicy(min_delta=0.05, bootstrap=False))
    assert not decision.approved
    assert [g.name for g in decision.failed()] == ["primary"]
    assert "below the required +0.0500" in gate(decision, "primary").detail


def test_refuses_a_worse_candidate(truth):
    decision = decide(model(truth, 0.6, seed=2), model(truth, 1.2, seed=1), None, PromotionPolicy())
    assert not decision.approved
    assert gate(decision, "primary").numbers["improvement"] < 0


def test_lower_rmse_is_an_improvement_for_regression():
    y = np.random.default_rng(3).normal(10, 3, size=1000)
    better, worse = regression(y, noise=1.0, seed=1), regression(y, noise=2.0, seed=2)
    approved = decide(better, worse, None, PromotionPolicy())
    assert approved.approved
    assert approved.primary_metric == "rmse"
    # No default guard for regression; the interval of the gain is on by default.
    assert [g.name for g in approved.gates] == ["primary", "bootstrap"]
    assert gate(approved, "primary").numbers["improvement"] > 0.5
    refused = decide(worse, better, None, PromotionPolicy())
    assert not refused.approved


def test_guard_on_a_lower_is_better_metric_refuses_a_rise():
    y = np.random.default_rng(3).normal(10, 3, size=2000)
    rng = np.random.default_rng(5)
    steady = Scores("regression", y, y + rng.normal(scale=1.0, size=y.size))
    # Errors of constant size 0.9: smaller squared error than N(0, 1), larger absolute error.
    even = Scores("regression", y, y + 0.9 * rng.choice([-1.0, 1.0], size=y.size))
    strict = PromotionPolicy(primary_metric="r2", guard_metrics={"mae": 0.0})
    decision = decide(even, steady, None, strict)
    assert gate(decision, "primary").passed
    assert [g.name for g in decision.failed()] == ["guard:mae"]
    assert gate(decision, "guard:mae").numbers["drop"] > 0.05
    lenient = PromotionPolicy(primary_metric="r2", guard_metrics={"mae": 0.2})
    assert decide(even, steady, None, lenient).approved


def test_first_model_must_beat_the_dummy_baseline(truth):
    baseline = dummy_baseline(truth)
    good = decide(model(truth, 1.0), None, baseline, PromotionPolicy(baseline_margin=0.05))
    assert good.approved
    assert [g.name for g in good.gates] == ["baseline"]
    assert good.baseline is not None and good.baseline["roc_auc"] == pytest.approx(0.5)
    assert good.champion is None
    useless = model(truth, skill=0.0)
    refused = decide(useless, None, baseline, PromotionPolicy(baseline_margin=0.05))
    assert not refused.approved
    assert "below the minimum effect +0.0500" in gate(refused, "baseline").detail


def test_first_regression_model_must_beat_predicting_the_mean():
    y = np.random.default_rng(3).normal(10, 3, size=500)
    x = np.zeros((y.size, 1))
    baseline = Scores("regression", y, DummyRegressor(strategy="mean").fit(x, y).predict(x))
    assert decide(regression(y, 1.0, seed=1), None, baseline, PromotionPolicy()).approved
    assert not decide(regression(y, 5.0, seed=1), None, baseline, PromotionPolicy()).approved


def test_refuses_a_candidate_below_a_floor(truth):
    candidate = model(truth, skill=1.0)
    precision = metric_value("precision", candidate)
    policy = PromotionPolicy(floors={"precision": precision + 0.01, "roc_auc": 0.6})
    decision = decide(candidate, None, dummy_baseline(truth), policy)
    assert [g.name for g in decision.gates] == ["baseline", "floor:precision", "floor:roc_auc"]
    assert [g.name for g in decision.failed()] == ["floor:precision"]
    assert "must be at least" in gate(decision, "floor:precision").detail


def test_a_floor_on_rmse_is_a_maximum():
    y = np.random.default_rng(3).normal(10, 3, size=500)
    candidate = regression(y, 1.0, seed=1)
    rmse = metric_value("rmse", candidate)
    assert decide(candidate, None, None, PromotionPolicy(floors={"rmse": rmse + 0.1})).approved
    refused = decide(candidate, None, None, PromotionPolicy(floors={"rmse": rmse - 0.1}))
    assert not refused.approved
    assert "must be at most" in refused.gates[0].detail


def test_refuses_when_the_primary_metric_cannot_be_computed(truth):
    labels = np.where(truth, "yes", "no")
    no_proba = Scores("binary", labels, labels, None, CLASSES)  # perfect labels, no scores
    decision = decide(no_proba, model(truth, 1.0), None, PromotionPolicy())
    assert not decision.approved
    assert "undefined" in gate(decision, "primary").detail


def test_bootstrap_gate_passes_when_the_interval_excludes_zero(truth):
    champion, candidate = model(truth, 0.8, seed=1), model(truth, 1.2, seed=2)
    policy = PromotionPolicy(bootstrap=True, bootstrap_rounds=500, seed=1)
    decision = decide(candidate, champion, None, policy)
    boot = gate(decision, "bootstrap")
    assert boot.passed
    assert 0 < boot.numbers["low"] < boot.numbers["mean"] < boot.numbers["high"]
    assert boot.detail.endswith("excludes 0")
    assert decision.approved


def test_bootstrap_gate_refuses_when_the_interval_includes_zero(truth):
    # Equally skilled models: the candidate wins on this holdout by luck alone.
    champion, candidate = model(truth, 1.0, seed=1), model(truth, 1.0, seed=4)
    policy = PromotionPolicy(bootstrap=True, bootstrap_rounds=500, guard_metrics={})
    decision = decide(candidate, champion, None, policy)
    assert gate(decision, "primary").passed
    boot = gate(decision, "bootstrap")
    assert boot.numbers["low"] < 0 < boot.numbers["high"]
    assert not boot.passed and "does not exclude 0" in boot.detail
    assert boot.detail.startswith("no significant improvement")
    assert [g.name for g in decision.failed()] == ["bootstrap"]


def test_bootstrap_interval_below_zero_for_a_degraded_copy(truth):
    champion = model(truth, 1.0, seed=1)
    assert champion.proba is not None
    noise = np.random.default_rng(9).normal(scale=0.02, size=N)
    degraded = Scores(
        "binary", champion.y_true, champion.predicted, champion.proba + noise, CLASSES
    )
    low, mean, high = paired_bootstrap(
        "roc_auc", degraded, champion, rounds=500, confidence=0.95, seed=0
    )
    # Pairing cancels the holdout's own noise, so even a tiny loss is resolved.
    assert low < mean < high < 0
    assert high - low < 0.005  # vs ~0.025 between two independently noisy models


def test_paired_bootstrap_mean_tracks_the_observed_improvement_and_is_reproducible(truth):
    champion, candidate = model(truth, 0.8, seed=1), model(truth, 1.0, seed=2)
    observed = metric_value("roc_auc", candidate) - metric_value("roc_auc", champion)
    first = paired_bootstrap("roc_auc", candidate, champion, rounds=400, confidence=0.9, seed=4)
    again = paired_bootstrap("roc_auc", candidate, champion, rounds=400, confidence=0.9, seed=4)
    assert first == again
    low, mean, high = first
    assert mean == pytest.approx(observed, abs=0.005)
    assert low < observed < high


def test_paired_bootstrap_reports_rmse_improvement_as_positive():
    y = np.random.default_rng(3).normal(10, 3, size=800)
    low, _, high = paired_bootstrap(
        "rmse", regression(y, 1.0, 1), regression(y, 1.5, 2), rounds=300, confidence=0.95, seed=0
    )
    assert 0 < low < high


def test_a_huge_holdout_is_subsampled_so_the_interval_costs_the_same():
    y = np.random.default_rng(3).normal(10, 3, size=2 * BOOTSTRAP_MAX_ROWS)

    def width(n: int) -> float:
        better, worse = regression(y[:n], 1.0, 1), regression(y[:n], 1.02, 2)
        low, _, high = paired_bootstrap("rmse", better, worse, rounds=200, confidence=0.9, seed=0)
        assert low < high
        return high - low

    # Twice the rows would shrink the interval by sqrt(2) if all were resampled.
    assert width(2 * BOOTSTRAP_MAX_ROWS) > 0.85 * width(BOOTSTRAP_MAX_ROWS)


def test_a_strict_level_draws_enough_resamples_to_reach_its_tail(truth):
    champion, candidate = model(truth, 0.8, seed=1), model(truth, 1.0, seed=2)

    def bound(rounds: int, confidence: float) -> tuple[float, float, float]:
        return paired_bootstrap(
            "roc_auc", candidate, champion, rounds=rounds, confidence=confidence, seed=3, sided=1
        )

    # At 0.999 a thousand resamples would leave one beyond the bound: 5,000 are drawn.
    assert bound(1_000, 0.999) == bound(5_000, 0.999)
    assert bound(1_000, 0.95) != bound(5_000, 0.95)  # a wide tail keeps the rounds asked for


def _repeated(scores: Scores, times: int) -> Scores:
    """Every row `times` times over, as panel data repeats an entity's feature vector."""
    return scores.take(np.repeat(np.arange(len(scores)), times))


def test_repeated_rows_are_one_observation_of_the_gain_not_many(truth):
    champion, candidate = model(truth[:800], 0.8, seed=1), model(truth[:800], 1.0, seed=2)
    clusters = np.repeat(np.arange(800), 5)

    def width(cand: Scores, champ: Scores, labels: np.ndarray | None = None) -> float:
        low, _, high = paired_bootstrap(
            "roc_auc", cand, champ, rounds=600, confidence=0.95, seed=0, clusters=labels
        )
        return high - low

    distinct = width(candidate, champion)
    five = (_repeated(candidate, 5), _repeated(champion, 5))
    # Drawn row by row, five copies look like five times the evidence: the interval shrinks
    # by about sqrt(5); drawn by cluster it stays what the 800 distinct rows support.
    assert width(*five) < 0.6 * distinct
    assert width(*five, clusters) == pytest.approx(distinct, rel=0.15)


def test_cluster_draws_equal_row_draws_when_no_row_repeats(truth):
    champion, candidate = model(truth, 0.8, seed=1), model(truth, 1.0, seed=2)
    rows = paired_bootstrap("roc_auc", candidate, champion, rounds=300, confidence=0.9, seed=4)
    labels = np.arange(N)[::-1]  # any labelling of distinct rows draws the same resamples
    by_cluster = paired_bootstrap(
        "roc_auc", candidate, champion, rounds=300, confidence=0.9, seed=4, clusters=labels
    )
    assert by_cluster == rows


def test_cluster_labels_must_cover_every_row(truth):
    champion, candidate = model(truth, 0.8, seed=1), model(truth, 1.0, seed=2)
    with pytest.raises(ValueError, match="clusters has 3 labels"):
        paired_bootstrap(
            "roc_auc", candidate, champion, rounds=10, confidence=0.9, seed=0,
            clusters=np.arange(3),
        )  # fmt: skip


def test_rows_repeating_a_feature_vector_share_a_cluster_whatever_their_index():
    x = pd.DataFrame({"age": [30, 41, 30, 30], "plan": ["a", "b", "a", "b"]}, index=[7, 3, 9, 1])
    labels = row_clusters(x)
    assert labels.tolist() == [0, 1, 0, 2]
    assert row_clusters(x.iloc[:0]).size == 0


def test_scores_from_different_rows_are_refused(truth):
    short = model(truth[:100], 1.0)
    with pytest.raises(ValueError, match="same holdout rows"):
        decide(short, model(truth, 1.0), None, PromotionPolicy())
    shuffled = model(np.roll(truth, 1), 1.0)
    with pytest.raises(ValueError, match="different true values"):
        decide(shuffled, model(truth, 1.0), None, PromotionPolicy())


def test_unknown_metric_in_the_policy_is_a_config_error_naming_the_key(truth):
    champion, candidate = model(truth, 1.0, seed=1), model(truth, 1.1, seed=2)
    with pytest.raises(ConfigError, match=r"promotion\.guard_metrics\.recal: unknown metric"):
        decide(candidate, champion, None, PromotionPolicy(guard_metrics={"recal": 0.01}))
    with pytest.raises(ConfigError, match=r"promotion\.primary_metric: .*'rmse'.*binary"):
        decide(candidate, champion, None, PromotionPolicy(primary_metric="rmse"))
    with pytest.raises(ConfigError, match=r"promotion\.floors\.auc"):
        decide(candidate, champion, None, PromotionPolicy(floors={"auc": 0.7}))


def test_policy_from_config_turns_bad_values_into_one_line_config_errors():
    policy = PromotionPolicy.from_config({"min_delta": 0.01, "guard_metrics": {"f1": 0.05}})
    assert policy.min_delta == 0.01 and policy.guards_for("binary") == {"f1": 0.05}
    cases = [
        ({"min_delta": -1}, "promotion.min_delta: Input should be greater than or equal to 0"),
        ({"min_detla": 0.1}, "promotion.min_detla: Extra inputs are not permitted"),
        ({"guard_metrics": {"recall": -0.1}}, "promotion.guard_metrics: tolerance for 'recall'"),
        ({"confidence": 1.5}, "promotion.confidence: Input should be less than 1"),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError) as err:
            PromotionPolicy.from_config(raw)
        assert str(err.value).startswith(message)
        assert "\n" not in str(err.value)


def test_default_guards_protect_recall_for_binary_models_only():
    policy = PromotionPolicy()
    assert policy.guards_for("binary") == {"recall": 0.02}
    assert policy.guards_for("multiclass") == {}
    assert policy.guards_for("regression") == {}
    assert PromotionPolicy(guard_metrics={}).guards_for("binary") == {}


def test_decision_to_dict_is_json_serialisable(truth):
    labels = np.where(truth, "yes", "no")
    no_proba = Scores("binary", labels, labels, None, CLASSES)  # nan probability metrics
    policy = PromotionPolicy(bootstrap=True, bootstrap_rounds=100, floors={"f1": 0.5})
    decision = decide(no_proba, model(truth, 1.0), None, policy)
    as_dict = decision.to_dict()
    text = json.dumps(as_dict, allow_nan=False)
    restored = json.loads(text)
    assert restored["approved"] is False
    assert restored["candidate"]["roc_auc"] is None
    assert restored["candidate"]["accuracy"] == 1.0
    assert restored["failed"] == ["primary", "bootstrap"]
    assert [g["name"] for g in restored["gates"]] == [
        "primary", "guard:recall", "floor:f1", "bootstrap"
    ]  # fmt: skip


def test_a_challenger_is_judged_at_95_percent_a_first_version_at_99(truth):
    # Issue 24: a challenger's false pass swaps in a model that is not better (a tie is
    # refused anyway); a first version's puts in one with no skill, so it keeps 0.99.
    champion, candidate = model(truth, 0.3), model(truth, 0.5, seed=2)
    challenge = decide(candidate, champion, None, PromotionPolicy())
    boot = next(g for g in challenge.gates if g.name == "bootstrap")
    assert boot.numbers["confidence"] == 0.95 and "one-sided 95% CI" in boot.detail
    first = decide(candidate, None, dummy_baseline(truth), PromotionPolicy())
    assert first.gates[0].numbers["confidence"] == 0.99
    strict = decide(candidate, champion, None, PromotionPolicy(challenger_confidence=0.99))
    strict_boot = next(g for g in strict.gates if g.name == "bootstrap")
    assert strict_boot.numbers["low"] < boot.numbers["low"]
