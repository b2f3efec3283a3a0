"""The `pgmlops` command as a user runs it: one-line errors, non-zero exits, no half-writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pgmlops.domain.demo_data import make_churn
from tests.tamper import strip_signatures

pytestmark = pytest.mark.e2e


class Cli:
    """Runs `pgmlops` in a subprocess against one test database and artifact folder."""

    def __init__(self, settings, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
        self.env.update(
            PGMLOPS_DATABASE_URL=settings.database_url,
            PGMLOPS_ARTIFACT_ROOT=settings.artifact_root,
            PGMLOPS_MODEL_NAME="churn",
        )

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pgmlops.cli", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture
def cli(settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    make_churn(1_500, seed=2).to_csv(path, index=False)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    # Progress lines may come first; the failure itself is exactly one `error:` line.
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def no_versions(cli: Cli) -> bool:
    listing = cli("models", "--json")
    return listing.returncode == 7 or json.loads(listing.stdout)["models"] == []


def test_train_promote_models_and_rollback_through_the_cli(cli: Cli, csv: Path) -> None:
    trained = cli("train", "--data", str(csv), "--target", "Exited", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["version"] == 1
    assert cli("promote").returncode == 0
    second = cli(
        "train",
        "--data",
        str(csv),
        "--target",
        "Exited",
        "--estimator",
        "sklearn.ensemble.RandomForestClassifier",
        "--param",
        "n_estimators=50",
        "--param",
        "max_depth=6",
    )
    assert second.returncode == 0, second.stderr
    forced = cli("promote", "--version", "2", "--force", "--reason", "try the forest")
    assert forced.returncode == 0, forced.stderr
    assert cli("rollback", "--reason", "forest was slower").returncode == 0
    models = json.loads(cli("models", "--json", "--history").stdout)["models"][0]
    assert models["aliases"] == {"production": 1}
    assert [h["action"] for h in models["history"]] == ["promote", "force", "rollback"]
    assert models["history"][1]["reason"] == "try the forest"


def test_a_training_note_is_printed_once_and_names_the_flag(
    cli: Cli, csv: Path, tmp_path: Path
) -> None:
    semicolons = tmp_path / "semicolons.csv"
    pd.read_csv(csv).to_csv(semicolons, sep=";", index=False)
    result = cli("train", "--data", str(semicolons), "--target", "Exited", "--no-onnx")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("separated by ';'") == 1, output
    assert "(sniffed; --sep overrides)" in output and "sep=" not in output


@pytest.mark.parametrize(
    ("make", "extra", "code", "words"),
    [
        (lambda d: d / "nope.csv", [], 3, ["nope.csv", "does not exist"]),
        (
            lambda d: _write(d / "junk.parquet", b"\x00\x01 not parquet"),
            [],
            3,
            ["cannot be parsed"],
        ),
        (
            lambda d: _frame(d, make_churn(100).drop(columns="Exited")),
            [],
            3,
            ["'Exited'", "not in"],
        ),
        (lambda d: _frame(d, make_churn(100).assign(Exited=0)), [], 3, ["1 distinct value"]),
        (lambda d: _write(d / "empty.csv", b"Age,Exited\n"), [], 3, ["no rows"]),
        (lambda d: _frame(d, _text_in_numbers()), [], 3, ["'Age'", "'forty'"]),
        (
            lambda d: _frame(d, make_churn(200)),
            ["--estimator", "sklearn.nope.Model"],
            2,
            ["sklearn.nope.Model"],
        ),
        (lambda d: _frame(d, make_churn(200)), ["--param", "n_trees=5"], 2, ["'n_trees'"]),
        (lambda d: _frame(d, make_churn(200)), ["--task", "clustering"], 2, ["task"]),
    ],
    ids=[
        "missing-file",
        "unreadable-file",
        "no-target",
        "one-class",
        "empty",
        "text-in-number",
        "unknown-estimator",
        "unknown-param",
        "bad-task",
    ],
)
def test_bad_training_input_is_one_line_and_registers_nothing(
    cli: Cli,
    tmp_path: Path,
    make,
    extra: list[str],
    code: int,
    words: list[str],
) -> None:
    data = make(tmp_path)
    result = cli("train", "--data", str(data), "--target", "Exited", *extra)
    assert_one_line_error(result, code, *words)
    assert no_versions(cli)


def test_unreachable_database_is_a_clear_error(cli: Cli, csv: Path) -> None:
    result = cli("models", PGMLOPS_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    assert_one_line_error(result, 5, "unreachable", "127.0.0.1:1")


def test_tampered_artifact_is_refused_by_the_cli(cli: Cli, csv: Path, settings) -> None:
    assert cli("train", "--data", str(csv), "--target", "Exited").returncode == 0
    for blob in Path(settings.artifact_root).rglob("*"):
        if blob.is_file():
            blob.write_bytes(blob.read_bytes() + b"!")
    assert_one_line_error(cli("promote"), 6, "integrity")
    (model,) = json.loads(cli("models", "--json").stdout)["models"]
    assert model["production_version"] is None


def test_unsigned_versions_refuse_to_load_until_artifacts_sign(cli: Cli, csv: Path, ctx) -> None:
    assert cli("train", "--data", str(csv), "--target", "Exited").returncode == 0
    strip_signatures(ctx, "churn", 1)  # a version registered before signing existed
    assert_one_line_error(cli("promote"), 6, "unsigned", "pgmlops artifacts sign")
    listed = cli("artifacts", "sign", "--json")
    assert listed.returncode == 6  # nothing is signed until the operator confirms the version
    (plan,) = json.loads(listed.stdout)["to_confirm"]
    signed = cli(
        "artifacts", "sign", "--json", "--model-name", "churn", "--version", "1",
        "--digest", plan["digest"],
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    n_files = len(ctx.registry.get_version("churn", 1).files)
    assert json.loads(signed.stdout)["files_signed"] == n_files
    again = json.loads(cli("artifacts", "sign", "--json").stdout)
    assert (again["files_signed"], again["already_signed"]) == (0, n_files)
    assert cli("promote").returncode == 0
    foreign = cli("artifacts", "sign", PGMLOPS_SIGNING_KEY="k" * 40)
    assert_one_line_error(foreign, 6, f"{n_files} file(s) left unsigned", "signed with another key")


def test_bad_config_values_name_the_key(cli: Cli, csv: Path, tmp_path: Path) -> None:
    config = tmp_path / "custom.yaml"
    config.write_text("training:\n  test_size: 2\n")
    result = cli("train", "--data", str(csv), "--target", "Exited", "--config", str(config))
    assert_one_line_error(result, 2, "training.test_size")
    config.write_text("promotion:\n  min_delat: 0.01\n")
    assert_one_line_error(cli("models", "--config", str(config)), 2, "min_delat")
    config.write_text("training: [unclosed\n")
    assert_one_line_error(cli("models", "--config", str(config)), 2, "not valid YAML")
    assert_one_line_error(cli("models", PGMLOPS_SERVING__PORT="eighty"), 2, "serving.port")
    assert_one_line_error(
        cli("models", "--config", str(tmp_path / "missing.yaml")), 2, "missing.yaml"
    )


def test_an_old_schema_is_refused_and_names_the_upgrade_command(cli: Cli, ctx) -> None:
    from sqlalchemy import text

    ctx.db.ensure_schema()
    with ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000_old'"))
    assert_one_line_error(cli("models"), 5, "pgmlops db upgrade")


def test_help_lists_every_command(cli: Cli) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in (
        "train",
        "promote",
        "rollback",
        "models",
        "serve",
        "monitor",
        "retrain",
        "worker",
        "feedback",
        "db",
        "demo",
        "artifacts",
    ):
        assert command in result.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _frame(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "data.csv"
    frame.to_csv(path, index=False)
    return path


def _text_in_numbers() -> pd.DataFrame:
    frame = make_churn(300, seed=4)
    frame["Age"] = frame["Age"].astype(str)
    frame.loc[17, "Age"] = "forty"
    return frame
