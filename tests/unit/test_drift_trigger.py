"""The drift trigger policy: `any` retrains on dataset drift, `harmful` only when it hurts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.drift import compare
from pgmlops.domain.monitoring.profile import build_profile
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.retraining_config import TriggerSwitches
from pgmlops.services.monitoring.run import MonitoringResult
from pgmlops.services.retraining.triggers import drift_trigger


@pytest.fixture(scope="module")
def drifted() -> Any:
    x, _, schema = prepare_training_frame(make_churn(6_000, seed=1), "Exited")
    current = coerce_features(make_churn(2_000, seed=2, numeric_shift=0.5), schema)
    report = compare(build_profile(x, schema), current, schema=schema)
    assert report.dataset_drift
    return report


def _signal(drop: float | None, degraded: bool, **extra: Any) -> dict[str, Any]:
    return {"metric": "roc_auc", "drop": drop, "limit": 0.05, "degraded": degraded, **extra}


def _result(drift: Any, confidence: dict[str, Any], estimated: dict[str, Any]) -> MonitoringResult:
    return MonitoringResult(
        model_name="churn",
        version=1,
        task="binary",
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        window={"rows": 2_000},
        drift=drift,
        dataset_drift=drift.dataset_drift,
        confidence=confidence,
        estimated_performance=estimated,
        labelled_performance={"n_labels": 0, "min_labels": 200, "degraded": False},
    )


def test_the_default_drift_policy_is_any() -> None:
    assert TriggerSwitches().drift_policy == "any"


def test_any_fires_on_drift_alone_and_harmful_does_not(drifted: Any) -> None:
    result = _result(drifted, _signal(0.01, False), _signal(0.004, False))
    fired, why = drift_trigger(result, "any")
    assert fired and why.startswith("data drift") and "drift_policy any" in why
    fired, why = drift_trigger(result, "harmful")
    assert not fired
    assert "not harmful" in why and "estimated performance" in why and "confidence" in why


@pytest.mark.parametrize("which", ["estimated", "confidence"])
def test_harmful_fires_when_estimated_performance_or_confidence_is_degraded(
    drifted: Any, which: str
) -> None:
    bad, good = _signal(0.09, True), _signal(0.01, False)
    result = _result(drifted, good, bad) if which == "estimated" else _result(drifted, bad, good)
    fired, why = drift_trigger(result, "harmful")
    assert fired and "harmful:" in why and "9.0% worse" in why


def test_harmful_counts_drift_when_harm_cannot_be_judged(drifted: Any) -> None:
    unknown = _signal(None, False, note="not estimated: regression")
    fired, why = drift_trigger(_result(drifted, _signal(None, False), unknown), "harmful")
    assert fired and "cannot be judged" in why


def test_no_dataset_drift_fires_under_neither_policy(drifted: Any) -> None:
    calm = drifted.model_copy(update={"dataset_drift": False})
    result = _result(calm, _signal(0.5, True), _signal(0.5, True))
    for policy in ("any", "harmful"):
        fired, why = drift_trigger(result, policy)
        assert not fired and "no dataset drift" in why


def test_an_unknown_drift_policy_is_refused_naming_the_key(tmp_path: Any) -> None:
    from pgmlops.config import load_settings
    from pgmlops.errors import ConfigError

    path = tmp_path / "pgmlops.yaml"
    path.write_text("retraining:\n  triggers:\n    drift_policy: sometimes\n")
    with pytest.raises(ConfigError, match=r"retraining\.triggers\.drift_policy"):
        load_settings(path)


def test_harmful_does_not_fire_on_a_significant_fall_within_the_performance_tolerance(
    drifted: Any,
) -> None:
    # Issue 24: a fall beyond the estimate's own narrow null but within performance_drop is
    # no harm (it retrained on 31% of harmless real-shift windows).
    estimated = _signal(0.012, False, p_value=0.004, significant=True)
    fired, why = drift_trigger(_result(drifted, _signal(0.01, False), estimated), "harmful")
    assert not fired and "not harmful" in why


def test_harmful_fires_when_labelled_performance_is_degraded(drifted: Any) -> None:
    result = _result(drifted, _signal(0.0, False), _signal(0.0, False))
    result.labelled_performance = _signal(0.08, True)
    fired, why = drift_trigger(result, "harmful")
    assert fired and "labelled performance 8.0% worse (limit 5%)" in why


def test_harmful_ignores_a_significant_estimated_rise(drifted: Any) -> None:
    estimated = _signal(-0.02, False, p_value=0.99, significant=False)
    fired, _ = drift_trigger(_result(drifted, _signal(0.0, False), estimated), "harmful")
    assert not fired
