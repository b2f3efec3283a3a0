"""Raw rows with the columns training left out, and labels by key: a real server and CLI.

The model is trained on demo customers plus a constant `Region` column, so training leaves
out `CustomerId` (an identifier) and `Region` (a constant). Users post rows straight from
their table, identifier and all, and later send labels keyed by the customer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from pgmlops.domain.demo_data import make_churn
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.tables import PredictionRow
from tests.e2e.serverproc import Server, start_server, stop_server
from tests.e2e.test_cli import Cli, assert_one_line_error

pytestmark = pytest.mark.e2e


def raw_rows(n: int, seed: int) -> list[dict]:
    """Rows as the customer table holds them: the identifier and the constant column too."""
    frame = make_churn(n, seed=seed).drop(columns=["Exited"]).assign(Region="EU")
    return frame.to_dict(orient="records")


@pytest.fixture
def keyed_model(ctx, tmp_path: Path) -> int:
    data = tmp_path / "customers.csv"
    make_churn(1_500, seed=31).assign(Region="EU").to_csv(data, index=False)
    trained = train_command(
        ctx,
        data=str(data),
        target="Exited",
        model_name="churn",
        actor="t",
        overrides={"params": {"max_iter": 30}},
    )
    dropped = trained["dropped_columns"]
    assert "identifier" in dropped["CustomerId"] and "constant" in dropped["Region"]
    promote_command(
        ctx, model_name="churn", version=trained["version"], force=False, reason=None, actor="t"
    )
    return trained["version"]


@pytest.fixture
def keyed_server(ctx, keyed_model: int, tmp_path: Path) -> Iterator[Server]:
    running = start_server(ctx.settings, tmp_path)
    yield running
    stop_server(running)


def logged_keys(ctx, n: int, timeout: float = 15.0) -> dict[uuid.UUID, str | None]:
    deadline = time.monotonic() + timeout
    while PredictionStore(ctx.db).count("churn") < n and time.monotonic() < deadline:
        time.sleep(0.2)
    with ctx.db.session() as s:
        return dict(s.execute(select(PredictionRow.id, PredictionRow.entity_key)).all())


def test_a_raw_row_with_the_id_and_constant_columns_is_answered_and_its_key_logged(
    keyed_server: Server, ctx
) -> None:
    one, batch = raw_rows(1, seed=1)[0], raw_rows(3, seed=2)
    with keyed_server.client() as http:
        single = http.post("/predict", json=one)
        many = http.post("/predict", json=batch)
    assert single.status_code == 200, single.text
    assert many.status_code == 200, many.text
    answers = [single.json(), *many.json()["predictions"]]
    sent = [one, *batch]
    logged = logged_keys(ctx, 4)
    assert [logged[uuid.UUID(a["prediction_id"])] for a in answers] == [
        str(r["CustomerId"]) for r in sent
    ]
    with ctx.db.session() as s:
        features = s.scalars(select(PredictionRow.features)).all()
    assert all("CustomerId" not in f and "Region" not in f for f in features)


def test_the_left_out_columns_change_no_prediction(keyed_server: Server) -> None:
    row = raw_rows(1, seed=3)[0]
    bare = {k: v for k, v in row.items() if k not in ("CustomerId", "Region")}
    with keyed_server.client() as http:
        full = http.post("/predict", json=row).json()
        plain = http.post("/predict", json=bare).json()
        other = http.post("/predict", json={**row, "Region": "US", "CustomerId": "C-9"}).json()
    assert full["probability"] == plain["probability"] == other["probability"]


def test_an_unknown_field_still_follows_extra_fields(ctx, keyed_model: int, tmp_path) -> None:
    row = {**raw_rows(1, seed=4)[0], "Colour": "red"}
    strict = start_server(ctx.settings, tmp_path)
    try:
        with strict.client() as http:
            refused = http.post("/predict", json=row)
        assert refused.status_code == 422 and "Colour" in refused.json()["error"]
    finally:
        stop_server(strict)
    lenient = start_server(ctx.settings, tmp_path, PGMLOPS_SERVING__EXTRA_FIELDS="ignore")
    try:
        with lenient.client() as http:
            assert http.post("/predict", json=row).status_code == 200
    finally:
        stop_server(lenient)


def test_openapi_documents_the_left_out_columns_as_optional_and_ignored(
    keyed_server: Server,
) -> None:
    with keyed_server.client() as http:
        record = http.get("/openapi.json").json()["components"]["schemas"]["Record"]
        served = http.get("/models").json()["serving"]
    for name in ("CustomerId", "Region"):
        assert name not in record["required"]
        assert record["properties"][name]["description"].startswith("Ignored")
    assert served["key_column"] == "CustomerId"


def test_labels_by_customer_key_over_http_and_from_the_cli_reach_monitoring(
    keyed_server: Server, ctx, tmp_path: Path
) -> None:
    rows = raw_rows(200, seed=5)
    truth = make_churn(200, seed=5)["Exited"].astype(str).tolist()
    with keyed_server.client() as http:
        assert http.post("/predict", json=rows).status_code == 200
        by_http = http.post(
            "/feedback",
            json=[
                {"key": rows[0]["CustomerId"], "label": truth[0]},
                {"key": "nobody", "label": "1"},
            ],
        )
    assert by_http.status_code == 200, by_http.text
    assert by_http.json() == {
        "stored": 1,
        "replaced": 0,
        "keys_not_found": 1,
        "unmatched_keys": ["nobody"],
    }
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {"CustomerId": [r["CustomerId"] for r in rows] + [1, 2], "label": [*truth, "0", "1"]}
    ).to_csv(labels, index=False)

    loaded = Cli(ctx.settings, tmp_path)("feedback", "--file", str(labels), "--key", "CustomerId")

    assert loaded.returncode == 0, loaded.stderr
    assert "stored 200 label(s); 1 replaced an earlier label" in loaded.stdout
    assert "2 key(s) match no logged prediction, not stored: 1, 2" in loaded.stdout
    assert run_monitor(ctx, "churn").labelled_performance["n_labels"] == 200


def test_feedback_by_a_key_column_the_file_lacks_is_one_line_and_exit_2(
    ctx, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("customer,label\n7,1\n")
    result = Cli(ctx.settings, tmp_path)("feedback", "--file", str(labels), "--key", "customer_id")
    assert_one_line_error(result, 2, "--key customer_id", "no such column", "customer, label")
