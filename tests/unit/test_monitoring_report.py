"""The HTML monitoring report: one self-contained document, verdict first, a plot per feature."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.drift import compare
from pgmlops.domain.monitoring.profile import build_profile
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.services.monitoring.report import bar_chart, render_html
from pgmlops.services.monitoring.run import HistoryPoint, MonitoringResult, distributions


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


def test_the_overall_status_comes_before_the_features(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    assert drifted.dataset_drift and drifted.status.level == "degraded"
    assert html.index('data-status="degraded"') < html.index("<svg")
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


def test_drifted_features_come_first_and_the_rest_are_folded(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    moved = drifted.drift.drifted_features
    steady = [f.name for f in drifted.drift.features if not f.drifted]
    assert moved and steady
    table = html[html.index('<table id="features">') :]
    rows = re.findall(r'<tr><td><a href="#f-([^"]+)"', table)
    assert rows[: len(moved)] == sorted(moved, key=rows.index) and set(rows[: len(moved)]) == set(
        moved
    )
    folded = html[html.index('<details id="steady">') : html.index("</details>")]
    assert all(f'id="f-{name}"' in folded for name in steady)
    assert not any(f'id="f-{name}"' in folded for name in moved)


def test_p_values_are_in_scientific_notation(drifted: MonitoringResult) -> None:
    html = render_html(drifted)
    assert "0.000<" not in html
    assert re.search(r"<td>\d\.\de-\d\d</td>", html)


def test_an_empty_missing_bin_is_not_drawn() -> None:
    dist = {
        "labels": ["≤1", ">1", "missing"],
        "reference": [0.5, 0.5, 0.0],
        "current": [0.4, 0.6, 0],
    }
    assert "(missing)" not in bar_chart(dist, "x")
    dist["current"] = [0.4, 0.5, 0.1]
    assert "(missing)" in bar_chart(dist, "x")


def test_runs_over_time_are_drawn_on_dated_axes(drifted: MonitoringResult) -> None:
    points = [
        HistoryPoint(
            run_id=i,
            created_at=datetime(2026, 3, 1 + 3 * i, tzinfo=UTC),
            version=3,
            rows=2_000,
            share_drifted=0.1 * i,
            dataset_drift=i == 3,
            prediction_drift=None,
            mean_confidence=0.8 - 0.02 * i,
            primary_metric="roc_auc",
            estimated_primary=0.85,
            labelled_primary=None if i == 0 else 0.86 - 0.03 * i,
            n_labels=300,
            reasons=[],
            status="degraded" if i == 3 else "ok",
        )
        for i in range(4)
    ]
    html = render_html(drifted, points)
    over_time = html[html.index('id="drift-over-time"') : html.index("<h2>Features")]
    assert "2026-03-01" in over_time and "2026-03-10" in over_time
    assert over_time.count('class="series"') == 4  # drift share + three performance lines
    assert "degraded run" in over_time


def test_a_labelled_window_shows_its_confusion_matrix_and_every_metric(
    drifted: MonitoringResult,
) -> None:
    lab = {
        **drifted.labelled_performance,
        "n_labels": 400,
        "metrics": {"roc_auc": 0.84, "precision": 0.782},
        "judged": [
            {
                "metric": "roc_auc",
                "role": "primary",
                "current": 0.84,
                "reference": 0.85,
                "drop": 0.01,
                "p_value": None,
                "verdict": "ok",
                "note": "",
            },
            {
                "metric": "precision",
                "role": "other",
                "current": 0.782,
                "reference": 0.92,
                "drop": 0.15,
                "p_value": 0.0025,
                "verdict": "warning",
                "note": "precision fell",
            },
        ],
        "view": {"kind": "confusion", "labels": ["0", "1"], "matrix": [[250, 30], [60, 60]]},
    }
    html = render_html(drifted.model_copy(update={"labelled_performance": lab}))
    assert 'data-verdict="warning"' in html and "2.5e-03" in html
    confusion = html[html.index('id="confusion"') :]
    assert confusion.count('class="cell"') == 4 and ">250<" in confusion
