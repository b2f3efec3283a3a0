"""Promotion needs evidence: a first version beats the dummy significantly, a retrain its champion.

Real scikit-learn pipelines (the one `build_pipeline` the training service uses), fitted on
real and on useless data and scored on the content-hash holdout, are judged by `decide` at
the domain level: 40 first versions through the training service would cost minutes, while
what is pinned down here is the gates' statistics on real model outputs. The same claims
through the service and the database are in tests/integration/test_lifecycle.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.metrics import Scores
from pgmlops.domain.predict import baseline_scores, class_columns
from pgmlops.domain.promotion.gates import Decision, PromotionPolicy, decide, min_effect
from pgmlops.domain.training.pipeline import build_pipeline, make_estimator
from pgmlops.domain.training.split import split_rows
from pgmlops.domain.training.threshold import ThresholdPolicy, tune_threshold

FAST = {"max_iter": 40}  # a real gradient-boosting model, cheap enough to fit 40 times
TRIALS = 20


def holdout_scores(
    frame: pd.DataFrame,
    target: str,
    task: str,
    *,
    train_share: float = 1.0,
    params: dict | None = None,
    seed: int = 0,
    tuned: bool = False,
    without: str | None = None,
) -> tuple[Scores, Scores]:
    """(model, dummy baseline) on the frame's holdout, as promotion builds them.

    A binary model is cut at 0.5, or with `tuned` at the F1-best threshold on its validation
    rows as training does (a `train_share` subsample shrinks those rows alike). `without`
    names a feature the model does not see; the rows are split as with it.
    """
    x, y = frame.drop(columns=[target]), frame[target]
    if task != "regression":
        y = y.astype(str)
    split = split_rows(x, y, task, test_size=0.2, validation_size=0.2, seed=0)
    if without is not None:
        x = x.drop(columns=[without])
    train, validation = split.train, split.validation
    if train_share < 1.0:
        rng = np.random.default_rng(seed)
        train = train[rng.random(train.size) < train_share]
        validation = validation[rng.random(validation.size) < train_share]
    estimator = make_estimator(None, {**FAST, **(params or {})}, task, seed)  # type: ignore[arg-type]
    pipeline = build_pipeline(x.iloc[train], estimator, seed=seed)
    pipeline.fit(x.iloc[train], y.iloc[train])
    xh, yh = x.iloc[split.holdout], y.iloc[split.holdout].to_numpy()
    if task == "regression":
        model = Scores("regression", yh, pipeline.predict(xh))
        return model, baseline_scores(task, yh, yh, None)
    classes = sorted(y.unique())
    proba = pipeline.predict_proba(xh)[:, class_columns(pipeline.classes_, classes)]
    if task == "binary":
        proba = proba[:, 1]
        cut = 0.5
        if tuned:
            val_proba = pipeline.predict_proba(x.iloc[validation])
            val_proba = val_proba[:, class_columns(pipeline.classes_, classes)][:, 1]
            positive = y.iloc[validation].to_numpy() == classes[1]
            cut = tune_threshold(positive, val_proba, ThresholdPolicy())
        predicted = np.where(proba >= cut, classes[1], classes[0])
    else:
        predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    model = Scores(task, yh, predicted, proba, tuple(classes))  # type: ignore[arg-type]
    return model, baseline_scores(task, yh, yh, classes)


def first_version(model: Scores, baseline: Scores) -> Decision:
    return decide(model, None, baseline, PromotionPolicy())


def churn(seed: int, rows: int = 3_000) -> pd.DataFrame:
    return make_churn(rows, seed=seed).drop(columns=["CustomerId"])


def test_no_model_trained_on_shuffled_labels_is_promoted_as_a_first_version():
    decisions = []
    for seed in range(TRIALS):
        frame = churn(100 + seed)
        labels = np.random.default_rng(seed).permutation(frame["Exited"].to_numpy())
        shuffled = frame.assign(Exited=labels)
        decisions.append(first_version(*holdout_scores(shuffled, "Exited", "binary", seed=seed)))
    assert sum(d.approved for d in decisions) == 0
    for d in decisions:
        assert "CI [" in d.gates[0].detail  # every refusal shows the interval of the gain


def test_no_model_trained_on_pure_noise_features_is_promoted_as_a_first_version():
    approved = 0
    for seed in range(TRIALS):
        labels = churn(200 + seed)["Exited"]
        rng = np.random.default_rng(seed)
        noise = pd.DataFrame({f"x{k}": rng.normal(size=labels.size) for k in range(6)})
        frame = noise.assign(Exited=labels.to_numpy())
        approved += first_version(*holdout_scores(frame, "Exited", "binary", seed=seed)).approved
    assert approved == 0


def _bundled(name: str) -> tuple[pd.DataFrame, str]:
    if name == "demo churn":
        return churn(7, rows=6_000), "binary"
    loader = getattr(datasets, f"load_{name}")
    frame = loader(as_frame=True).frame
    if name == "diabetes":
        return frame, "regression"
    frame["target"] = "class " + frame["target"].astype(str)
    return frame, "binary" if name == "breast_cancer" else "multiclass"


@pytest.mark.parametrize("name", ["demo churn", "breast_cancer", "wine", "iris", "diabetes"])
def test_real_models_pass_the_first_version_gate_with_room_to_spare(name: str):
    frame, task = _bundled(name)
    target = "Exited" if name == "demo churn" else "target"
    decision = first_version(*holdout_scores(frame, target, task))
    assert decision.approved, decision.summary()
    numbers = decision.gates[0].numbers
    assert numbers["low"] is not None and numbers["low"] > 2 * numbers["min_effect"]


def test_a_significant_gain_below_the_minimum_effect_is_refused():
    model, baseline = holdout_scores(churn(7), "Exited", "binary")
    strict = PromotionPolicy(baseline_margin=0.4)  # demands AUC 0.9 from this ~0.8 model
    decision = decide(model, None, baseline, strict)
    gate = decision.gates[0]
    assert not decision.approved
    assert gate.numbers["low"] > 0  # significant, yet too small to count
    assert "excludes 0, below the minimum effect +0.4000" in gate.detail


def test_the_minimum_effect_of_an_error_metric_is_a_share_of_the_baseline_error():
    assert min_effect("roc_auc", 0.01, 0.5) == 0.01
    assert min_effect("rmse", 0.01, 80.0) == pytest.approx(0.8)
    model, baseline = holdout_scores(*_bundled("diabetes")[:1], "target", "regression")
    decision = first_version(model, baseline)
    base_rmse = decision.baseline["rmse"]  # type: ignore[index]
    assert decision.gates[0].numbers["min_effect"] == pytest.approx(0.01 * base_rmse)


def test_an_identical_retrain_is_refused_with_no_significant_improvement():
    frame = churn(7)
    champion, baseline = holdout_scores(frame, "Exited", "binary")
    retrain, _ = holdout_scores(frame, "Exited", "binary")
    assert np.array_equal(champion.proba, retrain.proba)
    decision = decide(retrain, champion, baseline, PromotionPolicy())
    assert not decision.approved
    assert "no significant improvement" in decision.summary()
    boot = next(g for g in decision.gates if g.name == "bootstrap")
    assert boot.numbers["low"] == boot.numbers["high"] == 0.0  # a tie: refused, not rounded up
    # Even with the interval switched off a tie is no improvement.
    assert not decide(retrain, champion, baseline, PromotionPolicy(bootstrap=False)).approved


def test_an_identical_regression_retrain_is_refused_too():
    frame, _ = _bundled("diabetes")
    champion, baseline = holdout_scores(frame, "target", "regression")
    decision = decide(champion, champion, baseline, PromotionPolicy())
    assert not decision.approved
    assert "no significant improvement: rmse gain +0.0000" in decision.summary()


def test_a_model_on_all_rows_replaces_one_on_a_5_percent_subsample():
    frame = churn(7, rows=6_000)
    small, _ = holdout_scores(frame, "Exited", "binary", train_share=0.05)
    full, baseline = holdout_scores(frame, "Exited", "binary")
    decision = decide(full, small, baseline, PromotionPolicy())
    assert decision.approved, decision.summary()
    assert next(g for g in decision.gates if g.name == "bootstrap").numbers["low"] > 0


def test_a_model_on_all_rows_passes_the_default_recall_guard_against_a_5_percent_one():
    # Each model is cut at its own F1-best validation threshold, as training does; the 5%
    # model's ~60 validation rows often put it at a high-recall, high-workload point.
    own_threshold_drops = 0
    for seed in range(5):
        frame = churn(7 + seed, rows=6_000)
        tiny = {"train_share": 0.05, "tuned": True, "seed": seed}
        small, _ = holdout_scores(frame, "Exited", "binary", **tiny)
        full, baseline = holdout_scores(frame, "Exited", "binary", tuned=True, seed=seed)
        decision = decide(full, small, baseline, PromotionPolicy())
        assert decision.approved, decision.summary()
        guard = next(g for g in decision.gates if g.name == "guard:recall").numbers
        assert guard["candidate_at_champion_rate"] >= guard["champion"]
        own_threshold_drops += guard["candidate"] < guard["champion"] - 0.02
    assert own_threshold_drops >= 2  # the own-threshold comparison would have refused these


def test_a_model_without_a_strong_feature_is_refused_by_the_recall_guard():
    frame = churn(7, rows=6_000)
    champion, baseline = holdout_scores(frame, "Exited", "binary", tuned=True)
    blind, _ = holdout_scores(frame, "Exited", "binary", tuned=True, without="NumOfProducts")
    decision = decide(blind, champion, baseline, PromotionPolicy())
    assert "guard:recall" in {g.name for g in decision.failed()}
    guard = next(g for g in decision.gates if g.name == "guard:recall").numbers
    # At its own, lower threshold it flags more rows and even shows more recall; at the
    # champion's workload it catches fewer positives, which is what the guard judges.
    assert guard["candidate_alert_rate"] > guard["champion_alert_rate"]
    assert guard["drop"] > 0.02


def test_a_better_regression_model_is_promoted_and_a_worse_one_refused():
    frame, _ = _bundled("diabetes")
    weak, baseline = holdout_scores(frame, "target", "regression", params={"max_iter": 2})
    strong, _ = holdout_scores(frame, "target", "regression", params={"max_depth": 2})
    assert decide(strong, weak, baseline, PromotionPolicy()).approved
    refused = decide(weak, strong, baseline, PromotionPolicy())
    assert "no significant improvement" in refused.summary()


def test_refusal_says_how_many_rows_would_make_a_real_gain_significant() -> None:
    from pgmlops.domain.promotion.gates import first_version_remedy

    text = first_version_remedy(400, mean=0.04, low=-0.01, needed=0.01)
    # half-width 0.05 must shrink to 0.03: 400 * (0.05 / 0.03)^2 = 1,112 rows
    assert "about 1,112 labelled rows (now 400)" in text
    assert text.endswith("or force the promotion, with a reason")


def test_refusal_of_no_gain_says_more_rows_would_not_help() -> None:
    from pgmlops.domain.promotion.gates import first_version_remedy

    text = first_version_remedy(400, mean=-0.02, low=-0.07, needed=0.01)
    assert "more rows of the same kind would not change it" in text
    assert "force the promotion, with a reason" in text
