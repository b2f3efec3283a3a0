"""The HTML monitoring report: one self-contained document, verdict first, a plot per feature."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.drift import compare
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.profile import build_profile
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.training_frame import prepare_training_frame
from pgmlops.services.monitoring import MonitoringResult, distributions
from pgmlops.services.report import bar_chart, render_html


def _result(**drift_knobs: object) -> MonitoringResult:
    x, _, schema = prepare_training_frame(make_churn(3_000, seed=1), "Exited")
    profile = build_profile(x, schema)
    current = coerce_features(make_churn(2_000, seed=2, **drift_knobs), schema)
    drift = compare(profile, current, DriftPolicy(), schema=schema)
    reasons = [f"data drift: {drift.reason}"] if drift.dataset_drift else []
    return MonitoringResult(
        model_name="churn",
        version=3,
        task="binary",
        run_id=7,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        window={"rows": 2_000, "first_at": None, "last_at": None, "labelled": 0},
        drift=drift,
        dataset_drift=drift.dataset_drift,
        confidence={
            "reference": 0.6,
            "current": 0.5,
            "drop": 1 / 6,
            "limit": 0.1,
            "degraded": True,
        },
        estimated_performance={
            "metric": "roc_auc",
            "metrics": {"roc_auc": 0.84, "accuracy": 0.85},
            "reference": {"roc_auc": 0.85, "accuracy": 0.86},
            "drop": 0.012,
            "limit": 0.05,
            "degraded": False,
        },
        labelled_performance={
            "n_labels": 0,
            "min_labels": 200,
            "metric": "roc_auc",
            "metrics": {},
            "reference": {"roc_auc": 0.83},
            "drop": None,
            "limit": 0.05,
            "degraded": False,
            "bad_labels": {"count": 0, "examples": []},
        },
        distributions=distributions(profile, current, None),
        reasons=reasons,
    )


@pytest.fixture(scope="module")
def drifted() -> MonitoringResult:
    return _result(numeric_shift=1.0, category_mix={"France": 0.1, "Germany": 0.8, "Spain": 0.1})


def test_report_is_one_self_contained_document(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"https?://", html), "the report must not reference any URL"
    assert "<script" not in html and "<link" not in html and "<img" not in html


def test_every_feature_gets_its_own_plot_and_numbers(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    features = drifted.drift.features
    # One chart per feature; the output is not profiled in this run.
    assert html.count("<svg") == len(features)
    for f in features:
        assert f'id="f-{f.name}"' in html
    assert ">ks<" in html and ">chi2<" in html
    assert "corrected p" in html and "PSI" in html


def test_the_dataset_verdict_comes_before_the_features(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    assert drifted.dataset_drift
    verdict = html.index("Dataset drift detected")
    assert verdict < html.index("<svg")
    assert html.index("data drift:") < html.index("<svg")


def test_a_quiet_run_says_so() -> None:
    html = render_html(_result())
    assert "No dataset drift" in html


def test_labels_are_escaped() -> None:
    chart = bar_chart(
        {"labels": ["<script>x</script>"], "reference": [0.4], "current": [0.6]}, "<b>"
    )
    assert "<script>" not in chart and "&lt;script&gt;" in chart
    assert chart.count("<rect") == 2
