"""A real two-worker server under load while `pgmlops worker` rolls a bad promotion back.

v2 is trained on the same customers with the outcome inverted and forced into production;
the client keeps predicting and sends the true outcomes as feedback. The worker (a real
process) sees v2 crossing its limits, restores v1, and the server follows with 0 failed
requests; afterwards every answer comes from v1.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.promotion import promote
from tests.e2e.serverproc import start_server, stop_server

pytestmark = pytest.mark.e2e


def _until(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_the_worker_rolls_back_a_bad_promotion_under_load_with_no_failed_request(
    ctx, small_churn_csv: Path, tmp_path: Path
) -> None:
    kw = {"target": "Exited", "model_name": "churn", "actor": "t"}
    over = {"params": {"max_iter": 40}}
    v1 = train_command(ctx, data=str(small_churn_csv), **kw, overrides=over)["version"]
    promote_command(ctx, model_name="churn", version=v1, force=False, reason=None, actor="t")
    inverted = pd.read_csv(small_churn_csv)
    inverted["Exited"] = 1 - inverted["Exited"]
    bad_csv = tmp_path / "inverted.csv"
    inverted.to_csv(bad_csv, index=False)
    v2 = train_command(ctx, data=str(bad_csv), **kw, overrides=over)["version"]
    promote(ctx, "churn", v2, actor="t", force=True, reason="a broken retrain, on purpose")

    frame = make_churn(400, seed=21)
    truth = frame.pop("Exited").astype(str).tolist()
    records = frame.to_dict("records")
    server = start_server(ctx.settings, tmp_path, workers=2)
    failures: list[str] = []
    answers: list[tuple[int, str, int]] = []  # (version, prediction id, record index)
    stop = threading.Event()

    def load() -> None:
        k = 0
        with server.client() as http:
            while not stop.is_set():
                i = k % len(records)
                resp = http.post("/predict", json=records[i])
                k += 1
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                    continue
                body = resp.json()
                answers.append((body["version"], body["prediction_id"], i))

    worker_env = {
        **server.env,
        # Only the watch: no scheduled retrain checks in this test.
        "PGMLOPS_RETRAINING__MODELS": "[]",
    }
    thread = threading.Thread(target=load, daemon=True)
    try:
        thread.start()
        assert _until(lambda: sum(1 for a in answers if a[0] == v2) >= 250), failures[-3:]
        time.sleep(0.5)  # the log's last rows reach the table (flushed every 0.1 s)
        labelled = [
            {"prediction_id": pid, "label": truth[i]} for v, pid, i in answers[:] if v == v2
        ]
        with server.client() as http:
            sent = http.post("/feedback", json=labelled[:250])
            assert sent.status_code == 200, sent.text
        run = subprocess.run(
            [sys.executable, "-m", "pgmlops.cli", "worker", "--once"],
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "automatic rollback" in run.stdout + run.stderr
        assert ctx.registry.alias_version("churn", PRODUCTION) == v1
        # Both workers follow: the newest answers all come from v1.
        mark = len(answers)
        assert _until(lambda: len(answers) > mark + 100 and {a[0] for a in answers[-50:]} == {v1})
        time.sleep(1.0)
        stop.set()
        thread.join(timeout=10)
        assert failures == []
        last = ctx.registry.alias_history("churn", PRODUCTION)[-1]
        assert (last.action, last.actor, last.new_version) == ("rollback", "pgmlops-worker", v1)
        assert f"v{v2} -> v{v1}" in (last.reason or "")
        with server.client() as http:
            metrics = http.get("/metrics").text
            shown = http.get("/models", headers=server.admin_headers()).json()
        assert 'pgmlops_auto_rollbacks_total{model="churn"' in metrics
        assert shown["models"][0]["history"][-1]["actor"] == "pgmlops-worker"
    finally:
        stop.set()
        stop_server(server)
