"""Train → register → promote → refuse a worse model → rollback, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import (
    ArtifactError,
    ConflictError,
    NotFoundError,
    PromotionRefused,
    ValidationError,
)
from pgmlops.services.commands import models_command, promote_command, train_command
from pgmlops.services.promotion import read_holdout, rollback, version_engine
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records, prediction_ids

ACTOR = "tester"


def _train(ctx, data: Path, **kw) -> dict:
    return train_command(
        ctx,
        data=str(data),
        target=kw.pop("target", "Exited"),
        model_name="churn",
        actor=ACTOR,
        **kw,
    )


@pytest.fixture
def shuffled_csv(churn_csv: Path, tmp_path: Path) -> Path:
    frame = pd.read_csv(churn_csv)
    frame["Exited"] = np.random.default_rng(0).permutation(frame["Exited"].to_numpy())
    path = tmp_path / "shuffled.csv"
    frame.to_csv(path, index=False)
    return path


def test_refuses_a_worse_model_and_rolls_back(ctx, churn_csv: Path, shuffled_csv: Path) -> None:
    weak = _train(
        ctx, churn_csv, overrides={"estimator": "sklearn.linear_model.LogisticRegression"}
    )
    first = promote_command(
        ctx, model_name="churn", version=weak["version"], force=False, reason=None, actor=ACTOR
    )
    assert first["decision"]["approved"] and first["previous_version"] is None
    strong = _train(ctx, churn_csv)
    assert strong["metrics"]["roc_auc"] > weak["metrics"]["roc_auc"]
    second = promote_command(
        ctx, model_name="churn", version=strong["version"], force=False, reason=None, actor=ACTOR
    )
    assert second["previous_version"] == weak["version"]
    worse = _train(ctx, shuffled_csv)
    with pytest.raises(PromotionRefused) as refused:
        promote_command(
            ctx, model_name="churn", version=worse["version"], force=False, reason=None, actor=ACTOR
        )
    failed = {g.name for g in refused.value.decision.failed()}
    assert "primary" in failed
    assert ctx.registry.alias_version("churn", PRODUCTION) == strong["version"]

    event = rollback(ctx, "churn", actor=ACTOR)
    assert (event.previous_version, event.new_version) == (strong["version"], weak["version"])
    assert ctx.registry.alias_version("churn", PRODUCTION) == weak["version"]

    history = models_command(ctx, model_name="churn", history=True)["models"][0]["history"]
    assert [h["action"] for h in history] == ["promote", "promote", "rollback"]
    decisions = [e.decision for e in ctx.registry.promotion_events("churn")]
    assert decisions == ["approved", "approved", "refused"]


def test_an_identical_retrain_is_refused_with_no_significant_improvement(ctx, churn_csv) -> None:
    first = _train(ctx, churn_csv)
    promote_command(
        ctx, model_name="churn", version=first["version"], force=False, reason=None, actor=ACTOR
    )
    again = _train(ctx, churn_csv)
    with pytest.raises(PromotionRefused, match="no significant improvement") as refused:
        promote_command(
            ctx, model_name="churn", version=again["version"], force=False, reason=None, actor=ACTOR
        )
    interval = next(g for g in refused.value.decision.gates if g.name == "bootstrap")
    assert interval.numbers["low"] == interval.numbers["high"] == 0.0
    assert ctx.registry.alias_version("churn", PRODUCTION) == first["version"]
    assert [e.decision for e in ctx.registry.promotion_events("churn")] == ["approved", "refused"]


def test_a_model_on_all_rows_replaces_one_on_a_5_percent_subsample(ctx, churn_csv, tmp_path):
    small = tmp_path / "five_percent.csv"
    pd.read_csv(churn_csv).sample(frac=0.05, random_state=0).to_csv(small, index=False)
    # The default policy, recall guard included: the 5% model's threshold, tuned on ~60
    # validation rows, may sit at a high-recall point, so the guard compares recall at its
    # alert rate rather than at each model's own threshold.
    weak = _train(ctx, small)
    promote_command(
        ctx, model_name="churn", version=weak["version"], force=True, reason="seed", actor=ACTOR
    )
    full = _train(ctx, churn_csv)
    result = promote_command(
        ctx, model_name="churn", version=full["version"], force=False, reason=None, actor=ACTOR
    )
    assert result["decision"]["approved"]
    gates = {g["name"]: g for g in result["decision"]["gates"]}
    assert gates["bootstrap"]["numbers"]["low"] > 0
    guard = gates["guard:recall"]
    assert guard["passed"] and "at the champion's alert rate" in guard["detail"]


def test_running_the_demo_twice_does_not_promote_a_copy_of_v1(ctx) -> None:
    from pgmlops.services.demo import DEMO_MODEL, run_demo

    said: list[str] = []
    run_demo(ctx, rows=3_000, actor=ACTOR, say=said.append)
    assert ctx.registry.alias_version(DEMO_MODEL, PRODUCTION) == 1
    said.clear()
    run_demo(ctx, rows=3_000, actor=ACTOR, say=said.append)
    assert ctx.registry.alias_version(DEMO_MODEL, PRODUCTION) == 1
    text = "\n".join(said)
    assert "3/4 v3 was not promoted (production stays v1)" in text
    assert "no significant improvement" in text
    assert "refused as it should be" in text  # the shuffled-label model, v4


def test_forced_promotion_needs_a_reason_and_is_audited(ctx, churn_csv, shuffled_csv) -> None:
    good = _train(ctx, churn_csv)
    promote_command(
        ctx, model_name="churn", version=good["version"], force=False, reason=None, actor=ACTOR
    )
    worse = _train(ctx, shuffled_csv)
    with pytest.raises(Exception, match="a forced promotion needs a reason"):
        promote_command(
            ctx, model_name="churn", version=worse["version"], force=True, reason=None, actor=ACTOR
        )
    forced = promote_command(
        ctx,
        model_name="churn",
        version=worse["version"],
        force=True,
        reason="incident 42",
        actor=ACTOR,
    )
    assert forced["action"] == "force"
    last = ctx.registry.alias_history("churn", PRODUCTION)[-1]
    assert (last.action, last.reason, last.actor) == ("force", "incident 42", ACTOR)


def test_production_at_a_moment_is_answered_from_history(ctx, churn_csv) -> None:
    v1 = _train(ctx, churn_csv)
    promote_command(
        ctx, model_name="churn", version=v1["version"], force=False, reason=None, actor=ACTOR
    )
    moment = ctx.registry.alias_history("churn", PRODUCTION)[-1].created_at.isoformat()
    v2 = _train(ctx, churn_csv, overrides={"seed": 1})
    promote_command(
        ctx, model_name="churn", version=v2["version"], force=True, reason="newer", actor=ACTOR
    )
    answer = models_command(ctx, model_name="churn", at=moment)["models"][0]["production_at"]
    assert answer["version"] == v1["version"]


def test_tampered_artifact_is_refused(ctx, churn_csv) -> None:
    trained = _train(ctx, churn_csv)
    version = ctx.registry.get_version("churn", trained["version"])
    path = Path(version.artifact.uri)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="integrity"):
        version_engine(ctx, version)
    with pytest.raises(ArtifactError):
        promote_command(
            ctx,
            model_name="churn",
            version=trained["version"],
            force=False,
            reason=None,
            actor=ACTOR,
        )
    assert ctx.registry.alias_version("churn", PRODUCTION) is None


def test_racing_promotions_leave_one_consistent_winner(ctx, churn_csv) -> None:
    a = _train(ctx, churn_csv)
    b = _train(ctx, churn_csv, overrides={"seed": 5})
    outcomes: list[object] = []

    def go(version: int) -> None:
        try:
            outcomes.append(
                promote_command(
                    ctx, model_name="churn", version=version, force=True, reason="race", actor=ACTOR
                )
            )
        except ConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=go, args=(v["version"],)) for v in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = ctx.registry.alias_history("churn", PRODUCTION)
    current = ctx.registry.alias_version("churn", PRODUCTION)
    assert current in (a["version"], b["version"])
    assert history[-1].new_version == current
    # Every move names the version it replaced: the chain has no gaps.
    assert all(h.previous_version == p.new_version for p, h in itertools.pairwise(history))


def test_rollback_without_history_says_so(ctx, churn_csv) -> None:
    trained = _train(ctx, churn_csv)
    with pytest.raises(NotFoundError, match="no production"):
        rollback(ctx, "churn", actor=ACTOR)
    promote_command(
        ctx, model_name="churn", version=trained["version"], force=False, reason=None, actor=ACTOR
    )
    with pytest.raises(NotFoundError, match="nothing to roll back"):
        rollback(ctx, "churn", actor=ACTOR)


def _assert_one_record_answers_match_the_pipeline(ctx, name: str, version: int) -> None:
    """The server's single-record path (ONNX, plain Python) agrees with the pipeline."""
    stored = ctx.registry.get_version(name, version)
    loaded = load_version(ctx, stored)
    assert loaded.engine.name == "onnx"
    holdout = read_holdout(ctx, stored)[stored.card.feature_schema.names].head(40)
    rows = [loaded.single.validate_python(r).__dict__ for r in holdout.to_dict("records")]
    reference = version_engine(ctx, stored).predict_frame(holdout)
    serving = ctx.settings.serving
    batch, _ = predict_records(loaded, rows, serving, request_id=None, started=0.0)
    for k, row in enumerate(rows):
        (one,), (record,) = predict_records(loaded, [row], serving, request_id=None, started=0.0)
        if stored.card.task == "regression":
            # float32 sums may round differently for one row and for a batch
            assert one["prediction"] == pytest.approx(batch[k]["prediction"], rel=1e-5)
            assert one["prediction"] == pytest.approx(reference.predicted[k], rel=1e-4)
            continue
        assert one["prediction"] == batch[k]["prediction"]
        assert str(one["prediction"]) == str(reference.predicted[k])
        assert one["risk_level"] == batch[k]["risk_level"]
        if stored.card.task == "binary":
            assert one["probability"] == pytest.approx(reference.proba[k], abs=1e-4)
            assert record.probability == one["probability"]
        else:
            expected = dict(zip(stored.card.classes, reference.proba[k], strict=True))
            assert one["probability"] == pytest.approx(expected, abs=1e-4)
            assert one["confidence"] == pytest.approx(max(expected.values()), abs=1e-4)


def test_single_record_path_matches_the_pipeline_for_binary(ctx, churn_csv: Path) -> None:
    trained = _train(ctx, churn_csv)
    _assert_one_record_answers_match_the_pipeline(ctx, "churn", trained["version"])


def test_a_version_number_beyond_the_database_integer_is_bad_input(ctx, churn_csv) -> None:
    _train(ctx, churn_csv)
    with pytest.raises((ValidationError, NotFoundError)):
        ctx.registry.get_version("churn", 2**128)


def test_prediction_ids_are_distinct_time_ordered_version_7_uuids() -> None:
    import uuid

    before = time.time_ns() // 1_000_000
    ids = prediction_ids(5000) + [prediction_ids(1)[0] for _ in range(500)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 5500
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(before <= u.int >> 80 <= after for u in parsed)  # the first 48 bits: unix ms
    assert [str(u) for u in parsed] == ids


def test_multiclass_end_to_end(ctx, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    frame["species"] = frame["species"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    path = tmp_path / "iris.parquet"
    frame.to_parquet(path)
    trained = train_command(ctx, data=str(path), target="species", model_name="iris", actor=ACTOR)
    assert trained["task"] == "multiclass"
    assert trained["all_metrics"]["f1_macro"] > 0.8
    result = promote_command(
        ctx, model_name="iris", version=trained["version"], force=False, reason=None, actor=ACTOR
    )
    assert result["decision"]["primary_metric"] == "f1_macro"
    _assert_one_record_answers_match_the_pipeline(ctx, "iris", trained["version"])


def test_regression_end_to_end(ctx, tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    trained = train_command(
        ctx,
        data=str(path),
        target="target",
        model_name="diabetes",
        actor=ACTOR,
        overrides={"estimator": "sklearn.linear_model.Ridge"},
    )
    assert trained["task"] == "regression"
    assert trained["all_metrics"]["r2"] > 0.3
    assert trained["onnx"] is True
    result = promote_command(
        ctx,
        model_name="diabetes",
        version=trained["version"],
        force=False,
        reason=None,
        actor=ACTOR,
    )
    assert result["decision"]["primary_metric"] == "rmse"
    _assert_one_record_answers_match_the_pipeline(ctx, "diabetes", trained["version"])


def test_version_is_self_describing(ctx, churn_csv) -> None:
    trained = _train(ctx, churn_csv)
    card = ctx.registry.get_version("churn", trained["version"]).card
    assert "CustomerId" in card.feature_schema.dropped
    assert card.feature_schema.feature("Geography").categories == ["France", "Germany", "Spain"]
    assert card.data.rows == 6000 and len(card.data.sha256) == 64
    assert 0.0 < card.threshold < 1.0
    assert card.split.holdout_rows > 1000
    assert set(card.metrics) >= {
        "roc_auc",
        "pr_auc",
        "recall",
        "precision",
        "f1",
        "log_loss",
        "brier",
    }
    assert (
        card.confusion_matrix is not None
        and sum(map(sum, card.confusion_matrix)) == card.split.holdout_rows
    )
