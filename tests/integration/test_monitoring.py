"""Monitoring a production model's logged traffic, on SQLite and PostgreSQL.

Traffic is scored by the trained model exactly as the server scores it (`predict_records`)
and written to the prediction log through the prediction store, so every test reads real
rows back through the monitoring window query.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pgmlops.api.monitoring_routes import router
from pgmlops.cli import app as cli_app
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.errors import ConfigError, DataError
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import latest_run, run_history, run_monitor
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.monitoring.prediction_windows import read_window
from pgmlops.store.monitoring.runs import MonitoringStore
from pgmlops.store.prediction_log.predictions import PredictionStore

ACTOR = "tester"
SHIFTED_NUMERIC = {"Age", "CreditScore", "Balance", "EstimatedSalary"}
# CBPE against the labelled truth on held-out demo traffic: measured gaps are about 0.02-0.03
# (the isotonic calibration is fitted on ~1,200 validation rows), so 0.05 leaves headroom.
ESTIMATE_TOLERANCE = 0.05


@pytest.fixture(scope="session")
def trained_churn(
    tmp_path_factory: pytest.TempPathFactory, churn_csv: Path
) -> tuple[ModelCard, dict[str, bytes]]:
    """One churn model trained per session: its card and its artifacts' bytes."""
    root = tmp_path_factory.mktemp("trained")
    settings = Settings(
        database_url=f"sqlite:///{root / 'train.db'}",
        artifact_root=str(root / "artifacts"),
        model_name="churn",
    )
    ctx = Context(settings)
    try:
        trained = train_command(
            ctx, data=str(churn_csv), target="Exited", model_name="churn", actor=ACTOR, onnx=False
        )
        mv = ctx.registry.get_version("churn", trained["version"])
        return mv.card, {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    finally:
        ctx.close()


@pytest.fixture
def production(ctx: Context, trained_churn: tuple[ModelCard, dict[str, bytes]]) -> int:
    """The session's model registered in this test's database and promoted by the gates."""
    card, blobs = trained_churn
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    version = ctx.registry.create_version("churn", files, card, ACTOR, sign=sign).version
    promote_command(ctx, model_name="churn", version=version, force=False, reason=None, actor=ACTOR)
    return version


def log_traffic(ctx: Context, frame: pd.DataFrame, version: int) -> list[tuple[str, str]]:
    """Score demo rows with the version as the server does, log them; (id, true label) pairs."""
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    names = model.card.feature_schema.names
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    _, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    PredictionStore(ctx.db).write_batch(records)
    return [(r.id, str(label)) for r, label in zip(records, frame["Exited"], strict=True)]


def with_policy(ctx: Context, **drift: Any) -> None:
    monitoring = ctx.settings.monitoring.model_copy(update={"drift": DriftPolicy(**drift)})
    ctx.settings = ctx.settings.model_copy(update={"monitoring": monitoring})


def test_in_distribution_traffic_raises_no_alarm(ctx: Context, production: int) -> None:
    log_traffic(ctx, make_churn(3_000, seed=21), production)
    result = run_monitor(ctx, "churn")
    assert result.version == production and result.window["rows"] == 3_000
    assert result.drift.drifted_features == []
    assert not result.dataset_drift and result.prediction_drift is False
    assert not result.confidence["degraded"]
    assert not result.estimated_performance["degraded"]
    assert not result.labelled_performance["degraded"]
    assert result.reasons == []


def test_shifted_numeric_features_are_flagged(ctx: Context, production: int) -> None:
    log_traffic(ctx, make_churn(3_000, seed=22, numeric_shift=0.8), production)
    result = run_monitor(ctx, "churn")
    assert set(result.drift.drifted_features) == SHIFTED_NUMERIC
    for name in SHIFTED_NUMERIC:
        feature = result.drift.feature(name)
        assert feature.test == "ks" and feature.p_adjusted < 0.05
        assert feature.wasserstein_norm is not None and feature.wasserstein_norm >= 0.1
    # 4 of 10 features is below the default 50% share, but the domain classifier, run on the
    # reference rows stored at training, tells the window from the reference.
    assert result.drift.multivariate is not None and result.drift.multivariate.drifted
    assert result.dataset_drift
    assert any("domain classifier" in line for line in result.reasons)
    with_policy(ctx, multivariate=False)
    share_only = run_monitor(ctx, "churn")
    assert not share_only.dataset_drift and share_only.drift.multivariate is None
    with_policy(ctx, multivariate=False, drift_share=0.3)
    alarmed = run_monitor(ctx, "churn")
    assert alarmed.dataset_drift
    assert any(line.startswith("data drift:") for line in alarmed.reasons)


def test_confidence_falling_on_a_covariate_shift_is_not_decay(
    ctx: Context, production: int
) -> None:
    """Older, richer customers sit nearer the boundary: less confident, ranked as well."""
    log_traffic(ctx, make_churn(3_000, seed=28, numeric_shift=1.0), production)
    result = run_monitor(ctx, "churn")
    conf = result.confidence
    assert conf["significant"] and conf["drop"] > conf["limit"]
    assert not conf["estimate_agrees"] and not conf["degraded"]
    assert not any(line.startswith("confidence decay") for line in result.reasons)


def test_changed_category_mix_flags_geography(ctx: Context, production: int) -> None:
    mix = {"France": 0.2, "Germany": 0.6, "Spain": 0.2}
    log_traffic(ctx, make_churn(3_000, seed=23, category_mix=mix), production)
    with_policy(ctx, critical_features=["Geography"])
    result = run_monitor(ctx, "churn")
    assert result.drift.drifted_features == ["Geography"]
    geography = result.drift.feature("Geography")
    assert geography.test == "chi2" and geography.js is not None and geography.js >= 0.1
    assert result.dataset_drift, "a drifted critical feature is dataset drift"
    assert "Geography" in result.reasons[0]


def test_estimated_performance_is_close_to_the_labelled_truth(
    ctx: Context, production: int
) -> None:
    labelled = log_traffic(ctx, make_churn(4_000, seed=24), production)
    PredictionStore(ctx.db).add_feedback(labelled)
    result = run_monitor(ctx, "churn")
    estimated = result.estimated_performance
    truth = result.labelled_performance
    assert truth["n_labels"] == 4_000
    for metric in ("roc_auc", "accuracy"):
        gap = abs(estimated["metrics"][metric] - truth["metrics"][metric])
        assert gap <= ESTIMATE_TOLERANCE, f"{metric}: estimate off by {gap:.3f}"
    assert estimated["metric"] == "roc_auc" and estimated["reference"]["roc_auc"] > 0.7


def test_feedback_gives_labelled_performance_and_bad_labels_are_counted(
    ctx: Context, production: int
) -> None:
    labelled = log_traffic(ctx, make_churn(1_000, seed=25), production)
    feedback = PredictionStore(ctx.db)
    good = labelled[:300]
    feedback.add_feedback([*good[:-3], *((pid, f"{label}.0") for pid, label in good[-3:])])
    feedback.add_feedback([(pid, "maybe") for pid, _ in labelled[300:305]])
    result = run_monitor(ctx, "churn")
    perf = result.labelled_performance
    assert perf["n_labels"] == 300, "'1.0' counts as class '1'"
    assert perf["bad_labels"] == {"count": 5, "examples": ["maybe"]}
    assert perf["metrics"]["roc_auc"] > 0.7 and not perf["degraded"]

    # Newer labels supersede older ones: every label flipped makes the model look terrible.
    feedback.add_feedback([(pid, "0" if label == "1" else "1") for pid, label in good])
    flipped = run_monitor(ctx, "churn").labelled_performance
    assert flipped["n_labels"] == 300 and flipped["degraded"]
    assert flipped["metrics"]["roc_auc"] < 0.3


def test_labelled_performance_waits_for_enough_labels(ctx: Context, production: int) -> None:
    labelled = log_traffic(ctx, make_churn(1_000, seed=26), production)
    flipped = [(pid, "0" if label == "1" else "1") for pid, label in labelled[:80]]
    PredictionStore(ctx.db).add_feedback(flipped)
    perf = run_monitor(ctx, "churn").labelled_performance
    assert perf["n_labels"] == 80 < perf["min_labels"]
    assert perf["metrics"]["roc_auc"] < 0.3 and not perf["degraded"]


def test_a_version_trained_before_reference_outputs_is_monitored_without_intervals(
    ctx: Context, trained_churn: tuple[ModelCard, dict[str, bytes]]
) -> None:
    card, blobs = trained_churn
    files = {k: ctx.artifacts.put(v) for k, v in blobs.items() if k != "reference_outputs"}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    version = ctx.registry.create_version("churn", files, card, ACTOR, sign=sign).version
    log_traffic(ctx, make_churn(1_000, seed=29), version)
    result = run_monitor(ctx, "churn", version=version)
    assert "retrain" in result.confidence["note"] and not result.confidence["degraded"]
    assert result.labelled_performance["reference"] == card.metrics
    assert result.estimated_performance["reference_interval"] is None
    assert result.estimated_performance["metrics"]["roc_auc"] > 0.7


def test_a_window_with_too_few_rows_is_refused(ctx: Context, production: int) -> None:
    log_traffic(ctx, make_churn(50, seed=27), production)
    with pytest.raises(DataError, match=r"has 50 logged predictions .* at least 200"):
        run_monitor(ctx, "churn")
    assert MonitoringStore(ctx.db).latest_run("churn") is None


def test_a_version_without_reference_profile_is_refused(ctx: Context, production: int) -> None:
    mv = ctx.registry.get_version("churn", production)
    files = {k: f for k, f in mv.files.items() if k != "reference"}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    bare = ctx.registry.create_version("churn", files, mv.card, ACTOR, sign=sign)
    with pytest.raises(DataError, match=rf"churn v{bare.version} has no reference profile"):
        run_monitor(ctx, "churn", version=bare.version)


def test_both_window_kinds_at_once_are_refused(ctx: Context) -> None:
    with pytest.raises(ConfigError, match="not both"):
        run_monitor(ctx, "churn", last=10, since=timedelta(hours=1))


def test_runs_are_stored_and_read_back(ctx: Context, production: int) -> None:
    log_traffic(ctx, make_churn(1_000, seed=28, numeric_shift=0.8), production)
    assert latest_run(ctx, "churn") is None
    first = run_monitor(ctx, "churn")
    second = run_monitor(ctx, "churn", last=500)
    run_monitor(ctx, "churn", store_run=False)
    latest = latest_run(ctx, "churn")
    assert latest is not None and latest.run_id == second.run_id != first.run_id
    assert latest.window["rows"] == 500
    assert latest.drift.drifted_features == second.drift.drifted_features
    history = run_history(ctx, "churn", limit=10)
    assert [p.run_id for p in history] == [first.run_id, second.run_id]
    assert history[0].share_drifted == pytest.approx(first.drift.share_drifted)
    assert history[0].mean_confidence == pytest.approx(first.confidence["current"])
    assert history[0].estimated_primary == pytest.approx(
        first.estimated_performance["metrics"]["roc_auc"]
    )


def test_api_serves_the_latest_run_and_the_series(ctx: Context, production: int) -> None:
    api = FastAPI()
    api.include_router(router)
    api.state.ctx = ctx
    client = TestClient(api)
    missing = client.get("/monitoring/drift")
    assert missing.status_code == 404 and "no monitoring run" in missing.json()["error"]
    log_traffic(ctx, make_churn(1_000, seed=29), production)
    result = run_monitor(ctx, "churn")
    latest = client.get("/monitoring/drift")
    assert latest.status_code == 200
    body = latest.json()
    assert body["run_id"] == result.run_id and body["dataset_drift"] is False
    assert [f["name"] for f in body["drift"]["features"]] == [f.name for f in result.drift.features]
    series = client.get("/monitoring/history", params={"limit": 5}).json()
    assert [r["run_id"] for r in series["runs"]] == [result.run_id]
    report = client.get("/monitoring/report")
    assert report.status_code == 200 and "<svg" in report.text


def _cli_env(ctx: Context) -> dict[str, str]:
    return {
        "PGMLOPS_DATABASE_URL": ctx.settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": ctx.settings.artifact_root,
        "PGMLOPS_MODEL_NAME": "churn",
        "COLUMNS": "200",  # rich wraps tables to the terminal width
    }


def test_cli_prints_json_and_writes_the_html_report(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    log_traffic(ctx, make_churn(1_000, seed=30, numeric_shift=0.8), production)
    report = tmp_path / "report.html"
    runner = CliRunner()
    done = runner.invoke(
        cli_app,
        ["monitor", "--last", "800", "--json", "--html", str(report)],
        env=_cli_env(ctx),
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["window"]["rows"] == 800 and data["run_id"] is not None
    assert set(data["drift"]["drifted_features"]) >= SHIFTED_NUMERIC
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and "Age" in html
    assert data["status"]["level"] == "degraded" and data["status"]["reasons"] == data["reasons"]
    assert 'data-status="degraded"' in html

    # --fail-on turns the status into an exit code for CI; the table is printed all the same.
    table = runner.invoke(
        cli_app, ["monitor", "--since", "1h", "--fail-on", "degraded"], env=_cli_env(ctx)
    )
    assert table.exit_code == 10, table.output
    assert "status: degraded" in table.stdout and "--fail-on degraded" in table.stderr
    assert "corrected p" in table.stdout and "DRIFT" in table.stdout
    flat = " ".join(table.stdout.split())  # the console wraps long lines
    assert "multivariate: DRIFT" in flat and "held-out AUC" in flat
    assert data["drift"]["multivariate"]["method"] == "domain_classifier"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--last", "10", "--since", "1h"], "not both"),
        (["--since", "yesterday"], "not a duration"),
        (["--last", "0"], "at least 1"),
        (["--html", "/no/such/folder/report.html"], "does not exist"),
        (["--fail-on", "sometimes"], "--fail-on must be"),
    ],
)
def test_cli_refuses_bad_window_flags(ctx: Context, args: list[str], message: str) -> None:
    done = CliRunner().invoke(cli_app, ["monitor", *args], env=_cli_env(ctx))
    assert done.exit_code == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_window_keeps_odd_values_and_cuts_ties_at_the_newest_rows(ctx: Context) -> None:
    """The window query itself: text is kept as logged, newest rows win, labels are current."""
    odd = 'say "hi"'  # a key SQLite's JSON paths cannot address
    columns = [("Age", "numeric"), (odd, "categorical"), ("Region", "categorical")]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # A number logged as text (by some other writer) reads as missing, not as an error.
    ages: dict[int, object] = {0: None, 1: "n/a"}

    def record(i: int, at: datetime, region: str | None) -> PredictionRecord:
        return PredictionRecord(
            id=str(uuid.uuid4()),
            model_name="odd",
            version=1,
            created_at=at,
            features={"Age": ages.get(i, float(i)), odd: f"v{i % 2}", "Region": region},
            prediction="1",
            probability=0.75,
            confidence=0.5,
            output=None,
            latency_ms=1.0,
            request_id=None,
        )

    older = [record(i, base, ["NA", "", None][i % 3]) for i in range(10)]
    newer = [record(10 + i, base + timedelta(minutes=1), "EU") for i in range(5)]
    store = PredictionStore(ctx.db)
    store.write_batch(older + newer)
    store.add_feedback([(newer[0].id, "0")])
    store.add_feedback([(newer[0].id, "1")])

    everything = read_window(ctx.db, "odd", 1, columns)
    assert len(everything) == 15
    regions = everything.features["Region"]
    assert sorted(regions.dropna().unique().tolist()) == ["", "EU", "NA"]
    assert int(regions.isna().sum()) == 3
    assert int(everything.features["Age"].isna().sum()) == 2
    assert set(everything.features[odd]) == {"v0", "v1"}
    assert everything.outputs["label"].dropna().tolist() == ["1"]

    window = read_window(ctx.db, "odd", 1, columns, last=7)
    assert len(window) == 7
    times = window.outputs["created_at"]
    assert int((times == base + timedelta(minutes=1)).sum()) == 5
    assert window.first_at == base and window.last_at == base + timedelta(minutes=1)
    recent = read_window(ctx.db, "odd", 1, columns, since=base + timedelta(seconds=30))
    assert len(recent) == 5


def spend_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Demo customers with a numeric target whose noise grows with Age (a regression task)."""
    frame = make_churn(n, seed=seed, numeric_shift=shift).drop(columns=["Exited", "CustomerId"])
    rng = np.random.default_rng([seed, 11])
    noise = rng.normal(size=n) * (0.2 + (frame["Age"].to_numpy(float) - 18) / 20)
    frame["Spend"] = 0.05 * frame["CreditScore"] + 2 * frame["NumOfProducts"] + noise
    return frame


@pytest.fixture(scope="session")
def trained_spend(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelCard, dict[str, bytes]]:
    """One regression model trained per session: its card and its artifacts' bytes."""
    root = tmp_path_factory.mktemp("spend")
    spend_frame(4_000, seed=1).to_csv(root / "spend.csv", index=False)
    settings = Settings(
        database_url=f"sqlite:///{root / 'train.db'}",
        artifact_root=str(root / "artifacts"),
        model_name="spend",
    )
    ctx = Context(settings)
    try:
        trained = train_command(
            ctx,
            data=str(root / "spend.csv"),
            target="Spend",
            model_name="spend",
            actor=ACTOR,
            onnx=False,
            overrides={"task": "regression"},
        )
        mv = ctx.registry.get_version("spend", trained["version"])
        return mv.card, {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    finally:
        ctx.close()


def test_regression_monitoring_estimates_its_error_with_an_interval(
    ctx: Context, trained_spend: tuple[ModelCard, dict[str, bytes]]
) -> None:
    """Direct loss estimation: no labels, yet an estimated RMSE near the truth, and an alarm."""
    card, blobs = trained_spend
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("spend", number, fs)  # noqa: E731
    version = ctx.registry.create_version("spend", files, card, ACTOR, sign=sign).version
    promote_command(ctx, model_name="spend", version=version, force=True, reason="t", actor=ACTOR)
    model = load_version(ctx, ctx.registry.get_version("spend", version))

    def monitor(frame: pd.DataFrame) -> tuple[dict[str, Any], float]:
        rows = frame[model.card.feature_schema.names].to_dict("records")
        _, records = predict_records(
            model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
        )
        PredictionStore(ctx.db).write_batch(records)
        predicted = np.array([float(r.prediction) for r in records])
        truth = float(np.sqrt(np.mean((frame["Spend"].to_numpy() - predicted) ** 2)))
        return run_monitor(ctx, "spend", last=len(frame)).estimated_performance, truth

    same, truth = monitor(spend_frame(1_500, seed=2))
    assert same["metric"] == "rmse" and "DLE" in same["method"]
    assert same["metrics"]["rmse"] == pytest.approx(truth, rel=0.1)
    lo, hi = same["reference_interval"]
    assert lo < same["reference"]["rmse"] < hi and not same["degraded"]

    # Older customers: noisier targets, so a larger error that no label has shown yet.
    older, truth = monitor(spend_frame(1_500, seed=3, shift=1.0))
    assert older["metrics"]["rmse"] == pytest.approx(truth, rel=0.1)
    assert older["degraded"] and older["metrics"]["rmse"] > hi


def test_models_card_shows_the_feature_importance_kept_at_training(
    ctx: Context, production: int
) -> None:
    card = ctx.registry.get_version("churn", production).card
    importance = card.feature_importance
    assert importance is not None and importance.repeats == 3
    assert set(importance.values) == set(card.feature_schema.names)
    top = next(iter(importance.values))
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["models", "--card", "production"], env=_cli_env(ctx))
    assert shown.exit_code == 0, shown.output
    assert "feature importance" in shown.stdout and top in shown.stdout
    as_json = runner.invoke(
        cli_app, ["models", "--card", str(production), "--json"], env=_cli_env(ctx)
    )
    assert json.loads(as_json.stdout)["feature_importance"]["values"] == importance.values
    missing = runner.invoke(cli_app, ["models", "--card", "99"], env=_cli_env(ctx))
    assert missing.exit_code == 7 and len(missing.stderr.strip().splitlines()) == 1


def test_a_window_without_positive_labels_reports_recall_undefined_and_never_alarms_on_it(
    ctx: Context, production: int
) -> None:
    labelled = log_traffic(ctx, make_churn(1_000, seed=27), production)
    negatives = [(pid, label) for pid, label in labelled if label == "0"][:300]
    PredictionStore(ctx.db).add_feedback(negatives)
    perf = run_monitor(ctx, "churn").labelled_performance
    assert perf["n_labels"] == 300
    assert perf["metrics"]["recall"] is None and perf["metrics"]["roc_auc"] is None
    assert "no label is the positive class" in perf["undefined"]["recall"]
    rows = {row["metric"]: row for row in perf["judged"]}
    assert rows["recall"]["verdict"] == "undefined" and rows["roc_auc"]["verdict"] == "undefined"
    assert not perf["degraded"]
    assert not any("recall" in reason for reason in run_monitor(ctx, "churn").reasons)
