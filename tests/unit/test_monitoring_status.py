"""One overall status per monitoring run, and every labelled metric judged, not only the primary."""

from __future__ import annotations

import numpy as np
import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.drift import compare
from pgmlops.domain.monitoring.labelled_views import MAX_RESIDUAL_POINTS, labelled_view
from pgmlops.domain.monitoring.profile import build_profile
from pgmlops.domain.monitoring.status import Status, judge_metrics, overall_status
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.training.frame import prepare_training_frame

QUIET = {"drop": 0.0, "limit": 0.1, "degraded": False}


@pytest.fixture(scope="module")
def quiet_drift():
    x, _, schema = prepare_training_frame(make_churn(2_000, seed=1), "Exited")
    current = coerce_features(make_churn(1_000, seed=2), schema)
    return compare(build_profile(x, schema), current, DriftPolicy(), schema=schema)


def _judge(metrics: dict, reference: dict, **kw) -> list[dict]:
    args = {
        "primary": "roc_auc",
        "guards": ["recall"],
        "n_labels": 500,
        "min_labels": 200,
        "limit": 0.05,
        "alpha": 0.01,
        "null_for": None,
    } | kw
    return judge_metrics(metrics, reference, **args)


def _labelled(judged: list[dict], n_labels: int = 500) -> dict:
    return {"n_labels": n_labels, "judged": judged, "bad_labels": {"count": 0}}


def test_a_precision_fall_outside_the_guards_is_a_warning_not_ok(quiet_drift) -> None:
    judged = _judge(
        {"roc_auc": 0.85, "recall": 0.70, "precision": 0.782},
        {"roc_auc": 0.86, "recall": 0.71, "precision": 0.920},
    )
    by_name = {r["metric"]: r for r in judged}
    assert [r["metric"] for r in judged] == ["roc_auc", "recall", "precision"]
    assert by_name["precision"]["verdict"] == "warning"
    assert by_name["roc_auc"]["verdict"] == by_name["recall"]["verdict"] == "ok"
    status = overall_status([], quiet_drift, QUIET, QUIET, _labelled(judged))
    assert status.level == "warning"
    assert any("precision 0.920 → 0.782" in w for w in status.warnings)


def test_a_guard_metric_falling_is_degraded(quiet_drift) -> None:
    judged = _judge(
        {"roc_auc": 0.85, "precision": 0.782},
        {"roc_auc": 0.86, "precision": 0.920},
        guards=["precision"],
    )
    assert judged[1]["role"] == "guard" and judged[1]["verdict"] == "degraded"


def test_a_fall_on_too_few_labels_warns_and_says_how_many_are_needed() -> None:
    judged = _judge({"roc_auc": 0.70}, {"roc_auc": 0.86}, n_labels=80)
    assert judged[0]["verdict"] == "warning" and "needs 200 labels" in judged[0]["note"]


def test_a_fall_the_test_calls_noise_is_not_flagged() -> None:
    # Null draws as wide as the fall itself: p is large, so nothing is said.
    wide = np.linspace(-0.3, 0.3, 401)
    judged = _judge({"precision": 0.85}, {"precision": 0.92}, null_for=lambda _: wide)
    assert judged[0]["verdict"] == "ok" and judged[0]["p_value"] > 0.01


def test_degraded_reasons_win_and_a_quiet_run_is_ok(quiet_drift) -> None:
    assert overall_status([], quiet_drift, QUIET, QUIET, _labelled([])).level == "ok"
    status = overall_status(["data drift: x"], quiet_drift, QUIET, QUIET, _labelled([]))
    assert status.level == "degraded" and status.reasons == ["data drift: x"]


def test_fail_on_is_at_or_above_the_threshold() -> None:
    warning = Status(level="warning", reasons=[], warnings=["w"])
    assert warning.fails("warning") and not warning.fails("degraded")
    assert Status(level="degraded", reasons=["r"], warnings=[]).fails("warning")
    assert not Status(level="ok", reasons=[], warnings=[]).fails("warning")


def test_labelled_views_count_classes_and_sample_residuals() -> None:
    view = labelled_view(
        "binary", np.array(["0", "1", "1", "0"]), np.array(["0", "1", "0", "0"]), ["0", "1"]
    )
    assert view == {"kind": "confusion", "labels": ["0", "1"], "matrix": [[2, 0], [1, 1]]}
    truth = np.arange(1_000, dtype=float)
    residuals = labelled_view("regression", truth, truth - 2.0, None)
    assert residuals["n"] == 1_000 and len(residuals["residual"]) == MAX_RESIDUAL_POINTS
    assert set(residuals["residual"]) == {2.0}
