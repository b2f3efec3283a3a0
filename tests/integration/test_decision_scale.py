"""/predict, `pgmlops predict`'s chunks and the Python API answer on one decision scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pgmlops import Client
from pgmlops.domain.demo_data import make_churn
from pgmlops.services.batch.scoring import score_chunk
from pgmlops.services.commands import train_command
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.services.promotion import promote
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore

THRESHOLD = 0.2


@pytest.fixture
def trained(ctx, churn_csv: Path) -> int:
    """A churn model whose threshold is far from 0.5, as a tuned one often is."""
    out = train_command(
        ctx,
        data=str(churn_csv),
        target="Exited",
        model_name="churn",
        overrides={
            "params": {"max_iter": 30},
            "threshold": {"objective": "fixed", "value": THRESHOLD},
        },
        actor="test",
    )
    promote(ctx, "churn", out["version"], actor="test", force=True, reason="test set-up")
    return out["version"]


def expected_confidence(p: float, t: float) -> float:
    return (p - t) / (1 - t) if p >= t else (t - p) / t


def test_every_answer_path_agrees_with_the_class_and_with_each_other(
    ctx, settings, trained: int
) -> None:
    model = load_version(ctx, ctx.registry.get_version("churn", trained))
    assert model.card.threshold == THRESHOLD
    frame = make_churn(300, seed=11).drop(columns=["CustomerId", "Exited"])
    rows = frame.to_dict("records")
    serving = settings.serving
    negative, positive = model.card.classes

    items, records = predict_records(
        model, [dict(r) for r in rows], serving, request_id=None, started=0.0
    )
    ones = [
        predict_records(model, [dict(r)], serving, request_id=None, started=0.0)[0][0]
        for r in rows[:40]
    ]
    table = score_chunk(
        model, frame, serving, id_column=None, request_id="b", log=True
    ).table.to_pandas()
    with Client(settings=settings) as client:
        python = client.load("churn@production").predict_records(frame)

    # Some answers fall between the threshold and 0.5: there the old scale contradicted.
    p = np.array([i["probability"] for i in items])
    assert ((p >= THRESHOLD) & (p < 0.5)).sum() >= 5
    for k, item in enumerate(items):
        said_positive = item["prediction"] == positive
        assert said_positive == (item["probability"] >= THRESHOLD)
        assert (item["risk_level"] == "low") == (not said_positive), item
        assert item["confidence"] == pytest.approx(
            expected_confidence(item["probability"], THRESHOLD)
        )
        assert records[k].confidence == item["confidence"]
        assert table["confidence"].iat[k] == pytest.approx(item["confidence"], abs=1e-12)
        assert table["risk_level"].iat[k] == item["risk_level"]
        assert python[k]["confidence"] == pytest.approx(item["confidence"], abs=1e-9)
        assert python[k]["risk_level"] == item["risk_level"]
    for one, item in zip(ones, items, strict=False):
        assert one["risk_level"] == item["risk_level"]
        assert one["confidence"] == pytest.approx(item["confidence"], abs=1e-9)
    assert negative != positive


def test_monitoring_compares_logged_confidence_with_a_reference_on_the_same_scale(
    ctx, settings, trained: int
) -> None:
    model = load_version(ctx, ctx.registry.get_version("churn", trained))
    rows = make_churn(2_000, seed=12).drop(columns=["CustomerId", "Exited"]).to_dict("records")
    _, records = predict_records(model, rows, settings.serving, request_id=None, started=0.0)
    PredictionStore(ctx.db).write_batch(records)

    result = run_monitor(ctx, "churn")

    conf = result.confidence
    # In-distribution rows: the logged mean sits near the reference's. Had the reference kept
    # |p - 0.5| * 2 while answers moved to the threshold's scale, they would differ by far
    # more than the sampling spread.
    assert conf["current"] == pytest.approx(conf["reference"], abs=0.05)
    assert conf["current"] == pytest.approx(
        np.mean([expected_confidence(r.probability, THRESHOLD) for r in records])
    )
    assert not conf["degraded"]
