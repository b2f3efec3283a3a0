"""`pgmlops predict`: batch scoring gives /predict's answers, logs them, and never half-writes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from pgmlops.domain.demo_data import make_churn
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.tables import PredictionRow
from tests.e2e.test_cli import Cli, assert_one_line_error

pytestmark = pytest.mark.e2e

FEATURES = [
    "CreditScore",
    "Geography",
    "Gender",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
]


@pytest.fixture
def cli(settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


def scoring_frame(n: int, seed: int = 5) -> pd.DataFrame:
    """Rows to score, with blanks in a number and a category (both valid: missing)."""
    frame = make_churn(n, seed=seed)
    frame["CustomerId"] = [f"C{k:06d}" for k in range(n)]
    frame["Balance"] = frame["Balance"].astype(object)
    frame.loc[frame.index % 17 == 3, "Balance"] = None
    frame.loc[frame.index % 23 == 5, "Gender"] = None
    return frame


def logged_rows(ctx, ids: list[str]) -> dict[str, PredictionRow]:
    with ctx.db.session() as s:
        rows = s.scalars(
            select(PredictionRow).where(PredictionRow.id.in_([uuid.UUID(i) for i in ids]))
        ).all()
        return {str(r.id): r for r in rows}


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def test_csv_in_chunks_gives_the_answers_of_predict_row_by_row_and_logs_them(
    cli: Cli, server, ctx, tmp_path: Path
) -> None:
    frame = scoring_frame(450)
    data = tmp_path / "customers.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "scored.parquet"

    result = cli(
        "predict", "--data", str(data), "--out", str(out), "--id-column", "CustomerId",
        "--chunk-rows", "97", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["written"], summary["rejected"]) == (450, 450, 0)
    scored = pd.read_parquet(out)
    assert list(scored.columns) == [
        "prediction_id",
        "prediction",
        "probability",
        "confidence",
        "risk_level",
        "out_of_range",
        "CustomerId",
    ]
    assert scored["CustomerId"].tolist() == frame["CustomerId"].tolist()
    records = frame[FEATURES].astype(object).where(frame[FEATURES].notna(), None)
    with server.client() as client:
        answer = client.post("/predict", json=records.to_dict("records"))
    assert answer.status_code == 200, answer.text
    online = answer.json()["predictions"]
    assert scored["prediction"].tolist() == [str(p["prediction"]) for p in online]
    np.testing.assert_allclose(
        scored["probability"].to_numpy(), [p["probability"] for p in online], rtol=0, atol=1e-12
    )
    # The same decision scale and out-of-range flags as /predict (docs/serving.md).
    np.testing.assert_allclose(
        scored["confidence"].to_numpy(), [p["confidence"] for p in online], rtol=0, atol=1e-9
    )
    assert scored["risk_level"].tolist() == [p["risk_level"] for p in online]
    assert scored["out_of_range"].tolist() == [",".join(p["out_of_range"]) for p in online]
    # Every row is in the prediction log under the id written to the file.
    ids = scored["prediction_id"].tolist()
    logged = logged_rows(ctx, ids)
    assert len(logged) == 450
    first = logged[ids[3]]
    assert first.version == 1 and first.request_id == summary["request_id"]
    assert first.features["Balance"] is None
    assert first.probability == pytest.approx(scored["probability"][3], abs=1e-12)
    # Labels come back through `pgmlops feedback` by those ids.
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"prediction_id": ids[:40], "label": frame["Exited"][:40]}).to_csv(
        labels, index=False
    )
    fed = cli("feedback", "--file", str(labels), "--json")
    assert fed.returncode == 0, fed.stderr
    assert json.loads(fed.stdout)["stored"] == 40
    # ... and by the customer key, which the log keeps from --id-column.
    assert first.entity_key == frame["CustomerId"][3]
    by_key = tmp_path / "by_key.csv"
    pd.DataFrame(
        {"CustomerId": frame["CustomerId"][40:70], "label": frame["Exited"][40:70]}
    ).to_csv(by_key, index=False)
    fed = cli("feedback", "--file", str(by_key), "--key", "CustomerId", "--json")
    assert fed.returncode == 0, fed.stderr
    assert json.loads(fed.stdout)["stored"] == 30


def test_a_bad_row_is_refused_with_the_message_predict_gives(
    cli: Cli, server, ctx, tmp_path: Path
) -> None:
    frame = scoring_frame(300)
    frame["Age"] = frame["Age"].astype(object)
    frame.loc[211, "Age"] = "forty"
    data = tmp_path / "customers.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "scored.csv"

    result = cli("predict", "--data", str(data), "--out", str(out), "--chunk-rows", "50")

    assert_one_line_error(result, 3, "row 212", "'Age'")
    assert not out.exists() and partial_files(tmp_path) == []
    # Chunks scored before the bad row were logged, then taken back with the job.
    assert PredictionStore(ctx.db).count("churn") == 0
    record = json.loads(frame[FEATURES].iloc[[211]].to_json(orient="records"))[0]
    with server.client() as client:
        refused = client.post("/predict", json=record, headers=server.admin_headers())
    assert refused.status_code == 422
    online = refused.json()["detail"][0]["msg"]
    line = next(x for x in result.stderr.splitlines() if x.startswith("error:"))
    assert line.endswith(f"'Age': {online}"), (line, online)


def test_skip_writes_refused_rows_and_reasons_to_the_rejects_file(
    cli: Cli, trained, ctx, tmp_path: Path
) -> None:
    frame = scoring_frame(200)
    frame["Age"] = frame["Age"].astype(object)
    frame.loc[7, "Age"] = "old"
    frame.loc[120, "Geography"] = "Atlantis"
    data = tmp_path / "customers.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "scored.csv"
    rejects = tmp_path / "rejects.csv"

    result = cli(
        "predict", "--data", str(data), "--out", str(out), "--id-column", "CustomerId",
        "--chunk-rows", "64", "--on-error", "skip", "--rejects", str(rejects), "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["written"], summary["rejected"]) == (200, 198, 2)
    scored = pd.read_csv(out)
    assert len(scored) == 198 and "C000007" not in set(scored["CustomerId"])
    refused = pd.read_csv(rejects, dtype=str)
    assert refused["row"].tolist() == ["8", "121"]
    assert refused["CustomerId"].tolist() == ["C000007", "C000120"]
    assert refused["Age"][0] == "old"
    assert "'Age'" in refused["reason"][0] and "'Geography'" in refused["reason"][1]
    assert PredictionStore(ctx.db).count("churn") == 198


def test_parquet_in_and_out_with_a_chosen_version_and_no_log(
    cli: Cli, trained, ctx, tmp_path: Path
) -> None:
    frame = scoring_frame(260)
    data = tmp_path / "customers.parquet"
    frame.to_parquet(data, index=False)
    out = tmp_path / "scored.parquet"

    result = cli(
        "predict", "--data", str(data), "--out", str(out), "--version", str(trained["v2"]),
        "--id-column", "CustomerId", "--chunk-rows", "100", "--no-log", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == trained["v2"]
    scored = pd.read_parquet(out)
    assert len(scored) == 260 and scored["CustomerId"].tolist() == frame["CustomerId"].tolist()
    assert scored["probability"].between(0, 1).all()
    assert PredictionStore(ctx.db).count("churn") == 0


def test_a_query_scored_into_a_postgresql_table(cli: Cli, trained, ctx, tmp_path: Path) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("table output is written to PostgreSQL")
    frame = scoring_frame(150)
    with ctx.db.engine.begin() as conn:
        frame.to_sql("customers", conn, index=False)
    url = ctx.settings.database_url.replace("postgresql+psycopg://", "postgresql://")

    result = cli(
        "predict", "--data", url, "--query", "SELECT * FROM customers ORDER BY \"CustomerId\"",
        "--out", f"{url}?table=scores", "--id-column", "CustomerId", "--chunk-rows", "40",
        "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    with ctx.db.engine.connect() as conn:
        table = pd.read_sql('SELECT * FROM scores ORDER BY "CustomerId"', conn)
    assert len(table) == 150 and table["CustomerId"].tolist() == frame["CustomerId"].tolist()
    logged = logged_rows(ctx, [str(i) for i in table["prediction_id"]])
    assert len(logged) == 150

    # A failing job leaves the table as it was: its rows were in one transaction.
    frame.loc[100, "Geography"] = "Atlantis"
    with ctx.db.engine.begin() as conn:
        frame.to_sql("customers2", conn, index=False)
    failed = cli(
        "predict", "--data", url, "--query", "SELECT * FROM customers2",
        "--out", f"{url}?table=scores", "--chunk-rows", "40",
    )  # fmt: skip
    assert_one_line_error(failed, 3, "row 101", "'Geography'")
    with ctx.db.engine.connect() as conn:
        assert pd.read_sql("SELECT count(*) AS n FROM scores", conn)["n"][0] == 150


def test_bad_flags_and_paths_get_one_line_errors(
    ctx, trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMLOPS_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("PGMLOPS_ARTIFACT_ROOT", ctx.settings.artifact_root)
    monkeypatch.setenv("PGMLOPS_MODEL_NAME", "churn")
    data = tmp_path / "customers.csv"
    scoring_frame(20).to_csv(data, index=False)
    no_age = tmp_path / "no_age.csv"
    scoring_frame(20).drop(columns=["Age"]).to_csv(no_age, index=False)
    out = str(tmp_path / "out.parquet")
    db = ctx.settings.database_url
    cases = [
        (["--data", str(tmp_path / "nope.csv"), "--out", out], 3, "does not exist"),
        (["--data", str(data), "--out", str(tmp_path / "out.xlsx")], 2, "unsupported format"),
        (["--data", str(data), "--out", str(tmp_path / "no" / "o.csv")], 2, "does not exist"),
        (["--data", str(data), "--out", out, "--version", "1", "--alias", "x"], 2, "not both"),
        (["--data", str(data), "--out", out, "--on-error", "skip"], 2, "--rejects"),
        (["--data", str(data), "--out", out, "--on-error", "maybe"], 2, "--on-error"),
        (["--data", str(data), "--out", out, "--chunk-rows", "0"], 2, "--chunk-rows"),
        (["--data", str(data), "--out", out, "--version", "9"], 7, "9"),
        (["--data", str(data), "--out", out, "--alias", "staging"], 7, "'staging'"),
        (["--data", str(no_age), "--out", out], 3, "'Age'"),
        (["--data", str(data), "--out", out, "--id-column", "Nope"], 2, "'Nope'"),
        (["--data", "postgresql://x@127.0.0.1/db", "--out", out], 2, "--query"),
        (["--data", str(data), "--query", "SELECT 1", "--out", out], 2, "database URL"),
        (["--data", db, "--query", "SELECT * FROM nope;", "--out", out], 3, "SQL data source"),
        (["--data", str(data), "--out", "mysql://h/db?table=t"], 2, "postgresql"),
        (["--data", str(data), "--out", "postgresql://h/db"], 2, "?table="),
    ]
    runner = CliRunner()
    for args, code, word in cases:
        result = runner.invoke(cli_app, ["predict", *args])
        assert result.exit_code == code, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and word in lines[0], (args, result.stderr)
        assert "Traceback" not in result.output
    assert not Path(out).exists() and partial_files(tmp_path) == []


def _rename_log_table(ctx, old: str, new: str) -> None:
    from sqlalchemy import text

    with ctx.db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def _batch(ctx, tmp_path: Path, wait_seconds: float):
    from pgmlops.services.batch import BatchRequest, run_batch_predict

    data = tmp_path / "customers.csv"
    scoring_frame(300).to_csv(data, index=False)
    settings = ctx.settings.model_copy(
        update={
            "serving": ctx.settings.serving.model_copy(update={"log_wait_seconds": wait_seconds})
        }
    )
    ctx.settings = settings
    req = BatchRequest(
        data=str(data), out=str(tmp_path / "scored.csv"), model_name="churn",
        id_column="CustomerId", chunk_rows=100,
    )  # fmt: skip
    return lambda: run_batch_predict(ctx, req)


def test_batch_predict_waits_for_a_log_that_comes_back_and_logs_every_row(
    ctx, trained, tmp_path: Path
) -> None:
    import threading

    run = _batch(ctx, tmp_path, wait_seconds=10.0)
    PredictionStore(ctx.db).count()  # schema checked before the table goes away
    _rename_log_table(ctx, "predictions", "predictions_away")
    back = threading.Timer(1.0, _rename_log_table, (ctx, "predictions_away", "predictions"))
    back.start()
    try:
        summary = run()
    finally:
        back.join()
    assert summary.rows == summary.logged == 300
    assert PredictionStore(ctx.db).count("churn") == 300


def test_batch_predict_fails_with_the_count_when_the_log_stays_away(
    ctx, trained, tmp_path: Path
) -> None:
    from pgmlops.errors import StoreError

    run = _batch(ctx, tmp_path, wait_seconds=0.5)
    PredictionStore(ctx.db).count()
    _rename_log_table(ctx, "predictions", "predictions_away")
    try:
        with pytest.raises(StoreError, match=r"prediction log refused 100 rows .*no output"):
            run()
    finally:
        _rename_log_table(ctx, "predictions_away", "predictions")
    assert not (tmp_path / "scored.csv").exists()


def test_canary_rows_go_where_predict_sends_them_and_say_who_answered(
    cli: Cli, trained, ctx, tmp_path: Path
) -> None:
    from pgmlops.services.live.deployment import deploy
    from tests.e2e.serverproc import start_server, stop_server

    frame = scoring_frame(400)
    data = tmp_path / "customers.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "scored.csv"
    args = ["predict", "--data", str(data), "--out", str(out), "--id-column", "CustomerId"]
    assert_one_line_error(cli(*args, "--canary"), 2, "no canary deployed")
    deploy(ctx, "churn", trained["v2"], canary="50%", sticky_key="CustomerId", actor="t")

    result = cli(*args, "--canary", "--chunk-rows", "150", "--json")

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    scored = pd.read_csv(out)
    assert list(scored.columns[-2:]) == ["version", "role"]
    assert scored["CustomerId"].tolist() == frame["CustomerId"].tolist()
    roles = scored["role"].tolist()
    n_canary = roles.count("canary")
    assert abs(n_canary - 200) <= 5 * 10  # binomial(400, 0.5): 5 standard deviations
    assert summary["canary"]["rows"]["canary"] == n_canary
    assert set(scored.loc[scored["role"] == "canary", "version"]) == {trained["v2"]}
    logged = logged_rows(ctx, scored["prediction_id"].tolist())
    assert {(r.version, r.role) for r in logged.values()} == {
        (trained["v1"], None),
        (trained["v2"], "canary"),
    }
    # A real server answers each customer with the version the batch gave it.
    server = start_server(ctx.settings, tmp_path)
    try:
        records = frame[[*FEATURES, "CustomerId"]].astype(object)
        records = records.where(records.notna(), None).to_dict("records")
        with server.client() as client:
            answer = client.post("/predict", json=records)
        assert answer.status_code == 200, answer.text
        assert [p["role"] for p in answer.json()["predictions"]] == roles
    finally:
        stop_server(server)
    # The text line says who answered.
    again = cli(*args, "--canary")
    assert again.returncode == 0, again.stderr
    assert f"{n_canary} answered by challenger v{trained['v2']}" in again.stdout
