"""Several models in one server process: each with its own routes, schema, reloads and metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.commands import train_command
from tests.e2e.conftest import price_record
from tests.e2e.serverproc import Server, server_env, start_server, stop_server

pytestmark = pytest.mark.e2e


def churn_record() -> dict:
    return make_churn(1, seed=5).drop(columns=["CustomerId", "Exited"]).to_dict("records")[0]


def test_each_model_has_its_own_route_and_schema(multi: Server, ctx) -> None:
    with multi.client() as http:
        churn = http.post("/models/churn/predict", json=churn_record())
        price = http.post("/models/prices/predict", json=price_record())
        default = http.post("/predict", json=churn_record())
        # Each route validates against its own model's schema.
        wrong = http.post("/models/prices/predict", json=churn_record())
        batch = http.post("/models/prices/predict", json=[price_record()] * 3)
    assert churn.status_code == 200, churn.text
    assert churn.json()["model"] == "churn" and churn.json()["prediction"] in ("0", "1")
    assert price.status_code == 200, price.text
    assert price.json()["model"] == "prices" and price.json()["version"] == 1
    assert isinstance(price.json()["prediction"], float)
    # /predict keeps serving the first model given.
    assert default.status_code == 200 and default.json()["model"] == "churn"
    assert wrong.status_code == 422 and "area" in wrong.json()["error"]
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    ids = {
        churn.json()["prediction_id"]: "churn",
        price.json()["prediction_id"]: "prices",
        default.json()["prediction_id"]: "churn",
    }
    from pgmlops.store.tables import PredictionRow

    deadline = time.monotonic() + 15
    logged: dict = {}
    while time.monotonic() < deadline and len(logged) < 6:
        with ctx.db.session() as s:
            rows = s.execute(
                select(PredictionRow.id, PredictionRow.model_name, PredictionRow.version)
            )
            logged = {str(i): (m, v) for i, m, v in rows}
        time.sleep(0.2)
    for pid, name in ids.items():
        assert logged[pid] == (name, 1)


def test_openapi_has_a_typed_body_per_model(multi: Server) -> None:
    with multi.client() as http:
        doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["Record_churn"]["properties"]) >= {"CreditScore", "Geography"}
    assert set(schemas["Record_prices"]["properties"]) == {"area", "rooms", "district"}
    body = doc["paths"]["/models/prices/predict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["anyOf"][0] == {
        "$ref": "#/components/schemas/Record_prices"
    }
    assert "/models/churn/feedback" in doc["paths"] and "/models/prices/feedback" in doc["paths"]
    # The default route is documented as before.
    assert schemas["Record"]["properties"] == schemas["Record_churn"]["properties"]


def test_an_unknown_model_is_a_404_with_one_line(multi: Server) -> None:
    with multi.client() as http:
        resp = http.post("/models/nope/predict", json=price_record())
        fb = http.post(
            "/models/nope/feedback", json={"prediction_id": str(uuid.uuid4()), "label": 1}
        )
    assert resp.status_code == 404 and fb.status_code == 404
    error = resp.json()["error"]
    assert "'nope'" in error and "churn, prices" in error and "\n" not in error


def test_feedback_goes_to_the_model_it_names(multi: Server) -> None:
    with multi.client() as http:
        price = http.post("/models/prices/predict", json=price_record()).json()
        churn = http.post("/models/churn/predict", json=churn_record()).json()
        ok = http.post(
            "/models/prices/feedback", json={"prediction_id": price["prediction_id"], "label": 310}
        )
        other = http.post(
            "/models/prices/feedback", json={"prediction_id": churn["prediction_id"], "label": 1}
        )
        bad = http.post(
            "/models/prices/feedback",
            json={"prediction_id": price["prediction_id"], "label": "cheap"},
        )
        churn_ok = http.post(
            "/models/churn/feedback", json={"prediction_id": churn["prediction_id"], "label": 1}
        )
    assert ok.status_code == 200 and ok.json() == {"stored": 1, "replaced": 0}, ok.text
    assert other.status_code == 422 and "made by model 'churn'" in other.json()["error"]
    assert bad.status_code == 422 and "number" in bad.json()["error"]
    assert churn_ok.status_code == 200, churn_ok.text


def test_health_ready_and_metrics_name_each_model(multi: Server) -> None:
    with multi.client() as http:
        http.post("/models/prices/predict", json=price_record())
        http.post("/predict", json=churn_record())
        health = http.get("/health").json()
        ready = http.get("/ready").json()
        metrics = http.get("/metrics").text
    assert [m["model"] for m in health["models"]] == ["churn", "prices"]
    assert all(m["version"] == 1 and m["error"] is None for m in health["models"])
    assert ready["models"] == {"churn": 1, "prices": 1}
    assert 'pgmlops_predictions_total{model="prices",prediction="value",version="1"} 1.0' in metrics
    assert (
        'pgmlops_http_requests_total{model="prices",route="/models/{name}/predict",status="200",'
        'version="1"} 1.0' in metrics
    )
    assert 'route="/predict",status="200",version="1"' in metrics
    assert 'pgmlops_model_info{engine="onnx",model="prices",version="1"} 1.0' in metrics


def test_an_alias_move_reloads_that_model_only_in_every_worker(
    ctx, two_models, prices_csv: Path, tmp_path: Path
) -> None:
    srv = start_server(ctx.settings, tmp_path, workers=2, args=("--all-models",))
    try:
        v2 = train_command(
            ctx,
            data=str(prices_csv),
            target="price",
            model_name="prices",
            actor="t",
            overrides={"seed": 1},
        )["version"]
        ctx.registry.move_alias(
            "prices",
            PRODUCTION,
            new_version=v2,
            expected_version=1,
            action="force",
            actor="test",
            reason="move one",
        )
        # A fresh connection per request: the kernel spreads them over both workers, and
        # every worker must have followed the move.
        deadline = time.monotonic() + 20
        in_a_row, workers = 0, set()
        while time.monotonic() < deadline and (in_a_row < 20 or len(workers) < 2):
            with srv.client() as http:
                seen = http.post("/models/prices/predict", json=price_record()).json()["version"]
            in_a_row = in_a_row + 1 if seen == v2 else 0
            with srv.client() as http:
                health = http.get("/health").json()
            if in_a_row:
                workers.add(health["worker_pid"])
                by_model = {m["model"]: m for m in health["models"]}
                # The other model was loaded once, at start, and not again.
                assert by_model["churn"]["version"] == 1 and by_model["churn"]["reloads"] == 1
            time.sleep(0.05)
        assert in_a_row >= 20 and len(workers) == 2, (in_a_row, workers)
        with srv.client() as http:
            churn = http.post("/models/churn/predict", json=churn_record()).json()
            default = http.post("/predict", json=churn_record()).json()
    finally:
        stop_server(srv)
    assert churn["version"] == 1 and default["model"] == "churn"


def serve_fails(settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = server_env(settings)
    return subprocess.run(
        [sys.executable, "-m", "pgmlops.cli", "serve", "--port", "1", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--model-name", "churn", "--model-name", "churn"), ["'churn'", "twice"]),
        (("--model-name", "churn", "--model-name", "ghost"), ["'ghost'", "no production"]),
        (("--model-name", "churn", "--all-models"), ["--all-models", "--model-name"]),
    ],
)
def test_bad_model_choices_are_one_line_and_exit_2(
    ctx, two_models, tmp_path: Path, args: tuple[str, ...], words: list[str]
) -> None:
    result = serve_fails(ctx.settings, tmp_path, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_all_models_with_nothing_in_production_is_one_line(ctx, tmp_path: Path) -> None:
    result = serve_fails(ctx.settings, tmp_path, "--all-models")
    assert result.returncode == 2 and "no registered model" in result.stderr, result.stderr


def test_the_web_page_offers_a_picker_that_the_models_route_feeds(multi: Server) -> None:
    with multi.client() as http:
        page = http.get("/").text
        listing = http.get("/models", params={"model_name": "prices"}).json()
    assert 'id="picker"' in page and "models/${encodeURIComponent(current)}/predict" in page
    assert listing["served"] == ["churn", "prices"]
    assert listing["serving"]["model"] == "prices"
    assert listing["card"]["task"] == "regression"


def test_one_model_server_answers_as_before(ctx, two_models, tmp_path: Path) -> None:
    srv = start_server(ctx.settings, tmp_path)
    try:
        with srv.client() as http:
            resp = http.post("/models/prices/predict", json=price_record())
            ok = http.post("/predict", json=churn_record())
            doc = http.get("/openapi.json").json()
    finally:
        stop_server(srv)
    assert resp.status_code == 404 and ok.status_code == 200
    assert not any(p.startswith("/models/") for p in doc["paths"])
