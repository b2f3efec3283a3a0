"""The HTTP service as a user meets it: a real server process on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.tables import PredictionRow
from tests.e2e.serverproc import server_env, start_server, stop_server
from tests.tamper import rewrite_files

pytestmark = pytest.mark.e2e


def records(n: int, seed: int = 0) -> list[dict]:
    frame = make_churn(n, seed=seed).drop(columns=["CustomerId", "Exited"])
    return frame.to_dict(orient="records")


def wait_for_log(ctx, n: int, timeout: float = 15.0) -> int:
    store = PredictionStore(ctx.db)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = store.count("churn")
        if count >= n:
            return count
        time.sleep(0.2)
    return count


def test_predicts_one_record_and_logs_it(server, ctx) -> None:
    with server.client() as http:
        resp = http.post("/predict", json=records(1)[0])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "churn" and body["version"] == 1
    assert body["prediction"] in ("0", "1")
    assert 0.0 <= body["probability"] <= 1.0
    # On the tuned threshold's scale: 0 at the threshold, 1 at certainty (docs/serving.md).
    card = ctx.registry.get_version("churn", 1).card
    p, t = body["probability"], card.threshold
    assert body["confidence"] == pytest.approx((p - t) / (1 - t) if p >= t else (t - p) / t)
    assert (body["risk_level"] == "low") == (body["prediction"] == card.classes[0])
    uuid.UUID(body["prediction_id"])
    assert resp.headers["x-request-id"]
    assert wait_for_log(ctx, 1) == 1


def test_logged_predictions_carry_the_request_id_of_the_response(server, ctx) -> None:
    with server.client() as http:
        ours = http.post("/predict", json=records(1)[0])
        # Longer than the column: it must be cut, not make the log write fail.
        theirs = http.post("/predict", json=records(1)[0], headers={"X-Request-Id": "r" * 200})
    assert theirs.status_code == 200 and theirs.headers["x-request-id"] == "r" * 64
    assert wait_for_log(ctx, 2) == 2
    with ctx.db.session() as s:
        logged = dict(s.execute(select(PredictionRow.id, PredictionRow.request_id)).all())
    assert logged[uuid.UUID(ours.json()["prediction_id"])] == ours.headers["x-request-id"]
    assert logged[uuid.UUID(theirs.json()["prediction_id"])] == "r" * 64


def test_predicts_a_batch_with_one_version(server, ctx) -> None:
    with server.client() as http:
        resp = http.post("/predict", json=records(500, seed=1))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == 1 and len(body["predictions"]) == 500
    assert len({p["prediction_id"] for p in body["predictions"]}) == 500
    assert wait_for_log(ctx, 500) == 500


def test_feedback_is_validated_and_a_second_label_replaces_the_first(server, ctx) -> None:
    with server.client() as http:
        pid = http.post("/predict", json=records(1)[0]).json()["prediction_id"]
        first = http.post("/feedback", json={"prediction_id": pid, "label": 1})
        assert first.status_code == 200, first.text
        assert first.json() == {"stored": 1, "replaced": 0}
        second = http.post("/feedback", json=[{"prediction_id": pid, "label": "0"}])
        assert second.json() == {"stored": 1, "replaced": 1}
        unknown = http.post("/feedback", json={"prediction_id": str(uuid.uuid4()), "label": 1})
        assert unknown.status_code == 404 and "unknown prediction_id" in unknown.json()["error"]
        wrong = http.post("/feedback", json={"prediction_id": pid, "label": "maybe"})
        assert wrong.status_code == 422 and "not one of the classes" in wrong.json()["error"]
    history = PredictionStore(ctx.db).feedback_history(pid)
    assert [h.label for h in history] == ["1", "0"]
    assert history[0].superseded_at is not None and history[1].superseded_at is None


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda r: r.pop("Age"), 422, "Age"),
        (lambda r: r.update(Age="old"), 422, "Age"),
        (lambda r: r.update(Geography="Atlantis"), 422, "Geography"),
        (lambda r: r.update(Colour="red"), 422, "Colour"),
        (lambda r: r.update(Balance=float("inf")), 422, "Balance"),
    ],
    ids=["missing-field", "wrong-type", "unknown-category", "extra-field", "infinity"],
)
def test_bad_records_get_a_4xx_naming_the_field(server, mutate, status, field) -> None:
    record = records(1)[0]
    mutate(record)
    body = orjson.dumps(record).replace(b'"Balance":null', b'"Balance":Infinity')
    with server.client() as http:
        resp = http.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == status, resp.text
        assert field in resp.json()["error"]
        assert http.get("/ready").status_code == 200


def test_malformed_bodies_are_refused_and_the_server_keeps_serving(server) -> None:
    json_type = {"Content-Type": "application/json"}
    with server.client() as http:
        assert http.post("/predict", content=b"{not json", headers=json_type).status_code == 422
        assert http.post("/predict", content=b"NaN", headers=json_type).status_code == 422
        assert http.post("/predict", json=[]).status_code == 422
        assert http.post("/predict", json=42).status_code == 422
        plain = http.post("/predict", content=b"a=1", headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        assert http.post("/predict", json=records(1)[0]).status_code == 200


def test_batch_and_body_limits(ctx, trained, tmp_path: Path) -> None:
    srv = start_server(
        ctx.settings,
        tmp_path,
        PGMLOPS_SERVING__MAX_BATCH="5",
        PGMLOPS_SERVING__MAX_BODY_BYTES="4096",
    )
    try:
        with srv.client() as http:
            too_many = http.post("/predict", json=records(6))
            assert too_many.status_code == 413 and "maximum batch of 5" in too_many.json()["error"]
            huge = http.post("/predict", json=[records(1)[0]] * 40)
            assert huge.status_code == 413
            assert http.post("/predict", json=records(5)).status_code == 200
    finally:
        stop_server(srv)


def test_flag_mode_accepts_unknown_categories_but_not_a_nul_character(
    ctx, trained, tmp_path: Path
) -> None:
    srv = start_server(ctx.settings, tmp_path, PGMLOPS_SERVING__UNKNOWN_CATEGORIES="flag")
    try:
        with srv.client() as http:
            unknown = http.post("/predict", json={**records(1)[0], "Geography": "Atlantis"})
            assert unknown.status_code == 200, unknown.text
            assert unknown.json()["flags"] == {"unknown_categories": ["Geography"]}
            # PostgreSQL cannot store a NUL: logged, it would fail the writer's whole batch.
            nul = http.post("/predict", json={**records(1)[0], "Geography": "Atl\x00antis"})
            assert nul.status_code == 422 and "Geography" in nul.json()["error"]
            assert "NUL" in nul.json()["error"]
            assert http.post("/predict", json=records(1)[0]).status_code == 200
        assert wait_for_log(ctx, 2) == 2
        time.sleep(0.5)
        assert PredictionStore(ctx.db).count("churn") == 2
        assert httpx.get(f"{srv.url}/health").json()["prediction_log"]["failures"] == 0
    finally:
        stop_server(srv)


def test_admin_routes_need_the_key(server) -> None:
    with server.client() as http:
        assert http.post("/reload").status_code == 401
        assert http.post("/reload", headers={"X-API-Key": "wrong"}).status_code == 401
        ok = http.post("/reload", headers={"Authorization": "Bearer test-admin-key"})
        assert ok.status_code == 200 and ok.json()["version"] == 1


def test_admin_routes_are_disabled_without_a_configured_key(ctx, trained, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path, PGMLOPS_API_KEY="")
    try:
        with srv.client() as http:
            resp = http.post("/reload", headers={"X-API-Key": "anything"})
            assert resp.status_code == 403 and "PGMLOPS_API_KEY" in resp.json()["error"]
    finally:
        stop_server(srv)


def test_serves_without_a_production_model_and_is_not_ready(ctx, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path)
    try:
        with srv.client() as http:
            ready = http.get("/ready")
            assert ready.status_code == 503 and "no production version" in ready.json()["reason"]
            assert http.post("/predict", json={"a": 1}).status_code == 503
            assert http.get("/health").status_code == 200
    finally:
        stop_server(srv)


def test_reload_under_load_never_fails_a_request(server, ctx, trained) -> None:
    record = records(1)[0]
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with server.client() as http:
            while not stop.is_set():
                resp = http.post("/predict", json=record)
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                else:
                    seen.append(resp.json()["version"])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    current = trained["v1"]
    for _ in range(10):
        target = trained["v2"] if current == trained["v1"] else trained["v1"]
        ctx.registry.move_alias(
            "churn",
            PRODUCTION,
            new_version=target,
            expected_version=current,
            action="force",
            actor="test",
            reason="flip",
        )
        current = target
        time.sleep(0.7)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert set(seen) == {trained["v1"], trained["v2"]}
    assert len(seen) > 50


def test_tampered_artifact_is_refused_and_the_old_version_keeps_serving(
    server, ctx, trained
) -> None:
    v2 = ctx.registry.get_version("churn", trained["v2"])
    for stored in v2.files.values():
        path = Path(stored.uri)
        path.write_bytes(b"tampered" + path.read_bytes()[8:])
    ctx.registry.move_alias(
        "churn",
        PRODUCTION,
        new_version=trained["v2"],
        expected_version=trained["v1"],
        action="force",
        actor="test",
        reason="tamper test",
    )
    with server.client() as http:
        resp = http.post("/reload", headers=server.admin_headers())
        assert resp.status_code == 409
        assert "integrity" in resp.json()["error"]
        assert http.post("/predict", json=records(1)[0]).json()["version"] == trained["v1"]
        health = http.get("/health").json()
        assert health["status"] == "degraded" and "v2 refused" in health["model"]["error"]


def test_a_version_pointed_at_another_versions_signed_files_is_refused_on_reload(
    server, ctx, trained
) -> None:
    v1 = ctx.registry.get_version("churn", trained["v1"])
    # Someone with write access to the database, but not the key, makes v2 serve v1's
    # (validly signed) files and moves production, bypassing promotion.
    rewrite_files(
        ctx, "churn", trained["v2"], lambda _: {k: f.to_dict() for k, f in v1.files.items()}
    )
    ctx.registry.move_alias(
        "churn",
        PRODUCTION,
        new_version=trained["v2"],
        expected_version=trained["v1"],
        action="force",
        actor="test",
        reason="swap test",
    )
    with server.client() as http:
        resp = http.post("/reload", headers=server.admin_headers())
        assert resp.status_code == 409
        assert "signature check" in resp.json()["error"]
        assert http.post("/predict", json=records(1)[0]).json()["version"] == trained["v1"]
        health = http.get("/health").json()
        assert health["status"] == "degraded" and "v2 refused" in health["model"]["error"]
        assert "signature check" in health["model"]["error"]


def test_two_workers_follow_a_promotion_within_five_seconds(ctx, trained, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path, workers=2)
    try:
        record = records(1)[0]

        def versions(n: int) -> list[int]:
            # A fresh connection per request, so the kernel spreads them over both workers.
            close = {"Connection": "close"}
            return [
                httpx.post(f"{srv.url}/predict", json=record, headers=close).json()["version"]
                for _ in range(n)
            ]

        assert set(versions(20)) == {trained["v1"]}
        ctx.registry.move_alias(
            "churn",
            PRODUCTION,
            new_version=trained["v2"],
            expected_version=trained["v1"],
            action="force",
            actor="test",
            reason="workers",
        )
        time.sleep(5)
        assert set(versions(60)) == {trained["v2"]}
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert "pgmlops_predictions_total" in metrics
        # Summed over both workers: the new version is shown, the replaced one is not.
        info = {
            line.split('version="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("pgmlops_model_info{")
        }
        assert info == {str(trained["v1"]): 0.0, str(trained["v2"]): 1.0}
    finally:
        stop_server(srv)


def test_two_workers_share_a_burst_of_keep_alive_connections(ctx, trained, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path, workers=2)
    try:
        # Opened together, as a load balancer's pool does: with one shared listening socket
        # the first worker to wake could accept them all.
        port = int(srv.url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        pids = set()
        for s in socks:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := s.recv(65536):
                body += chunk
            pids.add(orjson.loads(body.split(b"\r\n\r\n", 1)[1])["worker_pid"])
            s.close()
        assert len(pids) == 2
    finally:
        stop_server(srv)


def test_a_worker_that_dies_is_replaced(ctx, trained, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path, workers=2)
    try:
        victim = httpx.get(f"{srv.url}/health").json()["worker_pid"]
        os.kill(victim, signal.SIGKILL)
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while len(seen - {victim}) < 2 and time.monotonic() < deadline:
            close = {"Connection": "close"}
            with contextlib.suppress(httpx.HTTPError):
                seen.add(httpx.get(f"{srv.url}/health", headers=close).json()["worker_pid"])
            time.sleep(0.05)
        assert len(seen - {victim}) == 2
        assert httpx.post(f"{srv.url}/predict", json=records(1)[0]).status_code == 200
    finally:
        stop_server(srv)


def test_workers_stop_when_the_pool_process_is_killed(ctx, trained, tmp_path) -> None:
    srv = start_server(ctx.settings, tmp_path, workers=2)
    try:
        workers = _worker_pids(srv.url)
        srv.process.kill()  # the pool's process, killed -9: it cannot stop its workers
        srv.process.wait(10)
        deadline = time.monotonic() + 60
        while workers and time.monotonic() < deadline:
            workers = {pid for pid in workers if _running(pid)}
            time.sleep(0.2)
        assert not workers, f"workers {sorted(workers)} outlived the pool's process"
    finally:
        stop_server(srv)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _worker_pids(url: str) -> set[int]:
    """Both workers' pids (new connections until two have answered)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            close = {"Connection": "close"}
            pids.add(httpx.get(f"{url}/health", headers=close, timeout=10).json()["worker_pid"])
    assert len(pids) == 2, "both workers should answer"
    return pids


def test_workers_killed_5s_apart_under_load_refuse_no_connection(ctx, trained, tmp_path) -> None:
    # The pool keeps each worker's listening socket: while a replacement loads, connections
    # the kernel routes to the dead worker's socket wait in its backlog for the replacement.
    srv = start_server(ctx.settings, tmp_path, workers=2)
    body = orjson.dumps(records(1)[0])
    refused: list[str] = []
    failed: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                # A new connection each time: each one is routed to a worker's socket anew.
                resp = httpx.post(
                    f"{srv.url}/predict",
                    content=body,
                    headers={"Connection": "close", "Content-Type": "application/json"},
                    timeout=60,
                )
            except httpx.ConnectError as exc:
                refused.append(str(exc))
            except httpx.HTTPError as exc:  # a request the killed worker was answering
                failed.append(f"{type(exc).__name__}: {exc}")
            else:
                if resp.status_code == 200:
                    answered[0] += 1
                else:
                    failed.append(f"{resp.status_code} {resp.text[:200]}")

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        first, second = sorted(_worker_pids(srv.url))
        for t in threads:
            t.start()
        time.sleep(1)
        os.kill(first, signal.SIGKILL)
        time.sleep(5)
        os.kill(second, signal.SIGKILL)
        # Load goes on until both replacements answer.
        assert not _worker_pids(srv.url) & {first, second}
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_server(srv)
    assert refused == [], f"{len(refused)} connections refused: {refused[0]}"
    # Only requests a worker was answering when it was killed may fail: one per thread.
    assert len(failed) <= 2 * len(threads), failed
    assert answered[0] > 0


def test_serve_with_workers_refuses_a_port_in_use(ctx, trained, tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "pgmlops.cli", "serve", "--port", str(port), "--workers", "2"],
            env=server_env(ctx.settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
