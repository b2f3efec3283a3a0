"""One decision scale: confidence and risk level never contradict a binary model's class."""

from __future__ import annotations

import numpy as np
import pytest

from pgmlops.config import ServingConfig
from pgmlops.domain.decision import (
    DEFAULT_RISK_LEVELS,
    answer_scale,
    confidence,
    decision_score,
    scale_one,
)

THRESHOLDS = [0.0, 0.03, 0.2, 0.5, 0.81, 1.0]


def test_the_reported_contradiction_is_gone() -> None:
    # Issue 24: threshold 0.2, p 0.2275 was "Yes" with confidence 0.5449 and risk "low".
    (conf,), (risk,) = answer_scale(np.array([0.2275]), "binary", 0.2, DEFAULT_RISK_LEVELS)
    assert risk != "low"
    assert conf == pytest.approx((0.2275 - 0.2) / 0.8)  # just above the line: not confident


@pytest.mark.parametrize("t", THRESHOLDS)
def test_low_risk_is_exactly_the_negative_answers(t: float) -> None:
    p = np.concatenate([np.linspace(0, 1, 1001), [t]])
    _, risks = answer_scale(p, "binary", t, DEFAULT_RISK_LEVELS)
    positive = p >= t
    assert [r == "low" for r in risks] == (~positive).tolist()


@pytest.mark.parametrize("t", [0.03, 0.2, 0.5, 0.81])
def test_confidence_is_zero_at_the_threshold_and_one_at_certainty(t: float) -> None:
    conf = confidence(np.array([t, 0.0, 1.0]), "binary", t)
    assert conf.tolist() == pytest.approx([0.0, 1.0, 1.0])
    # Monotone away from the threshold on both sides.
    below = confidence(np.linspace(0, t, 50), "binary", t)
    above = confidence(np.linspace(t, 1, 50), "binary", t)
    assert np.all(np.diff(below) <= 0) and np.all(np.diff(above) >= 0)


def test_an_untuned_threshold_keeps_the_old_scale() -> None:
    p = np.linspace(0, 1, 101)
    assert confidence(p, "binary", None) == pytest.approx(np.abs(p - 0.5) * 2)
    assert confidence(p, "binary", 0.5) == pytest.approx(np.abs(p - 0.5) * 2)
    assert decision_score(p, 0.5) == pytest.approx(p)


@pytest.mark.parametrize("t", THRESHOLDS)
def test_one_row_and_many_rows_answer_alike(t: float) -> None:
    levels = {"none": 0.0, "watch": 0.3, "act": 0.5, "urgent": 0.9}
    p = np.random.default_rng(1).random(300)
    confs, risks = answer_scale(p, "binary", t, levels)
    for k, value in enumerate(p.tolist()):
        assert scale_one(value, "binary", t, levels) == (pytest.approx(confs[k]), risks[k])
    matrix = np.random.default_rng(2).dirichlet([1, 1, 1], 100)
    confs, risks = answer_scale(matrix, "multiclass", None, levels)
    for k, row in enumerate(matrix.tolist()):
        assert scale_one(row, "multiclass", None, levels) == (confs[k], risks[k])


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"low": 0.0, "high": 0.7}, "one at 0.5"),
        ({"low": 0.1, "high": 0.5}, "starting at 0.0"),
        ({"low": 0.0, "mid": 0.5, "high": 1.5}, "must be in [0, 1)"),
        ({}, "at least two bands"),
    ],
)
def test_refuses_risk_levels_that_straddle_the_decision(levels: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ServingConfig(risk_levels=levels)


def test_the_old_risk_bands_setting_is_refused_with_its_new_name() -> None:
    with pytest.raises(ValueError, match="risk_bands was replaced by risk_levels"):
        ServingConfig.model_validate({"risk_bands": {"low": 0.0, "high": 0.7}})
