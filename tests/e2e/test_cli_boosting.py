"""`pgmlops train` with XGBoost, LightGBM, CatBoost: `--json` stays JSON, `--param` is checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from tests.e2e.test_cli import Cli

pytestmark = pytest.mark.e2e

FEW_TREES = {
    "xgboost": "n_estimators=40",
    "lightgbm": "n_estimators=40",
    "catboost": "iterations=40",
}


def assert_stdout_is_json_or_empty(stdout: str) -> None:
    """Under --json, stdout is a JSON document or nothing: never a library's log line."""
    if stdout.strip():
        json.loads(stdout)


def assert_json_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Under --json a failure is one JSON object on stdout (no log line), with the exit code."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    body = json.loads(result.stdout)
    assert body["exit_code"] == code and "Traceback" not in result.stderr
    for word in words:
        assert word in body["error"], body["error"]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """SQLite only: what is tested here is the command's output, not the database."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'pgmlops.db'}",
        artifact_root=str(tmp_path / "artifacts"),
    )
    work = tmp_path / "cwd"
    work.mkdir()
    return Cli(settings, work)


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    make_churn(1_500, seed=2).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("library", ["xgboost", "lightgbm", "catboost"])
@pytest.mark.parametrize("target", ["Exited", "Balance"])
def test_train_json_output_is_only_json_for_each_library(
    cli: Cli, csv: Path, library: str, target: str
) -> None:
    result = cli(
        "train", "--data", str(csv), "--target", target, "--estimator", library,
        "--param", FEW_TREES[library], "--cv", "0", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trained = json.loads(result.stdout)  # any library log line on stdout breaks this
    assert trained["onnx"] is True
    # CatBoost writes catboost_info/ into the working directory unless told not to.
    assert list(cli.cwd.iterdir()) == []


@pytest.mark.parametrize(
    ("library", "param", "words"),
    [
        ("lightgbm", "leaves=31", ("'leaves'", "lightgbm.LGBMClassifier")),
        ("xgboost", "depth=4", ("'depth'", "xgboost.XGBClassifier")),
        ("catboost", "deepness=4", ("'deepness'", "catboost.CatBoostClassifier")),
        ("lightgbm", "learning_rate=fast", ("'learning_rate'", "takes a number")),
    ],
)
def test_bad_params_are_one_line_naming_the_parameter_and_estimator(
    cli: Cli, csv: Path, library: str, param: str, words: tuple[str, ...]
) -> None:
    result = cli(
        "train", "--data", str(csv), "--target", "Exited", "--estimator", library,
        "--param", param, "--json",
    )  # fmt: skip
    assert_json_error(result, 2, *words)


def test_a_value_lightgbm_rejects_keeps_its_log_line_off_stdout(cli: Cli, csv: Path) -> None:
    # min_data_in_leaf is a LightGBM config name: only LightGBM itself can check its type.
    result = cli(
        "train", "--data", str(csv), "--target", "Exited", "--estimator", "lightgbm",
        "--param", "min_data_in_leaf=abc", "--json",
    )  # fmt: skip
    assert_json_error(result, 4, "min_data_in_leaf")
    assert "[LightGBM]" not in result.stdout
