"""A real two-worker server follows the challenger: shadow pairs, canary shares, 0 failures."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from pgmlops.domain.demo_data import make_churn
from pgmlops.store.tables import PredictionRow
from tests.e2e.live_traffic_checks import (
    ContinuousClient,
    answered_by,
    wait_for_mode,
    within_binomial,
    worker_connections,
)
from tests.e2e.serverproc import ADMIN_KEY, start_server, stop_server

HEADERS = {"X-API-Key": ADMIN_KEY}


def _until(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_two_workers_follow_the_challenger_under_load_with_no_failed_request(
    ctx, trained, tmp_path: Path
) -> None:
    v1, v2 = trained["v1"], trained["v2"]
    records = make_churn(300, seed=2).drop(columns=["Exited"]).to_dict("records")
    server = start_server(ctx.settings, tmp_path, workers=2)
    # One keep-alive connection per worker to look at each, and one per worker for the client
    # that sends without pause: every worker must follow each move with 0 failed requests.
    each = worker_connections(server.url, 2)
    client = ContinuousClient(lambda: list(worker_connections(server.url, 2).values()), records)
    workers = list(each.values())
    try:
        with client, server.client() as http:
            moved = http.post("/deploy", json={"version": v2, "shadow": True}, headers=HEADERS)
            assert moved.status_code == 200, moved.text

            # Both workers score in shadow: shadow rows appear, paired with production's.
            def shadow_rows() -> int:
                with ctx.db.session() as s:
                    return s.scalar(
                        select(func.count()).where(
                            PredictionRow.role == "shadow", PredictionRow.paired_id.is_not(None)
                        )
                    )

            wait_for_mode(workers, "shadow", timeout=10)
            assert _until(lambda: shadow_rows() >= 20)
            for worker in workers:
                assert set(answered_by(worker, records[:10])) == {("production", v1)}
            http.post("/deploy", json={"canary": "100%"}, headers=HEADERS).raise_for_status()
            wait_for_mode(workers, "canary 100%", timeout=10)
            for worker in workers:
                assert set(answered_by(worker, records[:20])) == {("canary", v2)}
            http.post("/deploy", json={"canary": "30%"}, headers=HEADERS).raise_for_status()
            wait_for_mode(workers, "canary 30%", timeout=10)
            for pid, worker in each.items():
                roles = Counter(answered_by(worker, records))
                assert set(roles) <= {("canary", v2), ("production", v1)}, roles
                assert within_binomial(roles[("canary", v2)], len(records), 0.3), (pid, roles)
            http.post("/deploy", json={"stop": True}, headers=HEADERS).raise_for_status()
            wait_for_mode(workers, None, timeout=10)
            for worker in workers:
                assert set(answered_by(worker, records[:20])) == {("production", v1)}
            time.sleep(0.3)  # the client keeps sending after the stop
            metrics = http.get("/metrics").text
        assert client.sent > 50
        assert client.failures == []
        assert client.answers[("canary", v2)] > 0 and client.answers[("production", v1)] > 0
        assert 'role="shadow"' in metrics and 'role="canary"' in metrics
    finally:
        for worker in workers:
            worker.close()
        stop_server(server)
