"""Retraining runs, triggers, the job queue, the worker and retention, on SQLite and PostgreSQL.

Traffic is scored by the production model as the server scores it and written to the real
prediction log; labels go through the feedback store. A fast linear spec keeps each training
under a second.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION, PredictionRecord
from pgmlops.errors import ConflictError, DataError
from pgmlops.retraining_config import (
    LiveSourceConfig,
    RetentionConfig,
    RetrainingConfig,
    TriggerSwitches,
)
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.retention import collect_garbage
from pgmlops.services.retraining.runs import enqueue_retrain, retrain, retrain_status
from pgmlops.services.retraining.triggers import evaluate_triggers
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.services.worker import RETENTION_LOCK, Worker, alive_lock
from pgmlops.store.db import Database
from pgmlops.store.jobs import JobStore
from pgmlops.store.locks import named_lock
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.retraining import RetrainingRunStore
from pgmlops.store.tables import LeaseRow

ACTOR = "tester"
FAST = {"estimator": "sklearn.linear_model.LogisticRegression"}
QUIET = TriggerSwitches(
    drift=False, confidence=False, estimated_performance=False, labelled_performance=False
)


@pytest.fixture
def data_file(churn_csv: Path, tmp_path: Path) -> Path:
    """A private copy of the training data: some tests delete it."""
    path = tmp_path / "train.csv"
    shutil.copy(churn_csv, path)
    return path


def _train(ctx: Context, data: Path, **overrides: Any) -> int:
    result = train_command(
        ctx,
        data=str(data),
        target="Exited",
        model_name="churn",
        actor=ACTOR,
        overrides={**FAST, **overrides},
        onnx=False,
    )
    return int(result["version"])


@pytest.fixture
def production(ctx: Context, data_file: Path) -> int:
    version = _train(ctx, data_file)
    promote_command(ctx, model_name="churn", version=version, force=False, reason=None, actor=ACTOR)
    return version


def configure(ctx: Context, **retraining: Any) -> None:
    retraining.setdefault("triggers", QUIET)
    ctx.settings.retraining = RetrainingConfig(**retraining)


def log_traffic(ctx: Context, frame: pd.DataFrame, version: int) -> list[str]:
    """Score rows with the version as the server does and log them; their prediction ids."""
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    names = model.card.feature_schema.names
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    _, records = predict_records(
        model, rows, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    PredictionStore(ctx.db).write_batch(records)
    return [r.id for r in records]


def label(ctx: Context, ids: list[str], labels: list[Any]) -> None:
    PredictionStore(ctx.db).add_feedback([(i, str(v)) for i, v in zip(ids, labels, strict=True)])


def runs(ctx: Context) -> list:
    return RetrainingRunStore(ctx.db).recent("churn", 100)


# -- runs ----------------------------------------------------------------------------------


def test_forced_retrain_registers_a_candidate_and_records_the_run(
    ctx: Context, production: int
) -> None:
    outcome = retrain(ctx, "churn", mode="forced", actor=ACTOR)

    assert outcome.status == "succeeded"
    run = outcome.run
    assert run is not None and run.candidate_version == production + 1
    assert run.triggers["reasons"] == [f"forced retrain requested by {ACTOR}"]
    assert run.data["training_rows"] == 6_000
    assert run.data["parts"]["source"] == {"rows": 6_000, "used": 6_000, "bad": 0, "reasons": {}}
    assert run.decision["decision"] in ("approved", "refused")
    assert run.decision["gates"]["primary_metric"] == "roc_auc"
    assert run.finished_at is not None and run.seconds is not None and run.error is None
    candidate = ctx.registry.get_version("churn", run.candidate_version)
    base = ctx.registry.get_version("churn", production)
    assert candidate.card.training == {**base.card.training, "task": "binary", "drop": []}
    # The retrain's frame holds only the features; the identifier is still the logged key.
    assert candidate.card.feature_schema.dropped_kinds == {"CustomerId": "identifier"}
    assert candidate.source["retrain"]["run_id"] == run.id
    status = retrain_status(ctx, "churn")
    assert [r["id"] for r in status["runs"]] == [run.id]
    assert status["runs"][0]["decision"]["candidate_version"] == run.candidate_version


def test_manual_retrain_with_nothing_new_is_skipped_and_says_so(
    ctx: Context, production: int
) -> None:
    outcome = retrain(ctx, "churn", mode="manual", actor=ACTOR)

    assert outcome.status == "skipped"
    assert "nothing new to train on" in outcome.message and "force it" in outcome.message
    assert ctx.registry.latest_version("churn").version == production


def test_if_needed_with_no_trigger_fired_does_nothing_and_says_why(
    ctx: Context, production: int
) -> None:
    configure(ctx, triggers=QUIET.model_copy(update={"new_labels": 100}))

    outcome = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)

    assert outcome.status == "skipped" and outcome.run is None
    assert "0 of 100 (0.0%)" in outcome.message
    assert runs(ctx) == []
    assert ctx.registry.latest_version("churn").version == production


def test_new_labels_trigger_shows_progress_then_fires(ctx: Context, production: int) -> None:
    configure(ctx, triggers=QUIET.model_copy(update={"new_labels": 50}))
    frame = make_churn(50, seed=40)
    ids = log_traffic(ctx, frame, production)
    label(ctx, ids[:30], frame["Exited"][:30].tolist())

    waiting = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)
    assert waiting.status == "skipped"
    assert "new labelled rows since the last training: 30 of 50 (60.0%)" in waiting.message

    label(ctx, ids[30:], frame["Exited"][30:].tolist())
    fired = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)

    assert fired.status == "succeeded"
    assert fired.triggers is not None
    assert fired.triggers.reasons[0].startswith(
        "new labelled rows since the last training: 50 of 50 (100.0%)"
    )
    assert fired.run.data["parts"]["feedback"]["used"] == 50
    # The counter restarts from the new training.
    after = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)
    assert "0 of 50 (0.0%)" in after.message


def test_feedback_joins_the_training_data_and_bad_rows_are_counted_not_used(
    ctx: Context, production: int
) -> None:
    frame = make_churn(40, seed=41)
    ids = log_traffic(ctx, frame, production)
    labels: list[Any] = frame["Exited"].tolist()
    labels[:8] = ["maybe"] * 8  # wrong type for a 0/1 target
    labels[8:10] = ["1.0", "0.0"]  # integral floats name the classes "1" and "0"
    label(ctx, ids, labels)
    label(ctx, ids[:2], ["1", "0"])  # a corrected label supersedes the bad one
    bad_feature = PredictionRecord(
        id=str(uuid.uuid4()),
        model_name="churn",
        version=production,
        created_at=datetime.now(UTC),
        features={**json.loads(frame.iloc[[0]].to_json(orient="records"))[0], "Age": "forty"},
        prediction="0",
        probability=0.1,
        confidence=0.8,
        output=None,
        latency_ms=1.0,
        request_id=None,
    )
    PredictionStore(ctx.db).write_batch([bad_feature])
    label(ctx, [bad_feature.id], ["1"])

    run = retrain(ctx, "churn", mode="manual", actor=ACTOR).run

    assert run is not None and run.status == "succeeded"
    feedback = run.data["parts"]["feedback"]
    assert feedback == {
        "rows": 41,
        "used": 34,
        "bad": 7,
        "reasons": {
            "label is not one of the classes 0, 1": 6,
            "feature 'Age' is not a finite number": 1,
        },
    }
    assert run.data["training_rows"] == 6_000 + 34
    assert ctx.registry.get_version("churn", run.candidate_version).card.data.rows == 6_034


def test_a_vanished_source_is_an_error_unless_feedback_only_is_allowed(
    ctx: Context, production: int, data_file: Path
) -> None:
    frame = make_churn(1_500, seed=42)
    label(ctx, log_traffic(ctx, frame, production), frame["Exited"].tolist())
    data_file.unlink()

    with pytest.raises(DataError, match=r"cannot be read.*allow feedback-only retraining"):
        retrain(ctx, "churn", mode="forced", actor=ACTOR)
    failed = runs(ctx)[0]
    assert failed.status == "failed" and "does not exist" in failed.error
    assert ctx.registry.alias_version("churn", PRODUCTION) == production
    assert ctx.registry.latest_version("churn").version == production

    outcome = retrain(ctx, "churn", mode="forced", allow_feedback_only=True, actor=ACTOR)

    assert outcome.status == "succeeded"
    assert "source" not in outcome.run.data["parts"]
    assert outcome.run.data["training_rows"] == 1_500
    assert "does not exist" in outcome.run.data["source_problem"]


def test_two_simultaneous_retrains_make_exactly_one_run(ctx: Context, production: int) -> None:
    start = threading.Barrier(2)
    results: list[Any] = []

    def go() -> None:
        start.wait()
        try:
            results.append(retrain(ctx, "churn", mode="forced", actor=ACTOR))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    refused = [r for r in results if isinstance(r, ConflictError)]
    assert len(refused) == 1, results
    assert "already running" in str(refused[0]) and "changed nothing" in str(refused[0])
    assert [r.status for r in runs(ctx)] == ["succeeded"]
    assert ctx.registry.latest_version("churn").version == production + 1


def test_a_run_left_running_by_a_dead_process_is_marked_failed(
    ctx: Context, production: int
) -> None:
    store = RetrainingRunStore(ctx.db)
    orphan = store.start("churn", {"reasons": ["manual"], "host": "elsewhere"}, pid=2**22 + 7)

    status = retrain_status(ctx, "churn")

    assert status["runs"][0]["id"] == orphan.id
    assert status["runs"][0]["status"] == "failed"
    assert "stopped before the run finished" in status["runs"][0]["error"]
    assert ctx.registry.alias_version("churn", PRODUCTION) == production


def test_a_named_lock_is_exclusive_and_free_again_after_the_block(ctx: Context) -> None:
    with named_lock(ctx.db, "retrain:churn") as held:
        with pytest.raises(ConflictError, match="held by"), named_lock(ctx.db, "retrain:churn"):
            pass
        held.check()
    with named_lock(ctx.db, "retrain:churn"):
        pass


def test_a_sqlite_lease_is_taken_over_only_once_it_expires(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'leases.db'}")
    now = datetime.now(UTC)
    with db.session() as s:
        s.add(LeaseRow(name="live", holder="otherhost:41:a", expires_at=now + timedelta(hours=1)))
        s.add(LeaseRow(name="dead", holder="otherhost:42:b", expires_at=now - timedelta(seconds=1)))
    with pytest.raises(ConflictError, match="held by otherhost:41"), named_lock(db, "live"):
        pass
    with named_lock(db, "dead") as held:
        assert held.backend == "lease"
    db.dispose()


# -- live SQL source -----------------------------------------------------------------------


def test_live_table_rows_are_read_past_a_watermark(
    ctx: Context, production: int, tmp_path: Path
) -> None:
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = create_engine(live_url)
    first = make_churn(30, seed=43).drop(columns=["CustomerId"])
    first.insert(0, "row_id", range(1, 31))
    first["Exited"] = first["Exited"].astype(object)
    first.loc[0, "Exited"] = "unknown"  # a bad label in the live table
    first.to_sql("live_rows", engine, index=False)
    configure(
        ctx,
        triggers=QUIET.model_copy(update={"new_labels": 25}),
        live_source=LiveSourceConfig(url=live_url, table="live_rows", id_column="row_id"),
    )

    outcome = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)

    assert "30 of 25 (120.0%)" in outcome.triggers.reasons[0]
    parts = outcome.run.data["parts"]
    assert parts["live_new"]["used"] == 29 and parts["live_new"]["bad"] == 1
    assert parts["live_previous"]["rows"] == 0

    more = make_churn(10, seed=44).drop(columns=["CustomerId"])
    more.insert(0, "row_id", range(31, 41))
    more.to_sql("live_rows", engine, index=False, if_exists="append")
    engine.dispose()
    again = retrain(ctx, "churn", mode="forced", actor=ACTOR)

    parts = again.run.data["parts"]
    assert parts["live_previous"]["used"] == 29 and parts["live_new"]["used"] == 10
    assert again.run.data["training_rows"] == 6_000 + 39


# -- drift-driven trigger ------------------------------------------------------------------


def test_drift_fires_the_trigger_and_the_gates_decide(ctx: Context, production: int) -> None:
    configure(ctx, triggers=QUIET.model_copy(update={"drift": True, "drift_policy": "any"}))
    monitoring = ctx.settings.monitoring
    drift = monitoring.drift.model_copy(update={"drift_share": 0.3})
    ctx.settings.monitoring = monitoring.model_copy(update={"drift": drift})
    drifted = make_churn(1_000, seed=45, numeric_shift=1.0)
    label(ctx, log_traffic(ctx, drifted, production), drifted["Exited"].tolist())

    outcome = retrain(ctx, "churn", mode="if-needed", actor=ACTOR)

    assert outcome.triggers is not None and outcome.triggers.monitoring_run_id is not None
    assert outcome.triggers.reasons[0].startswith("data drift")
    assert outcome.status == "succeeded"
    assert outcome.run.data["parts"]["feedback"]["used"] == 1_000
    assert outcome.run.decision["decision"] in ("approved", "refused")
    promoted = outcome.run.decision["promoted"]
    expected = outcome.run.candidate_version if promoted else production
    assert ctx.registry.alias_version("churn", PRODUCTION) == expected


def test_harmful_policy_skips_a_drift_the_model_shrugs_off_and_any_retrains(
    ctx: Context, production: int
) -> None:
    # Salary plays no part in churn: moving it by 0.6 sd is drift (the domain classifier
    # sees it) but leaves the model's confidence and estimated performance where they were.
    window = make_churn(2_000, seed=46)
    window["EstimatedSalary"] = window["EstimatedSalary"] + 0.6 * window["EstimatedSalary"].std()
    log_traffic(ctx, window, production)
    configure(ctx, triggers=QUIET.model_copy(update={"drift": True, "drift_policy": "harmful"}))

    harmful = evaluate_triggers(ctx, "churn")

    (check,) = [c for c in harmful.checks if c.name == "drift"]
    assert not check.fired and "not harmful" in check.detail
    assert "domain classifier" in check.detail
    configure(ctx, triggers=QUIET.model_copy(update={"drift": True, "drift_policy": "any"}))
    (check,) = [c for c in evaluate_triggers(ctx, "churn").checks if c.name == "drift"]
    assert check.fired and check.detail.startswith("data drift")


# -- jobs and the worker -------------------------------------------------------------------


def test_each_job_is_claimed_exactly_once_by_racing_workers(ctx: Context) -> None:
    store = JobStore(ctx.db)
    queued = {store.enqueue("monitor", "churn", {"n": i})[0].id for i in range(30)}
    claimed: list[int] = []
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        while (job := store.claim(["monitor"], worker)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(claimed) == sorted(queued)
    assert {j.status for j in store.recent(limit=100)} == {"running"}


def test_an_identical_waiting_job_is_not_queued_twice(ctx: Context, production: int) -> None:
    first, created = enqueue_retrain(ctx, "churn", force=True, actor=ACTOR)
    again, created_again = enqueue_retrain(ctx, "churn", force=True, actor=ACTOR)
    other, _ = enqueue_retrain(ctx, "churn", if_needed=True, actor=ACTOR)

    assert created and not created_again and again == first
    assert other != first


def test_the_worker_runs_queued_jobs_and_recovers_abandoned_ones(
    ctx: Context, production: int
) -> None:
    configure(ctx)
    store = JobStore(ctx.db)
    abandoned, _ = store.enqueue("retrain", "churn", {"mode": "forced"})
    store.claim(["retrain"], worker=f"{socket.gethostname()}:{2**22 + 9}")
    job_id, _ = enqueue_retrain(ctx, "churn", force=True, actor=ACTOR)
    monitor, _ = store.enqueue("monitor", "churn", {})
    lines: list[str] = []

    stats = Worker(ctx, say=lines.append).run(once=True)

    assert stats.recovered_jobs == [abandoned.id]
    assert store.get(abandoned.id).status == "failed"
    done = store.get(job_id)
    assert done.status == "succeeded", done.error
    assert done.result["candidate_version"] == production + 1
    assert store.get(monitor.id).status == "failed"  # no traffic logged: too few rows
    assert "logged predictions" in store.get(monitor.id).error
    assert stats.jobs_succeeded == 1 and stats.jobs_failed == 1
    # Its scheduled pass ran the (quiet) triggers for the production model too.
    assert stats.trigger_checks == 1


def test_a_job_left_running_on_another_host_is_failed_once_its_worker_is_gone(
    ctx: Context,
) -> None:
    """Another host's pid cannot be checked: its worker's liveness lock tells instead."""
    store = JobStore(ctx.db)
    dead, _ = store.enqueue("monitor", "churn", {"n": 1})
    alive, _ = store.enqueue("monitor", "churn", {"n": 2})
    store.claim(["monitor"], worker="host-a:7")
    store.claim(["monitor"], worker="host-b:7")
    worker = Worker(ctx, say=lambda _msg: None)

    with named_lock(ctx.db, alive_lock("host-b:7")):  # host-b's worker still runs
        worker.run(once=True)

    assert worker.stats.recovered_jobs == [dead.id]
    assert store.get(dead.id).status == "failed"
    assert "host-a:7 stopped" in (store.get(dead.id).error or "")
    assert store.get(alive.id).status == "running"
    # A running worker looks again every minute, without a restart.
    worker._next_recover = datetime.now(UTC)
    worker.maintain(datetime.now(UTC))
    assert store.get(alive.id).status == "failed"


def test_the_schedule_trigger_fires_when_the_interval_has_passed(
    ctx: Context, production: int
) -> None:
    configure(ctx, schedule=3600)

    now = datetime.now(UTC)
    assert not evaluate_triggers(ctx, "churn", now=now).fired
    later = evaluate_triggers(ctx, "churn", now=now + timedelta(hours=2))
    assert [c.name for c in later.fired] == ["schedule"]


# -- HTTP ---------------------------------------------------------------------------------


def test_post_retrain_only_enqueues_and_status_lists_the_job(ctx: Context, production: int) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from pgmlops.api import errors as api_errors
    from pgmlops.api.retrain_routes import router

    ctx.settings.api_key = SecretStr("admin-key")
    app = FastAPI()
    app.state.ctx = ctx
    api_errors.install(app)
    app.include_router(router)
    client = TestClient(app)
    key = {"X-API-Key": "admin-key"}

    assert client.post("/retrain").status_code == 401
    assert client.get("/retrain/status").status_code == 401
    queued = client.post("/retrain", json={"force": True}, headers=key)
    assert queued.status_code == 202
    body = queued.json()
    assert body["status"] == "queued" and body["created"] is True
    again = client.post("/retrain", json={"force": True}, headers=key).json()
    assert again["job_id"] == body["job_id"] and again["created"] is False
    assert client.post("/retrain", json={"model_name": "nope"}, headers=key).status_code == 404
    both = client.post("/retrain", json={"force": True, "if_needed": True}, headers=key)
    assert both.status_code == 400 and "contradict" in both.json()["error"]
    assert client.post("/retrain", json={"forse": True}, headers=key).status_code == 422

    status = client.get("/retrain/status", headers=key).json()
    assert [j["id"] for j in status["jobs"]] == [body["job_id"]]
    assert status["runs"] == [], "the API never trains"
    assert ctx.registry.latest_version("churn").version == production


# -- retention -----------------------------------------------------------------------------


def test_the_worker_keeps_backups_to_the_configured_count_on_its_own(
    ctx: Context, production: int, data_file: Path
) -> None:
    """Nobody runs `pgmlops gc`: the worker's default daily retention applies `keep`."""
    backup = _train(ctx, data_file, seed=1)
    # keep=0: no version without an alias stays (one training fewer than keep=1 would need).
    configure(ctx, retention=RetentionConfig(keep=0))
    assert ctx.settings.retraining.retention.schedule_seconds == 86_400  # the default
    worker = Worker(ctx, say=lambda _msg: None)
    with named_lock(ctx.db, RETENTION_LOCK):  # another worker is at it: this one stands by
        worker.tick()
    assert worker.stats.retention_runs == 0
    assert len(ctx.registry.list_models("churn")[0].versions) == 2

    Worker(ctx, say=lambda _msg: None).tick()

    versions = [v.version for v in ctx.registry.list_models("churn")[0].versions]
    assert versions == [production], f"backup v{backup} is beyond keep=0"


def test_gc_keeps_aliased_rollback_recent_and_newest_versions(
    ctx: Context, data_file: Path
) -> None:
    v1 = _train(ctx, data_file)
    promote_command(ctx, model_name="churn", version=v1, force=False, reason=None, actor=ACTOR)
    v2 = _train(ctx, data_file, seed=1)
    promote_command(ctx, model_name="churn", version=v2, force=True, reason="t", actor=ACTOR)
    v3 = _train(ctx, data_file, seed=2)
    v4 = _train(ctx, data_file, seed=3)
    v5 = _train(ctx, data_file, seed=4)
    v6 = _train(ctx, data_file, seed=3)  # same spec as v4: shares v4's blobs
    log_traffic(ctx, make_churn(5, seed=47), v2)
    log_traffic(ctx, make_churn(5, seed=48), v3)
    old = PredictionRecord(
        id=str(uuid.uuid4()),
        model_name="churn",
        version=v5,
        created_at=datetime.now(UTC) - timedelta(days=30),
        features={},
        prediction="0",
        probability=None,
        confidence=None,
        output=None,
        latency_ms=1.0,
        request_id=None,
    )
    PredictionStore(ctx.db).write_batch([old])
    # v2 and v3 served just now; v5 only served a month ago.
    files = {v: ctx.registry.get_version("churn", v).files for v in (v4, v5, v6)}

    dry = collect_garbage(ctx, "churn", keep=1, dry_run=True)
    assert dry["models"][0]["deleted"] == [v4, v5]
    assert all(Path(f.uri).exists() for fs in files.values() for f in fs.values())

    report = collect_garbage(ctx, "churn", keep=1)

    model = report["models"][0]
    assert model["deleted"] == [v4, v5]
    kept = {k["version"]: " ".join(k["reasons"]) for k in model["kept"]}
    assert "alias production" in kept[v2]
    assert "rollback target" in kept[v1]
    assert "served predictions" in kept[v3]
    assert "newest 1" in kept[v6]
    assert [v.version for v in ctx.registry.list_models("churn")[0].versions] == [v6, v3, v2, v1]
    assert all(Path(f.uri).exists() for f in files[v6].values()), "shared blobs stay"
    remaining = {
        f.sha256
        for v in (v1, v2, v3, v6)
        for f in ctx.registry.get_version("churn", v).files.values()
    }
    only_v5 = [f for f in files[v5].values() if f.sha256 not in remaining]
    assert only_v5 and not any(Path(f.uri).exists() for f in only_v5)
    # Each version's signed card is its own blob (v4's too, though v6 shares its other files).
    gone = {f.sha256 for v in (v4, v5) for f in files[v].values() if f.sha256 not in remaining}
    assert report["blobs_deleted"] == len(gone)
    assert ctx.registry.alias_version("churn", PRODUCTION) == v2


# -- CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["retrain", "--force", "--if-needed"], 2, "contradict"),
        (["retrain", "--status", "--force"], 2, "--status only reports"),
        (["retrain", "--model-name", "nope", "--force"], 7, "not registered"),
        (["gc", "--keep", "-1"], 2, ""),
    ],
)
def test_cli_rejects_bad_flags_with_an_exit_code(
    ctx: Context, production: int, monkeypatch: pytest.MonkeyPatch, args, code, message
) -> None:
    monkeypatch.setenv("PGMLOPS_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("PGMLOPS_ARTIFACT_ROOT", ctx.settings.artifact_root)
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_cli_retrain_status_and_json(
    ctx: Context, production: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMLOPS_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("PGMLOPS_ARTIFACT_ROOT", ctx.settings.artifact_root)
    monkeypatch.setenv("PGMLOPS_MODEL_NAME", "churn")
    monkeypatch.setenv("PGMLOPS_RETRAINING__TRIGGERS__NEW_LABELS", "10")
    for signal in ("DRIFT", "CONFIDENCE", "ESTIMATED_PERFORMANCE", "LABELLED_PERFORMANCE"):
        monkeypatch.setenv(f"PGMLOPS_RETRAINING__TRIGGERS__{signal}", "false")
    runner = CliRunner()

    skipped = runner.invoke(cli_app, ["retrain", "--if-needed"])
    assert skipped.exit_code == 0, skipped.output
    assert "[ ] new labelled rows since the last training: 0 of 10 (0.0%)" in skipped.output

    forced = runner.invoke(cli_app, ["retrain", "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["run"]["status"] == "succeeded"

    status = runner.invoke(cli_app, ["retrain", "--status"])
    assert status.exit_code == 0 and "succeeded" in status.output


def test_live_source_config_needs_one_table_or_query() -> None:
    with pytest.raises(ValueError, match="exactly one of 'query' or 'table'"):
        LiveSourceConfig(url="sqlite://", id_column="id")
    with pytest.raises(ValueError, match="neither seconds nor a 5-field cron"):
        RetrainingConfig(schedule="every day")
    assert RetrainingConfig(schedule="0 3 * * *").schedule == "0 3 * * *"
    assert RetrainingConfig(schedule="90").schedule == 90.0
