"""What the CLI shows a user: --json errors as JSON, tables that fit, the engine that serves.

Errors under --json are one JSON object on stdout ({"error", "code", "exit_code"}) with the
same non-zero exit as without --json, so a script reads one stream either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from pgmlops.domain.demo_data import make_churn
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.promotion import promote

REJECTED = "pipeline (onnx rejected: custom feature function cannot be converted)"


def same_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A custom feature step: skl2onnx cannot convert it, so the ONNX copy is refused."""
    return frame


def _env(ctx: Context, **extra: str) -> dict[str, str]:
    return {
        "PGMLOPS_DATABASE_URL": ctx.settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": ctx.settings.artifact_root,
        "PGMLOPS_MODEL_NAME": "churn",
        **extra,
    }


@pytest.mark.parametrize(
    ("args", "exit_code", "code", "words"),
    [
        (["models", "--model-name", "nope"], 7, "not_found_error", "nope"),
        (["promote"], 7, "not_found_error", "churn"),
        (["promote", "--model-name", "bad name!"], 2, "config_error", "not a model name"),
        (["train", "--data", "missing.csv", "--target", "y"], 3, "data_error", "missing.csv"),
        (["monitor", "--last", "0"], 2, "config_error", "--last"),
        (["mlflow", "sync"], 2, "config_error", "mlflow_tracking_uri is not set"),
    ],
)
def test_errors_under_json_are_one_json_object_on_stdout_with_the_exit_code(
    ctx: Context, args: list[str], exit_code: int, code: str, words: str
) -> None:
    done = CliRunner().invoke(cli_app, [*args, "--json"], env=_env(ctx))

    assert done.exit_code == exit_code, done.output
    body = json.loads(done.stdout)
    assert body["code"] == code and body["exit_code"] == exit_code
    assert words in body["error"] and "\n" not in body["error"]
    assert "error:" not in done.stderr and "Traceback" not in done.output
    # Without --json the same failure is the usual one line on stderr, after any step lines.
    plain = CliRunner().invoke(cli_app, args, env=_env(ctx))
    assert plain.exit_code == exit_code and plain.stdout == ""
    errors = [line for line in plain.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0]
    assert plain.stderr.splitlines()[-1] == errors[0]


def test_flags_the_parser_refuses_are_json_too_under_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgmlops.cli", "train", "--json", "--target", "y"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2 and done.stderr == ""
    assert json.loads(done.stdout) == {
        "error": "Missing option '--data'.",
        "code": "usage_error",
        "exit_code": 2,
    }


@pytest.fixture
def rejected_onnx(ctx: Context, tmp_path: Path) -> dict:
    """churn v1 in production, trained with a feature step its ONNX copy cannot express."""
    csv = tmp_path / "churn.csv"
    make_churn(800, seed=6).to_csv(csv, index=False)
    summary = train_command(
        ctx,
        data=str(csv),
        target="Exited",
        model_name="churn",
        actor="t",
        overrides={
            "estimator": "sklearn.linear_model.LogisticRegression",
            "features": f"{__name__}:same_frame",
        },
    )
    promote(ctx, "churn", summary["version"], actor="t", force=True, reason="test set-up")
    return summary


def test_a_rejected_onnx_copy_is_named_in_health_and_an_80_column_models_table(
    ctx: Context, rejected_onnx: dict
) -> None:
    assert rejected_onnx["engine"] == REJECTED
    assert any(w.startswith("ONNX copy rejected") for w in rejected_onnx["warnings"])

    from pgmlops.api.app import create_app

    with TestClient(create_app(ctx.settings)) as client:
        health = client.get("/health").json()
        models = client.get("/models").json()
        page = client.get("/").text
        triggers = client.get("/retrain/triggers")  # what the page's retraining block shows
    assert health["model"]["engine"] == "pipeline"
    assert health["model"]["engine_detail"] == REJECTED
    assert models["serving"]["engine_detail"] == REJECTED
    assert "engine_detail" in page and 'id="retraining"' in page
    assert triggers.status_code == 200 and triggers.json()["checks"], triggers.text

    # `pgmlops models` in an 80-column terminal: the table wraps, no number is cut.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    shown = subprocess.run(
        [sys.executable, "-m", "pgmlops.cli", "models", "--model-name", "churn"],
        env={**env, **_env(ctx, COLUMNS="80")},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, shown.stdout
    for name, value in rejected_onnx["metrics"].items():
        assert f"{name}={value:.4f}" in shown.stdout, (name, shown.stdout)
    # The engine's reason is a sentence: the table says "onnx rejected", the line below why.
    assert "(onnx" in shown.stdout and "rejected)" in shown.stdout
    assert f"v1 engine: {REJECTED}" in " ".join(shown.stdout.split())
