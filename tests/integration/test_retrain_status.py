"""`GET /retrain/status`, `/retrain/triggers` and `retrain --status` say where each trigger stands.

A status request changes nothing: label counts and the clock are read live, the monitoring
signals come from the newest stored monitoring run. Promotions made by a retraining run say so
in the production history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from pgmlops.api import errors as api_errors
from pgmlops.api.retrain_routes import public, router
from pgmlops.cli import app as cli_app
from pgmlops.client import Client
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.services.promotion import promote
from tests.integration.test_retraining import ACTOR, QUIET, _train, configure, label, log_traffic

KEY = {"X-API-Key": "admin-key"}


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    """Few rows: these tests are about what is reported, not about the model."""
    path = tmp_path / "train.csv"
    make_churn(1_200, seed=5).to_csv(path, index=False)
    return path


@pytest.fixture
def production(ctx: Context, small_file: Path) -> int:
    version = _train(ctx, small_file)
    promote(ctx, "churn", version, actor=ACTOR, force=True, reason="test set-up")
    return version


def _app(ctx: Context) -> TestClient:
    ctx.settings.api_key = SecretStr("admin-key")
    app = FastAPI()
    app.state.ctx = ctx
    api_errors.install(app)
    app.include_router(router)
    app.include_router(public)
    return TestClient(app)


def _cli_env(ctx: Context) -> dict[str, str]:
    return {
        "PGMLOPS_DATABASE_URL": ctx.settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": ctx.settings.artifact_root,
        "PGMLOPS_MODEL_NAME": "churn",
        "PGMLOPS_RETRAINING__TRIGGERS__NEW_LABELS": "50",
        "PGMLOPS_RETRAINING__TRIGGERS__CONFIDENCE": "false",
        "PGMLOPS_RETRAINING__TRIGGERS__ESTIMATED_PERFORMANCE": "false",
        "PGMLOPS_RETRAINING__TRIGGERS__LABELLED_PERFORMANCE": "false",
        "PGMLOPS_RETRAINING__SCHEDULE": "86400",
    }


def test_status_shows_each_triggers_progress_in_the_api_and_the_cli(
    ctx: Context, production: int
) -> None:
    configure(
        ctx, triggers=QUIET.model_copy(update={"new_labels": 50, "drift": True}), schedule=86400
    )
    frame = make_churn(250, seed=40)  # monitoring needs 200 logged rows
    ids = log_traffic(ctx, frame, production)
    label(ctx, ids[:30], frame["Exited"][:30].tolist())
    client = _app(ctx)

    status = client.get("/retrain/status", headers=KEY).json()
    checks = {c["name"]: c for c in status["triggers"]["checks"]}
    assert checks["new_labels"]["state"] | {"since": None, "counted": None} == {
        "count": 30,
        "needed": 50,
        "percent": 60.0,
        "since": None,
        "counted": None,
    }
    assert "30 of 50 (60.0%) — not yet" in checks["new_labels"]["detail"]
    assert checks["schedule"]["fired"] is False
    assert checks["schedule"]["state"]["next_due"] > checks["schedule"]["state"]["anchor"]
    assert "no monitoring run yet" in checks["monitoring"]["detail"]

    # The drift trigger reads the newest stored monitoring run; asking changes nothing.
    stored = run_monitor(ctx, "churn", store_run=True)
    public_view = client.get("/retrain/triggers").json()
    drift = next(c for c in public_view["checks"] if c["name"] == "drift")
    assert drift["state"]["monitoring_run_id"] == stored.run_id
    assert drift["detail"].startswith("data drift")
    assert client.get("/retrain/triggers", params={"model_name": "no\x00"}).status_code == 400
    assert ctx.registry.latest_version("churn").version == production

    runner = CliRunner()
    env = _cli_env(ctx)
    shown = runner.invoke(cli_app, ["retrain", "--status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "[ ] new labelled rows since the last training: 30 of 50 (60.0%)" in shown.output
    assert "schedule (86400.0): next retraining at" in shown.output
    assert f"as of monitoring run {stored.run_id}" in shown.output
    as_json = json.loads(runner.invoke(cli_app, ["retrain", "--status", "--json"], env=env).stdout)
    assert {c["name"] for c in as_json["triggers"]["checks"]} == {
        "new_labels",
        "schedule",
        "drift",
    }
    # The Python API answers the same, through the methods the CLI and the routes call.
    python = Client(context=ctx)
    assert python.retrain_status("churn")["triggers"] == as_json["triggers"]
    drift = next(c for c in python.retrain_triggers("churn")["checks"] if c["name"] == "drift")
    assert drift["state"]["monitoring_run_id"] == stored.run_id


def test_a_retraining_promotion_records_the_run_and_its_reasons(
    ctx: Context, small_file: Path
) -> None:
    _train(ctx, small_file)  # no production yet: the candidate meets only the absolute gates

    # Through the Python API, as `pgmlops retrain --force` goes.
    outcome = Client(context=ctx).retrain("churn", force=True, actor=ACTOR)

    assert outcome.run is not None and outcome.run.decision["promoted"], outcome.message
    assert ctx.registry.alias_version("churn", PRODUCTION) == outcome.run.candidate_version
    (event,) = ctx.registry.alias_history("churn", PRODUCTION)
    assert event.reason == f"retraining run {outcome.run.id}: forced retrain requested by {ACTOR}"


def test_status_refuses_flags_that_would_act_before_touching_the_database() -> None:
    env = {"PGMLOPS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = CliRunner().invoke(cli_app, ["retrain", "--status", "--force", "--json"], env=env)
    assert done.exit_code == 2
    assert json.loads(done.stdout)["code"] == "config_error"
