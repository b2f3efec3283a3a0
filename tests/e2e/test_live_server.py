"""A real two-worker server follows the challenger: shadow pairs, canary shares, 0 failures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from pgmlops.domain.demo_data import make_churn
from pgmlops.store.tables import PredictionRow
from tests.e2e.serverproc import ADMIN_KEY, start_server, stop_server

HEADERS = {"X-API-Key": ADMIN_KEY}


def _roles(http, records: list[dict]) -> Counter:
    return Counter(
        (a["role"], a["version"]) for a in (http.post("/predict", json=r).json() for r in records)
    )


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
    records = make_churn(30, seed=2).drop(columns=["Exited"]).to_dict("records")
    server = start_server(ctx.settings, tmp_path, workers=2)
    failures: list[str] = []
    sent = [0]
    stop = threading.Event()

    def load() -> None:
        with server.client() as http:
            while not stop.is_set():
                resp = http.post("/predict", json=records[sent[0] % len(records)])
                sent[0] += 1
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")

    try:
        with server.client() as http:
            worker = threading.Thread(target=load, daemon=True)
            worker.start()
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

            assert _until(lambda: shadow_rows() >= 20)
            assert set(_roles(http, records[:10])) == {("production", v1)}
            http.post("/deploy", json={"canary": "100%"}, headers=HEADERS).raise_for_status()
            assert _until(lambda: set(_roles(http, records[:20])) == {("canary", v2)})
            http.post("/deploy", json={"canary": "30%"}, headers=HEADERS).raise_for_status()
            time.sleep(1.5)  # two polls of 0.5 s: every worker has the new share
            many = _roles(http, records * 10)
            canary = many[("canary", v2)]
            # 300 rows at p = 0.3: sd = 7.9; within five of them.
            assert abs(canary - 90) < 5 * 7.9, many
            http.post("/deploy", json={"stop": True}, headers=HEADERS).raise_for_status()
            assert _until(lambda: set(_roles(http, records[:20])) == {("production", v1)})
            stop.set()
            worker.join(timeout=10)
            assert sent[0] > 50
            assert failures == []
            metrics = http.get("/metrics").text
            assert 'role="shadow"' in metrics and 'role="canary"' in metrics
    finally:
        stop.set()
        stop_server(server)
