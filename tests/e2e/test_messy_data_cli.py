"""A messy CSV as users have them: `pgmlops train`, /predict's records and `pgmlops predict`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from pgmlops.services.inference import PipelineEngine, load_pipeline
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(settings, monkeypatch: pytest.MonkeyPatch):
    """`pgmlops` in this process (a subprocess costs seconds of imports per call)."""
    monkeypatch.setenv("PGMLOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PGMLOPS_ARTIFACT_ROOT", settings.artifact_root)
    monkeypatch.setenv("PGMLOPS_MODEL_NAME", "churn")
    monkeypatch.setenv("PGMLOPS_TRAINING__REFERENCE_FOLDS", "0")
    runner = CliRunner()
    return lambda *args: runner.invoke(cli_app, list(args))


def assert_one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def messy_rows(n: int, seed: int) -> pd.DataFrame:
    """Semicolons, day/month dates, case variants, yes/no, a typo and some empty targets."""
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    region = rng.choice(["Zürich", "zürich ", "ZÜRICH", "Genève", "Genèva", "Bern"], n)
    member = rng.choice(["yes", "no", "Yes"], n)
    x = rng.normal(size=n)
    score = x + (days.month.to_numpy() > 6) + (member != "no")
    return pd.DataFrame(
        {
            "signup": days.strftime("%d/%m/%Y"),
            "region": region,
            "member": member,
            "x": x.round(3),
            "y": np.where(score > 1.0, "churn", "stay"),
        }
    )


def test_a_messy_csv_trains_with_warnings_and_serves_like_it_reads(
    cli, ctx, tmp_path: Path
) -> None:
    frame = messy_rows(400, seed=1)
    frame.loc[:11, "y"] = ""
    data = tmp_path / "messy.csv"
    data.write_bytes(frame.to_csv(sep=";", index=False).encode("cp1252"))

    trained = cli("train", "--data", str(data), "--target", "y", "--param", "max_iter=20", "--json")
    assert trained.exit_code == 0, trained.output
    warnings = json.loads(trained.stdout)["warnings"]
    # The notes name the flags that override what was sniffed (Python names the parameters).
    for expected in (
        "messy.csv: columns separated by ';' (sniffed; --sep overrides)",
        "messy.csv: read as cp1252 text, not UTF-8 (--encoding overrides)",
        "12 row(s) dropped: target column 'y' is empty",
        "Genèva'/'Genève",
    ):
        assert any(expected in w for w in warnings), (expected, warnings)
    version = ctx.registry.get_version("churn", 1)
    assert version.card.data.rows_without_target == 12
    assert version.card.feature_schema.feature("signup").date is not None
    # The ONNX graph starts after the date step; the engine feeds it the calendar features.
    assert version.card.onnx.present, version.card.onnx.reason

    # /predict's validation and engine: a JSON boolean, another spelling, an ISO date.
    model = load_version(ctx, version)
    assert model.engine.name == "onnx"
    row = model.single.validate_python(
        {"signup": "2024-07-01", "region": " zürich", "member": True, "x": 0.2}
    ).__dict__
    items, _ = predict_records(
        model, [row], ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    assert items[0]["prediction"] in {"churn", "stay"}
    pipeline = PipelineEngine(load_pipeline(ctx.artifacts.read(version, "model")), version.card)
    assert pipeline.predict_one(row)[1] == pytest.approx(items[0]["probability"], abs=1e-6)

    # `pgmlops predict` sniffs the batch file the same way and gives the same answers.
    batch = messy_rows(30, seed=2).drop(columns="y")
    batch_path = tmp_path / "batch.csv"
    batch_path.write_bytes(batch.to_csv(sep=";", index=False).encode("cp1252"))
    out = tmp_path / "scored.csv"
    scored = cli("predict", "--data", str(batch_path), "--out", str(out), "--version", "1")
    assert scored.exit_code == 0, scored.output
    answers = pd.read_csv(out)
    records = [model.single.validate_python(r).__dict__ for r in batch.to_dict("records")]
    one_by_one, _ = predict_records(
        model, records, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    assert answers["prediction"].tolist() == [i["prediction"] for i in one_by_one]


def test_bad_csv_options_are_one_line_errors(cli, tmp_path: Path) -> None:
    data = tmp_path / "tiny.csv"
    data.write_text("a,y\n1,2\n")
    sep = cli("train", "--data", str(data), "--target", "y", "--sep", "::")
    assert_one_line_error(sep, 2, "--sep", "single character")
    enc = cli("train", "--data", str(data), "--target", "y", "--encoding", "klingon")
    assert_one_line_error(enc, 2, "--encoding", "not a known encoding")
    many = tmp_path / "many.csv"
    pd.DataFrame(
        {"x": [i % 5 for i in range(240)], "y": [f"k{i % 80}" for i in range(240)]}
    ).to_csv(many, index=False)
    classes = cli("train", "--data", str(many), "--target", "y")
    assert_one_line_error(classes, 3, "80 classes", "training.max_classes")
    dec = cli("train", "--data", str(data), "--target", "y", "--decimal", ";")
    assert_one_line_error(dec, 2, "--decimal", "'.' or ','")


def decimal_comma_rows(n: int, seed: int) -> pd.DataFrame:
    """Two numeric features whose values have decimals, and a label that depends on them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n).round(3), rng.uniform(0, 100, n).round(2)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": np.where(x1 + x2 / 50 > 1.0, "yes", "no")})


def test_a_semicolon_csv_with_decimal_commas_trains_on_numbers(cli, ctx, tmp_path: Path) -> None:
    data = tmp_path / "comma.csv"
    decimal_comma_rows(300, seed=3).to_csv(data, sep=";", decimal=",", index=False)
    assert "," in data.read_text().splitlines()[1]  # the file really has decimal commas

    trained = cli("train", "--data", str(data), "--target", "y", "--param", "max_iter=20", "--json")
    assert trained.exit_code == 0, trained.output
    warnings = json.loads(trained.stdout)["warnings"]
    assert any("decimal commas" in w for w in warnings), warnings
    version = ctx.registry.get_version("churn", 1)
    schema = version.card.feature_schema
    assert [schema.feature(c).kind for c in ("x1", "x2")] == ["numeric", "numeric"]
    assert version.source["decimal"] == ","

    # `pgmlops predict` reads the same kind of file the same way.
    batch = tmp_path / "batch.csv"
    rows = decimal_comma_rows(20, seed=4).drop(columns="y")
    rows.to_csv(batch, sep=";", decimal=",", index=False)
    out = tmp_path / "scored.csv"
    scored = cli("predict", "--data", str(batch), "--out", str(out), "--version", "1")
    assert scored.exit_code == 0, scored.output
    assert len(pd.read_csv(out)) == 20
    # Told the file has decimal points, training reads the columns as text and says so.
    as_text = cli("train", "--data", str(data), "--target", "y", "--decimal", ".")
    assert_one_line_error(as_text, 3, "x1", "looks numeric (e.g. '", "): --decimal?")
    few = tmp_path / "few.csv"
    rows = decimal_comma_rows(300, seed=3)
    rows["x1"] = rows["x1"].round(0)  # few distinct values: kept, as text
    rows.to_csv(few, sep=";", decimal=",", index=False)
    kept = cli("train", "--data", str(few), "--target", "y", "--decimal", ".", "--json")
    assert kept.exit_code == 0, kept.output
    warned = [w for w in json.loads(kept.stdout)["warnings"] if "looks numeric" in w]
    assert any("'x1'" in w and "read as text: check --decimal and --sep" in w for w in warned)

    bad = cli(
        "predict", "--data", str(batch), "--out", str(out), "--version", "1", "--decimal", "::"
    )
    assert_one_line_error(bad, 2, "--decimal")


def test_decimal_given_explicitly_reads_commas_the_sniffer_would_not(
    cli, ctx, tmp_path: Path
) -> None:
    # Tab-separated with a single comma-decimal column among point-free integers.
    data = tmp_path / "given.tsv"
    frame = decimal_comma_rows(200, seed=5)
    frame.to_csv(data, sep="\t", decimal=",", index=False)
    trained = cli(
        "train", "--data", str(data), "--target", "y", "--decimal", ",", "--param", "max_iter=20"
    )
    assert trained.exit_code == 0, trained.output
    schema = ctx.registry.get_version("churn", 1).card.feature_schema
    assert schema.feature("x1").kind == "numeric"


def test_target_errors_name_the_rows_and_values(cli, tmp_path: Path) -> None:
    rows = decimal_comma_rows(60, seed=6)
    rows["amount"] = (rows["x2"] * 10).round(1).astype(str)
    rows.loc[[11, 39], "amount"] = "unknown"
    data = tmp_path / "target.csv"
    rows.drop(columns="y").to_csv(data, index=False)
    result = cli("train", "--data", str(data), "--target", "amount", "--task", "regression")
    assert_one_line_error(result, 3, "target column 'amount'", "rows 12, 40: 'unknown'")
