"""Edges a hostile or careless client finds: what anonymous clients see, bad input, slow
clients, hung-up clients; and the CLI's one-line errors for odd flags and files."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.e2e.serverproc import server_env, start_server, stop_server
from tests.e2e.test_cli import Cli, assert_one_line_error
from tests.e2e.test_serving import records

pytestmark = pytest.mark.e2e
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def cli(settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


def _with_password(url: str) -> str:
    """The test database's URL with a (ignored, trust auth) password in its query string."""
    return url + ("&" if "?" in url else "?") + "password=sekrit-in-query"


def test_anonymous_clients_see_no_secret_path_or_operator_but_the_admin_does(
    ctx, trained, tmp_path: Path
) -> None:
    # Only PostgreSQL URLs take a password; SQLite's URL is a path, which must not show either.
    url = _with_password(ctx.settings.database_url) if ctx.db.is_postgres else None
    extra = {"PGMLOPS_DATABASE_URL": url} if url else {}
    srv = start_server(ctx.settings, tmp_path, **extra)
    try:
        with srv.client() as http:
            bodies = {path: http.get(path) for path in ("/health", "/ready", "/models")}
            admin = http.get("/health", headers=srv.admin_headers()).json()
            wrong_key = http.get("/health", headers={"X-API-Key": "nope"}).json()
        for path, resp in bodies.items():
            assert resp.status_code == 200, (path, resp.text)
            assert str(tmp_path) not in resp.text, path
            assert "sekrit" not in resp.text and "127.0.0.1" not in resp.text, path
        health = bodies["/health"].json()
        assert health["status"] == "ok" and health["database"] == {"reachable": True}
        assert "url" not in wrong_key["database"]
        models = bodies["/models"].json()
        assert models["card"]["data"]["source"] is None
        assert {v["created_by"] for v in models["models"][0]["versions"]} == {None}
        assert [e["actor"] for e in models["models"][0]["history"]] == [None]
        # The admin key shows where the database is, with its password still hidden.
        shown = admin["database"]["url"]
        assert "sekrit" not in shown
        if url:
            assert "password=***" in shown and "127.0.0.1" in shown
        else:
            assert str(tmp_path) in shown
    finally:
        stop_server(srv)
    assert "sekrit" not in srv.log.read_text()


def test_bad_inputs_get_a_4xx_and_a_client_hanging_up_is_not_a_500(server, ctx) -> None:
    # One server for both (a trained model per database is the slow part of a test here).
    port = int(server.url.rsplit(":", 1)[1])
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head + b'Content-Length: 5000\r\n\r\n{"CreditScore": 6')
            time.sleep(0.02)
    one = records(1)[0]
    with server.client() as http:
        jsonfoo = http.post(
            "/predict", content=orjson.dumps(one), headers={"Content-Type": "application/jsonfoo"}
        )
        assert jsonfoo.status_code == 415 and "application/jsonfoo" in jsonfoo.json()["error"]
        charset = {"Content-Type": "Application/JSON; charset=utf-8"}
        assert http.post("/predict", content=orjson.dumps(one), headers=charset).status_code == 200
        # No Content-Type at all: refused on every route that takes a JSON body.
        admin = server.admin_headers()
        for path, headers in (("/predict", {}), ("/feedback", {}), ("/promote", admin)):
            bare = http.post(path, content=b'{"model_name": "churn"}', headers=headers)
            assert bare.status_code == 415, (path, bare.text)
            assert bare.json()["error"] == "Content-Type must be application/json, got 'none'"
        huge = http.post("/predict", content=orjson.dumps({**one, "Balance": 1e308}), headers=JSON)
        assert huge.status_code == 422 and "Balance" in huge.json()["error"]
        for body in ({**one, "Age": True}, [one, {**one, "HasCrCard": False}]):
            boolean = http.post("/predict", json=body)
            assert boolean.status_code == 422, boolean.text
            assert "boolean" in boolean.json()["error"]
        assert "HasCrCard" in boolean.json()["error"]
        # A text value reading "true" is judged as a category, not as a boolean.
        category = http.post("/predict", json={**one, "Gender": "true"}).json()["error"]
        assert "Gender" in category and "boolean" not in category
        assert http.post("/predict", json=one).status_code == 200

        pid = http.post("/predict", json=one).json()["prediction_id"]
        twice = [{"prediction_id": pid, "label": 1}, {"prediction_id": pid, "label": 0}]
        assert http.post("/feedback", json=twice).json() == {"stored": 1, "replaced": 0}
        many = [{"prediction_id": str(uuid.uuid4()), "label": 1}] * 10_001
        over = http.post("/feedback", json=many)
        assert over.status_code == 413 and "maximum batch of 10000" in over.json()["error"]
        metrics = http.get("/metrics").text
    # Too big a request head: 431 and the connection closed, before the app sees it.
    body = orjson.dumps(one)
    big_value = b"X-Big: " + b"a" * 1_000_000 + b"\r\n"
    many_headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(10_000))
    for extra in (big_value, many_headers):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(10)
            # The server may close while the rest of the head is still being sent.
            with contextlib.suppress(OSError):
                s.sendall(head + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert b"request header fields too large" in answer
    # The hung-up clients: no 500 counted, no traceback logged.
    assert 'status="500"' not in metrics
    assert 'status="499"' in metrics
    log = server.log.read_text()
    assert "Traceback" not in log and "ClientDisconnect" not in log
    from pgmlops.store.prediction_log.predictions import PredictionStore

    history = PredictionStore(ctx.db).feedback_history(pid)
    assert [(h.label, h.superseded_at) for h in history] == [("0", None)]


def test_feedback_beyond_the_bind_parameter_limit_is_answered_not_a_503(ctx) -> None:
    from pgmlops.errors import NotFoundError
    from pgmlops.services.serving.feedback import record_feedback

    unknown = [(str(uuid.uuid4()), "1") for _ in range(66_000)]
    with pytest.raises(NotFoundError, match="unknown prediction_id"):
        record_feedback(ctx, unknown)


def _raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@SQLITE_ONLY
def test_slow_clients_are_closed_and_others_keep_a_fast_p99(
    ctx, tmp_path: Path, db_url: str
) -> None:
    held = 3_000
    _raise_own_fd_limit(held + 500)
    srv = start_server(
        ctx.settings,
        tmp_path,
        PGMLOPS_SERVING__HEADER_TIMEOUT_SECONDS="6",
        PGMLOPS_SERVING__BODY_TIMEOUT_SECONDS="6",
        PGMLOPS_SERVING__KEEP_ALIVE_SECONDS="1",
        PGMLOPS_SERVING__PUBLIC_DETAILS="true",
    )
    port = int(srv.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    try:
        for i in range(held):
            s = socket.create_connection(("127.0.0.1", port))
            # Half never finish their headers, half never finish their body.
            if i % 2:
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Len")
            else:
                s.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 900\r\n\r\n{"
                )
            slow.append(s)
        held_at = time.monotonic()
        latencies = []
        with srv.client() as http:
            # public_details: the database location is shown without the admin key.
            assert str(tmp_path) in http.get("/health").json()["database"]["url"]
            # /ready answers from memory (503: no model here), so the probe measures the
            # event loop that holds the slow connections, not the database.
            while time.monotonic() - held_at < 4 and len(latencies) < 400:
                started = time.perf_counter()
                assert http.get("/ready").status_code == 503
                latencies.append(time.perf_counter() - started)
            kept_alive = socket.create_connection(("127.0.0.1", port))
            kept_alive.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(latencies) >= 50, len(latencies)
        p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1]
        print(f"{held} slow connections held: p99 {p99 * 1000:.1f} ms over {len(latencies)}")
        assert p99 < 0.100, f"p99 {p99 * 1000:.1f} ms with {held} slow connections held"

        # Every slow connection is answered 408 and closed once its time is up.
        answers = []
        for s in slow:
            s.settimeout(max(0.1, held_at + 10 - time.monotonic()))
            try:
                answers.append(s.recv(4096)[:12])
            except OSError as exc:
                answers.append(type(exc).__name__.encode())
        assert answers.count(b"HTTP/1.1 408") == held, set(answers)
        # An idle kept-alive connection goes after keep_alive_seconds.
        kept_alive.settimeout(5)
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1 503")  # no model: not ready
        idle = time.monotonic()
        assert kept_alive.recv(4096) == b""
        assert time.monotonic() - idle < 3
        kept_alive.close()
    finally:
        for s in slow:
            s.close()
        stop_server(srv)


@SQLITE_ONLY
def test_cli_edges_are_one_line_errors(cli: Cli, tmp_path: Path, ctx, db_url: str) -> None:
    assert_one_line_error(cli("monitor", "--since", "99999999h"), 2, "--since", "too long")
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(cli("models", "--config", str(binary)), 2, "model.bin", "UTF-8")
    assert_one_line_error(cli("monitor", "--model-name", "no spaces"), 2, "--model-name")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        serve = [sys.executable, "-m", "pgmlops.cli", "serve", "--port", str(port)]
        ends = [
            subprocess.run(
                [*serve, "--workers", str(workers)],
                env=server_env(ctx.settings),
                capture_output=True,
                text=True,
                timeout=60,
            )
            for workers in (1, 2)
        ]
    for end in ends:
        assert_one_line_error(end, 2, f"cannot listen on 127.0.0.1:{port}")
    assert ends[0].stderr == ends[1].stderr


@SQLITE_ONLY
def test_a_password_in_the_database_url_is_never_printed(cli: Cli, db_url: str) -> None:
    url = "postgresql://someone:userinfo-secret@127.0.0.1:1/db?password=query-secret"
    result = cli("db", "current", PGMLOPS_DATABASE_URL=url)
    assert_one_line_error(result, 5, "unreachable", "password=***")
    assert "secret" not in result.stderr + result.stdout


def test_a_store_error_tells_anonymous_clients_no_location() -> None:
    from pgmlops.errors import StoreError
    from pgmlops.store.db import Database

    db = Database("postgresql://someone@127.0.0.1:1/db?password=query-secret")
    with pytest.raises(StoreError) as caught:
        db.revisions()
    assert "query-secret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert caught.value.public == "database is unreachable"
