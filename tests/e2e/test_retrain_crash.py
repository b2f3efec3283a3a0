"""Real `pgmlops retrain` processes: killed mid-training, and racing each other.

The production version is trained on a small file; the file then grows to 100,000 rows, so
a retrain (which re-reads the recorded source) spends several seconds fitting — long enough
to kill it in the middle, or to start a second one while the first runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.store.jobs import JobStore
from pgmlops.store.locks import named_lock
from pgmlops.store.retraining import RetrainingRunStore

pytestmark = pytest.mark.e2e

SLOW_SPEC = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 60, "n_jobs": 1},
}


@pytest.fixture(scope="module")
def big_frame():
    return make_churn(100_000, seed=61)


@pytest.fixture
def production(ctx: Context, tmp_path: Path, big_frame) -> tuple[int, Path]:
    """v1 in production, trained on 3,000 rows of a file that has since grown to 100,000."""
    data = tmp_path / "customers.csv"
    make_churn(3_000, seed=60).to_csv(data, index=False)
    trained = train_command(
        ctx,
        data=str(data),
        target="Exited",
        model_name="churn",
        actor="t",
        overrides=SLOW_SPEC,
        onnx=False,
    )
    promote_command(
        ctx, model_name="churn", version=trained["version"], force=False, reason=None, actor="t"
    )
    big_frame.to_csv(data, index=False)
    return int(trained["version"]), data


def _env(ctx: Context) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    env.update(
        PGMLOPS_DATABASE_URL=ctx.settings.database_url,
        PGMLOPS_ARTIFACT_ROOT=ctx.settings.artifact_root,
        PGMLOPS_MODEL_NAME="churn",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    return env


def _pgmlops(ctx: Context, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pgmlops.cli", *args],
        env=_env(ctx),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """Read stderr until a line contains `needle`; the lines read so far."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return seen
    pytest.fail(f"never saw {needle!r}; stderr so far:\n{''.join(seen)}")


def test_kill_9_mid_training_leaves_production_and_the_next_start_marks_the_run_failed(
    ctx: Context, production: tuple[int, Path]
) -> None:
    version, _ = production
    proc = _pgmlops(ctx, "retrain", "--force")
    _wait_for_line(proc, "fitting RandomForestClassifier on")
    time.sleep(1.0)
    assert proc.poll() is None, "the retrain finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    runs = RetrainingRunStore(ctx.db)
    orphan = runs.recent("churn")[0]
    assert (orphan.status, orphan.pid) == ("running", proc.pid)
    assert orphan.data["parts"]["source"]["used"] == 100_000
    assert ctx.registry.alias_version("churn", PRODUCTION) == version
    assert ctx.registry.latest_version("churn").version == version, "no candidate registered"

    status = subprocess.run(
        [sys.executable, "-m", "pgmlops.cli", "retrain", "--status", "--json"],
        env=_env(ctx),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["runs"][0]
    assert shown["id"] == orphan.id and shown["status"] == "failed"
    assert (
        f"process {proc.pid}" in shown["error"] and "production was not changed" in (shown["error"])
    )
    assert runs.get(orphan.id).finished_at is not None
    with named_lock(ctx.db, "retrain:churn"):
        pass  # the dead process's lock is free again
    assert ctx.registry.alias_version("churn", PRODUCTION) == version


def test_two_retrain_processes_at_once_make_one_run_and_one_clear_refusal(
    ctx: Context, production: tuple[int, Path]
) -> None:
    version, _ = production
    first = _pgmlops(ctx, "retrain", "--force")
    second = _pgmlops(ctx, "retrain", "--force")
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        done = [p for p in (first, second) if p.poll() is not None]
        assert len(done) == 1, "exactly one of the two must give way while the other trains"
        loser = done[0]
        winner = second if loser is first else first
        _, err = loser.communicate()
        assert loser.returncode == 8, err
        assert "already running" in err and "changed nothing" in err
        _wait_for_line(winner, "retraining run")
        runs = RetrainingRunStore(ctx.db).recent("churn")
        assert [(r.status, r.pid) for r in runs] == [("running", winner.pid)]
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
    assert ctx.registry.alias_version("churn", PRODUCTION) == version


def test_sigterm_lets_the_worker_finish_its_job_then_exit(ctx: Context, tmp_path: Path) -> None:
    data = tmp_path / "small.csv"
    make_churn(3_000, seed=62).to_csv(data, index=False)
    kw = {"target": "Exited", "model_name": "churn", "actor": "t", "onnx": False}
    train_command(ctx, data=str(data), overrides=SLOW_SPEC, **kw)
    job = JobStore(ctx.db).enqueue("retrain", "churn", {"mode": "forced"})[0]
    env = {**_env(ctx), "PGMLOPS_RETRAINING__POLL_SECONDS": "0.2"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "pgmlops.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        seen = []
        for line in worker.stdout:
            seen.append(line)
            if f"job {job.id}: retrain churn" in line:
                break
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=180)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    lines = "".join(seen) + out
    assert worker.returncode == 0, lines
    assert "SIGTERM: finishing the job in hand" in lines and "worker stopped" in lines
    finished = JobStore(ctx.db).get(job.id)
    assert finished.status == "succeeded", finished.error
    assert finished.result["candidate_version"] == 2
