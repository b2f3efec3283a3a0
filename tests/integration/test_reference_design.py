"""A trained version's reference profile records how repeated its rows are, for the drift tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.monitoring.drift import ReferenceProfile, compare
from pgmlops.services.commands import train_version
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import load_profile
from pgmlops.services.serving.load import load_version


def test_training_stores_the_design_effect_of_repeated_feature_vectors(ctx: Context) -> None:
    rng = np.random.default_rng(0)
    # 60 people with fixed covariates, each seen 20 times with a varying outcome (panel data).
    people = pd.DataFrame({"age": np.arange(20, 80), "plan": rng.choice(["a", "b"], 60)})
    rows = people.loc[people.index.repeat(20)].reset_index(drop=True)
    rows["spend"] = rng.gamma(2.0, 50.0, len(rows)) + rows["age"]
    result = train_version(
        ctx, data=rows, target="spend", model_name="panel", actor="t", onnx=False,
        overrides={"params": {"max_iter": 20}, "reference_folds": 0},
    )  # fmt: skip
    profile = load_profile(ctx, result.version)
    split = result.version.card.split
    assert profile.design is not None and profile.output is not None
    assert profile.output.design is not None
    # Every distinct vector has 20 copies and the split keeps copies together: deff is 20.
    assert profile.design.deff == pytest.approx(20.0)
    assert profile.output.design.deff == pytest.approx(20.0)
    assert profile.design.share == pytest.approx(split.train_rows / len(rows))
    assert profile.design.distinct == split.train_rows // 20
    assert profile.inflation == pytest.approx(
        profile.design.share + (1 - profile.design.share) * 20.0
    )


def _panel(seed: int) -> pd.DataFrame:
    """300 people seen about 25 times each: fixed covariates, a varying outcome."""
    rng = np.random.default_rng(seed)
    people = pd.DataFrame(
        {
            "age": rng.integers(20, 80, 300).astype(float),
            "income": rng.gamma(3.0, 10.0, 300).round(1),
            "plan": rng.choice(["a", "b", "c"], 300),
        }
    )
    rows = people.loc[people.index.repeat(1 + rng.poisson(24, 300))].reset_index(drop=True)
    rows["spend"] = 3.0 * rows["age"] + rows["income"] + rng.normal(0.0, 20.0, len(rows))
    return rows


def test_prediction_drift_on_repeated_rows_is_quiet_in_distribution_and_sees_a_shift(
    ctx: Context,
) -> None:
    rows = _panel(1)
    result = train_version(
        ctx, data=rows, target="spend", model_name="panel", actor="t", onnx=False,
        overrides={"params": {"max_iter": 30}, "output_reference": "out_of_fold"},
    )  # fmt: skip
    profile = load_profile(ctx, result.version)
    split = result.version.card.split
    assert profile.output is not None and profile.output.design is not None
    # Every labelled row's out-of-fold output: the whole training mix, not a few clusters.
    assert profile.output.design.rows == "out_of_fold"
    assert profile.output.distribution.n == split.train_rows + split.validation_rows + (
        split.holdout_rows
    )
    model = load_version(ctx, result.version)
    names = result.version.card.feature_schema.names
    rng = np.random.default_rng(2)
    z = ((rows["age"] - rows["age"].mean()) / rows["age"].std()).to_numpy()
    older = np.exp(0.25 * z) / np.exp(0.25 * z).sum()
    alarms, outputs_moved = 0, 0
    for _ in range(10):
        same = rows.iloc[rng.choice(len(rows), 2_000)].reset_index(drop=True)
        shifted = rows.iloc[rng.choice(len(rows), 2_000, p=older)].reset_index(drop=True)
        for window, seen in ((same, "same"), (shifted, "shifted")):
            scores = model.engine.predict_frame(window[names]).predicted
            report = compare(profile, window[names], scores=np.asarray(scores, dtype=float))
            assert report.output is not None and "held-out rows' alone" not in report.output.reason
            if seen == "same":
                alarms += report.output.drifted or report.dataset_drift
            else:
                outputs_moved += report.output.drifted
    assert alarms <= 1
    assert outputs_moved >= 8


def _alarms_and_detections(ctx: Context, rows: pd.DataFrame, version, windows: int) -> tuple:
    """Prediction-drift alarms on ``windows`` resamples of ``rows``, and on older-tilted ones."""
    profile = load_profile(ctx, version)
    model = load_version(ctx, version)
    names = version.card.feature_schema.names
    rng = np.random.default_rng(2)
    z = ((rows["age"] - rows["age"].mean()) / rows["age"].std()).to_numpy()
    older = np.exp(0.25 * z) / np.exp(0.25 * z).sum()
    alarms, moved = 0, 0
    for _ in range(windows):
        same = rows.iloc[rng.choice(len(rows), 5_000)].reset_index(drop=True)
        shifted = rows.iloc[rng.choice(len(rows), 5_000, p=older)].reset_index(drop=True)
        for window, counter in ((same, "alarms"), (shifted, "moved")):
            scores = np.asarray(model.engine.predict_frame(window[names]).predicted, dtype=float)
            report = compare(profile, window[names], scores=scores)
            assert report.output is not None
            if counter == "alarms":
                alarms += report.output.drifted
            else:
                moved += report.output.drifted
    return alarms, moved


def test_by_default_prediction_drift_compares_outputs_as_served_quiet_yet_seeing_a_shift(
    ctx: Context,
) -> None:
    # Traffic repeats the training people, so it is answered with the final model's own
    # outputs on their vectors: the reference must hold those, for every labelled row.
    rows = _panel(5)
    result = train_version(
        ctx, data=rows, target="spend", model_name="panel", actor="t", onnx=False,
        overrides={"params": {"max_iter": 60}},
    )  # fmt: skip
    profile = load_profile(ctx, result.version)
    split = result.version.card.split
    assert profile.output is not None and profile.output.design is not None
    assert profile.output.design.rows == "served"
    assert profile.output.distribution.n == split.train_rows + split.validation_rows + (
        split.holdout_rows
    )
    alarms, moved = _alarms_and_detections(ctx, rows, result.version, 10)
    assert alarms <= 1
    assert moved >= 8


def test_a_version_from_before_out_of_fold_outputs_still_tests_them_and_says_so(
    ctx: Context,
) -> None:
    rows = _panel(3)
    result = train_version(
        ctx, data=rows, target="spend", model_name="panel", actor="t", onnx=False,
        overrides={"params": {"max_iter": 20}, "reference_folds": 0},
    )  # fmt: skip
    profile = load_profile(ctx, result.version)
    assert profile.output is not None and profile.output.design is not None
    assert profile.output.design.rows == "held_out"
    # A profile stored before the field existed reads back without it.
    old = ReferenceProfile.model_validate_json(
        profile.model_dump_json(exclude={"output": {"design": {"rows"}}})
    )
    assert old.output is not None and old.output.design is not None
    assert old.output.design.rows is None
    window = rows.sample(1_000, random_state=4).reset_index(drop=True)
    scores = np.full(len(window), float(rows["spend"].mean()))
    for stored, noted in ((profile, False), (old, True)):
        report = compare(stored, window.drop(columns="spend"), scores=scores)
        assert report.output is not None
        assert ("held-out rows' alone" in report.output.reason) is noted
