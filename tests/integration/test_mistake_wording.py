"""The same mistake read in two places: Python names the parameter, the CLI names the flag.

Services raise errors in Python terms and list the parameters they name; the CLI's error
printer shows those as the flags the user typed (docs/architecture.md, "Each rule lives once").
Training's warnings (notes) are worded the same way.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from pgmlops.client import Client
from pgmlops.config import Settings
from pgmlops.errors import ConfigError
from pgmlops.services.context import Context
from pgmlops.services.retention import collect_garbage
from pgmlops.services.serving.load import served_model_names

# A database URL whose path is a parameter's name: a quoted value is never rewritten.
URL = "postgresql://someone@127.0.0.1/data"


def _cli_error(settings: Settings, *args: str, json_too: bool = True) -> str:
    """The one-line error the CLI prints for a command (and says under --json); exit 2."""
    env = {
        "PGMLOPS_DATABASE_URL": settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": settings.artifact_root,
    }
    plain = CliRunner().invoke(cli_app, list(args), env=env)
    assert plain.exit_code == 2, plain.output
    # Progress lines may come first; the error is the last line.
    last = plain.stderr.splitlines()[-1]
    assert last.startswith("error: ")
    if json_too:
        as_json = CliRunner().invoke(cli_app, [*args, "--json"], env=env)
        assert json.loads(as_json.stdout)["error"] == last.removeprefix("error: ")
    return last.removeprefix("error: ")


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text("x,y\n1,0\n2,1\n")
    return path


@pytest.mark.parametrize(
    ("option", "value", "python", "cli"),
    [
        ("decimal", ";", "decimal ';' must be '.' or ','", "--decimal ';' must be '.' or ','"),
        (
            "sep",
            "::",
            "sep '::' must be a single character, e.g. ';' or '\\t'",
            "--sep '::' must be a single character, e.g. ';' or '\\t'",
        ),
    ],
)
def test_a_bad_csv_option_is_named_as_the_caller_gave_it(
    settings: Settings, csv_file: Path, option: str, value: str, python: str, cli: str
) -> None:
    with Client(settings=settings) as client, pytest.raises(ConfigError) as err:
        client.train(str(csv_file), target="y", **{option: value})
    assert str(err.value) == python

    args = ("train", "--data", str(csv_file), "--target", "y", f"--{option}", value)
    assert _cli_error(settings, *args) == cli


def test_a_database_url_without_a_query_asks_for_the_query_in_each_callers_terms(
    settings: Settings,
) -> None:
    with Client(settings=settings) as client, pytest.raises(ConfigError) as err:
        client.train(URL, target="y")
    assert str(err.value) == f"data '{URL}' looks like a URL: give query to read from a database"

    shown = _cli_error(settings, "train", "--data", URL, "--target", "y")
    assert shown == f"--data '{URL}' looks like a URL: give --query to read from a database"


def test_csv_options_with_a_query_are_refused_in_each_callers_terms(settings: Settings) -> None:
    with Client(settings=settings) as client, pytest.raises(ConfigError) as err:
        client.train(URL, target="y", query="SELECT 1", sep=";")
    assert str(err.value) == "sep, encoding and decimal apply to CSV files, not to query"

    shown = _cli_error(
        settings, "train", "--data", URL, "--query", "SELECT 1", "--target", "y", "--sep", ";"
    )
    assert shown == "--sep, --encoding and --decimal apply to CSV files, not to --query"


def test_retention_limits_are_named_in_each_callers_terms(ctx: Context) -> None:
    with pytest.raises(ConfigError) as err:
        collect_garbage(ctx, keep=-1)
    assert str(err.value) == "keep must be 0 or more, got -1"
    with pytest.raises(ConfigError) as err:
        collect_garbage(ctx, predictions_older_than=timedelta(0))
    assert str(err.value) == "predictions_older_than must be longer than zero"

    # The command line's parser refuses a negative --keep itself, naming the flag.
    env = {"PGMLOPS_DATABASE_URL": ctx.settings.database_url}
    parsed = CliRunner().invoke(cli_app, ["gc", "--keep", "-1"], env=env)
    assert parsed.exit_code == 2 and "'--keep'" in parsed.output
    shown = _cli_error(ctx.settings, "gc", "--predictions-older-than", "ninety")
    assert shown.startswith("--predictions-older-than 'ninety' is not an age: ")


def test_all_models_with_a_model_name_is_refused_in_each_callers_terms(ctx: Context) -> None:
    with pytest.raises(ConfigError) as err:
        served_model_names(ctx, ["churn"], all_models=True)
    assert str(err.value) == "all_models and names exclude each other: give one"

    shown = _cli_error(
        ctx.settings, "serve", "--all-models", "--model-name", "churn", json_too=False
    )
    assert shown == "--all-models and --model-name exclude each other: give one"


def test_training_notes_are_named_in_each_callers_terms(settings: Settings, tmp_path: Path) -> None:
    # A semicolon file in cp1252 with decimal commas: all three are sniffed, each with a note.
    path = tmp_path / "messy.csv"
    cities = ["Genève", "Zürich"]
    rows = [f"{cities[k % 2]};{k % 10},5;{'yes' if k % 10 > 4 else 'no'}" for k in range(90)]
    path.write_bytes(("city;amount;y\n" + "\n".join(rows) + "\n").encode("cp1252"))
    python = [
        "messy.csv: columns separated by ';' (sniffed; sep= overrides)",
        "messy.csv: numbers read with decimal commas (sniffed; decimal= overrides)",
        "messy.csv: read as cp1252 text, not UTF-8 (encoding= overrides)",
    ]
    with Client(settings=settings) as client:
        warnings = client.train_run(str(path), target="y", cv_folds=0, onnx=False).warnings
    assert [w for w in warnings if "messy.csv" in w] == python

    env = {
        "PGMLOPS_DATABASE_URL": settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": settings.artifact_root,
    }
    args = ["train", "--data", str(path), "--target", "y", "--cv", "0", "--no-onnx", "--json"]
    trained = CliRunner().invoke(cli_app, args, env=env)
    assert trained.exit_code == 0, trained.output
    shown = [w for w in json.loads(trained.stdout)["warnings"] if "messy.csv" in w]
    assert shown == [
        "messy.csv: columns separated by ';' (sniffed; --sep overrides)",
        "messy.csv: numbers read with decimal commas (sniffed; --decimal overrides)",
        "messy.csv: read as cp1252 text, not UTF-8 (--encoding overrides)",
    ]


def test_contradicting_retrain_modes_are_named_in_each_callers_terms(settings: Settings) -> None:
    with Client(settings=settings) as client, pytest.raises(ConfigError) as err:
        client.retrain("churn", force=True, if_needed=True)
    assert str(err.value) == "force and if_needed contradict each other: choose one"

    shown = _cli_error(settings, "retrain", "--force", "--if-needed")
    assert shown == "--force and --if-needed contradict each other: choose one"
