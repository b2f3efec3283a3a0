"""Automatic rollback (issue 25 §5): the worker's watch after a promotion, on both databases.

Traffic is scored by the served version (services/serving/prediction.py) and logged with the store,
labels go through the feedback service: what the worker reads is what serving writes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from pgmlops import Client
from pgmlops.api.app import create_app
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.commands import models_command
from pgmlops.services.rollback.request_counts import RequestCounter, outcome_of
from pgmlops.services.rollback.watch import ROLLBACK_ACTOR, check_rollback
from pgmlops.services.serving.feedback import LabelFor, record_labels
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.services.worker import Worker
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.rollback.serving_counts import ServingCountStore
from pgmlops.store.rollback.verdicts import RollbackVerdictStore
from tests.integration.test_python_api import churn_version, register  # noqa: F401

ACTOR = "test"


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


def _promote_again(client: Client, trained) -> int:
    """Register the session's artifacts again as v2 and force it into production."""
    card, blobs = trained
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    v2 = ctx.registry.create_version("churn", files, card, ACTOR, sign=sign).version
    client.promote("churn", v2, force=True, reason="retrained on the same data")
    return v2


def _traffic(client: Client, version: int, n: int, *, invert: bool, seed: int) -> None:
    """Score n churn rows with `version`, log them, then send their labels.

    With `invert`, each label is the opposite of what the version answered: a version that
    is wrong every time, as the labels will say.
    """
    ctx = client.context
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    frame = make_churn(n, seed=seed)
    truth = frame.pop("Exited").astype(str).tolist()
    rows = [r.__dict__ for r in model.batch.validate_python(frame.to_dict("records"))]
    items, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    PredictionStore(ctx.db).write_batch(records)
    classes = model.card.classes
    labels = []
    for k, (item, record) in enumerate(zip(items, records, strict=True)):
        label = truth[k]
        if invert:
            label = classes[1] if str(item["prediction"]) == classes[0] else classes[0]
        labels.append(LabelFor(label, f"row {k}", prediction_id=record.id))
    record_labels(ctx, labels, model_name="churn")


def _production(client: Client) -> int | None:
    return client.context.registry.alias_version("churn", PRODUCTION)


def test_a_bad_promotion_is_rolled_back_by_the_worker_with_its_numbers(
    client,
    churn_version,  # noqa: F811
) -> None:
    v1 = register(client, churn_version, "churn")
    v2 = _promote_again(client, churn_version)
    _traffic(client, v2, 120, invert=True, seed=5)
    worker = Worker(client.context)
    worker.watch_promotions(datetime.now(UTC))
    assert _production(client) == v1
    assert worker.stats.rollbacks == 1
    last = client.history("churn")[-1]
    assert (last.action, last.previous_version, last.new_version) == ("rollback", v2, v1)
    assert last.actor == ROLLBACK_ACTOR
    assert "labelled roc_auc" in last.reason and "on 120 labels" in last.reason
    assert f"vs v{v1}" in last.reason and "p " in last.reason
    shown = models_command(client.context, model_name="churn", history=True)
    rows = shown["models"][0]["history"]
    assert rows[-1]["actor"] == ROLLBACK_ACTOR and "automatic rollback" in rows[-1]["reason"]
    verdict = RollbackVerdictStore(client.context.db).for_model("churn")
    assert [(v.outcome, v.signal, v.version) for v in verdict] == [
        ("rolled_back", "labelled_performance", v2)
    ]
    assert verdict[0].figures["labelled_performance"]["labels"] == 120
    # The restored version is never judged, and nothing is promoted again.
    again = check_rollback(client.context, "churn")
    assert again.status == "not-watched" and "rollback" in again.message
    assert _production(client) == v1


def test_a_healthy_promotion_stays(client, churn_version) -> None:  # noqa: F811
    register(client, churn_version, "churn")
    v2 = _promote_again(client, churn_version)
    _traffic(client, v2, 300, invert=False, seed=6)
    result = check_rollback(client.context, "churn")
    assert result.status == "healthy", result.message
    assert {s.signal for s in result.signals} == {
        "error_rate",
        "latency_p99",
        "labelled_performance",
        "prediction_drift",
    }
    assert not any(s.crossed for s in result.signals)
    assert _production(client) == v2


def test_after_the_watch_period_nothing_is_rolled_back(client, churn_version) -> None:  # noqa: F811
    register(client, churn_version, "churn")
    v2 = _promote_again(client, churn_version)
    _traffic(client, v2, 120, invert=True, seed=5)
    hours = client.settings.rollback.watch_hours
    later = datetime.now(UTC) + timedelta(hours=hours, minutes=1)
    result = check_rollback(client.context, "churn", later)
    assert result.status == "not-watched" and "watch ended" in result.message
    assert _production(client) == v2


def test_with_auto_rollback_off_nothing_is_rolled_back(
    settings: Settings,
    churn_version,  # noqa: F811
) -> None:
    off = settings.model_copy(
        update={"rollback": settings.rollback.model_copy(update={"auto_rollback": False})}
    )
    with Client(settings=off) as client:
        register(client, churn_version, "churn")
        v2 = _promote_again(client, churn_version)
        _traffic(client, v2, 120, invert=True, seed=5)
        Worker(client.context).watch_promotions(datetime.now(UTC))
        assert check_rollback(client.context, "churn").status == "off"
        assert _production(client) == v2


def test_a_target_that_fails_verification_is_not_restored(
    client,
    churn_version,  # noqa: F811
) -> None:
    v1 = register(client, churn_version, "churn")
    v2 = _promote_again(client, churn_version)
    _traffic(client, v2, 120, invert=True, seed=5)
    # v1 shares its blobs with v2 (content-addressed), so its ONNX copy is damaged through
    # another stored file: v1's card now names a file whose bytes do not match.
    ctx = client.context
    old = ctx.registry.recorded_version("churn", v1)
    damaged = ctx.artifacts.put(b"not a model")
    ctx.registry.set_files("churn", v1, {**old.files, "onnx": damaged})
    result = check_rollback(ctx, "churn")
    assert result.status == "refused", result.message
    assert "NOT restored" in result.message and f"production stays v{v2}" in result.message
    assert _production(client) == v2
    rows = models_command(ctx, model_name="churn", history=True)["models"][0]["history"]
    refused = [r for r in rows if r["action"] == "rollback-refused"]
    assert len(refused) == 1 and "failed artifact verification" in refused[0]["reason"]
    # Judged once: the next check does not try again.
    assert check_rollback(ctx, "churn").status == "not-watched"


def test_requests_a_new_version_fails_roll_it_back(
    settings: Settings,
    churn_version,  # noqa: F811
) -> None:
    """Every serving process counts its requests per version: a version that fails on most
    of them (5xx, scoring raised) is rolled back on its error rate, though the log holds no
    such row."""
    with Client(settings=settings) as client:
        v1 = register(client, churn_version, "churn")
        good = make_churn(60, seed=8).drop(columns=["Exited"]).to_dict("records")
        with TestClient(create_app(settings)) as http:
            for record in good:
                assert http.post("/predict", json=record).status_code == 200
        v2 = _promote_again(client, churn_version)
        # What a serving process counts when /predict answers 500 (predict_routes.py).
        counter = RequestCounter(ServingCountStore(client.context.db))
        counter.count("churn", v2, "answered", 30)
        counter.count("churn", v2, outcome_of(500), 30)
        counter.flush()
        result = check_rollback(client.context, "churn")
        assert result.status == "rolled_back", result.message
        assert _production(client) == v1
        assert "server error rate 50.0% of 60 requests" in result.message
        with TestClient(create_app(settings)) as http:
            metrics = http.get("/metrics").text
        assert (
            'pgmlops_auto_rollbacks_total{model="churn",reason="error_rate",'
            'outcome="rolled_back"} 1' in metrics
        )


def test_requests_clients_get_wrong_never_roll_a_version_back(
    settings: Settings,
    churn_version,  # noqa: F811
) -> None:
    """A 4xx is the client's mistake (a bad body, an unknown field): shown, never alarmed on."""
    with Client(settings=settings) as client:
        register(client, churn_version, "churn")
        good = make_churn(60, seed=8).drop(columns=["Exited"]).to_dict("records")
        with TestClient(create_app(settings)) as http:
            for record in good:
                assert http.post("/predict", json=record).status_code == 200
        v2 = _promote_again(client, churn_version)
        with TestClient(create_app(settings)) as http:
            for k, record in enumerate(good):
                bad = {**record, "Age": "old"} if k % 2 else record
                assert http.post("/predict", json=bad).status_code == (422 if k % 2 else 200)
        result = check_rollback(client.context, "churn")
        assert result.status == "healthy", result.message
        assert _production(client) == v2
        errors = next(s for s in result.signals if s.signal == "error_rate")
        assert (errors.figures["errors"], errors.figures["refused"]) == (0, 30)
        assert "30 refused as client errors, not counted" in errors.detail
