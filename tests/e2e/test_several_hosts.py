"""Several hosts on one PostgreSQL: two `pgmlops serve` replicas behind HAProxy, two workers.

Each process has its own working directory and spill folder, as separate machines would; they
share only the database (and the artifact store, as an object store would be shared). The
replicas follow the production alias by LISTEN/NOTIFY (polling is set to 30 s here, so only a
notification can be that fast), the workers claim jobs with SKIP LOCKED, and HAProxy from
Debian balances the API and takes a dead replica out on its /ready check.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.live.modes import sticky_bucket
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.store.jobs import FAILED, SUCCEEDED, JobStore
from tests.conftest import REQUIRE_PG, fresh_postgres_database
from tests.e2e.live_traffic_checks import (
    ContinuousClient,
    answered_by,
    wait_for_mode,
    within_binomial,
)
from tests.e2e.serverproc import (
    ADMIN_KEY,
    Server,
    free_port,
    server_env,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
HAPROXY = shutil.which("haproxy") or next(
    (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(p)), None
)
RECORD = make_churn(1, seed=5).drop(columns=["CustomerId", "Exited"]).to_dict("records")[0]
ADMIN = {"X-API-Key": ADMIN_KEY}
HAPROXY_CONFIG = """\
global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # Only a refused connection is retried (on the other replica): a POST that reached a
    # replica is never sent twice.
    retries 2
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    # A replica busy loading a model answers slowly; a dead one refuses at once.
    timeout check 3s
    default-server inter 300ms fall 2 rise 1
{servers}
"""


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> float:
    """Seconds until `check()` held; fails the test after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


@dataclass
class Hosts:
    """The running deployment: replicas (by name), workers, the balancer, the database."""

    settings: Settings
    replicas: dict[str, Server]
    workers: list[subprocess.Popen]
    worker_logs: list[Path]
    balancer: str
    versions: dict[str, int]
    homes: dict[str, Path] = field(default_factory=dict)

    def served_version(self, replica: str) -> int | None:
        health = httpx.get(f"{self.replicas[replica].url}/health", timeout=5).json()
        return health["model"]["version"]


@pytest.fixture(scope="module", params=["postgresql"])
def database() -> Iterator[str]:
    """A fresh migrated PostgreSQL database; this deployment does not exist on SQLite."""
    with fresh_postgres_database() as url:
        yield url


def _home(root: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A host's own working directory and spill folder."""
    home = root / name
    (home / "spill").mkdir(parents=True)
    return home, {"PGMLOPS_SERVING__SPILL_DIR": str(home / "spill")}


def _start_worker(settings: Settings, home: Path, extra: dict[str, str]) -> tuple:
    env = server_env(
        settings,
        **extra,
        PGMLOPS_RETRAINING__POLL_SECONDS="0.2",
        PGMLOPS_RETRAINING__CHECK_SECONDS="3600",
    )
    log = home / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "pgmlops.cli", "worker"],
        env=env,
        cwd=home,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def _start_haproxy(root: Path, replicas: dict[str, Server]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    servers = "\n".join(
        f"    server {name} {srv.url.removeprefix('http://')} check"
        for name, srv in replicas.items()
    )
    config = root / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    log = root / "haproxy.log"
    process = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def both_up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            pids = {httpx.get(f"{url}/health", timeout=2).json()["worker_pid"] for _ in range(4)}
            return len(pids) == 2
        return False

    wait_until(both_up, timeout=20, every=0.1)
    return process, url


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def hosts(
    database: str, small_churn_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    if HAPROXY is None:
        if REQUIRE_PG:
            pytest.fail("haproxy is not installed (.ci/run installs it with apt-get)")
        pytest.skip("haproxy is not installed: apt-get install haproxy")
    root = tmp_path_factory.mktemp("hosts")
    settings = Settings(
        database_url=database, artifact_root=str(root / "artifacts"), model_name="churn"
    )
    ctx = Context(settings)
    try:
        kw = {"data": str(small_churn_csv), "target": "Exited", "model_name": "churn"}
        # A fast linear model without an ONNX copy: what is tested is coordination, not models.
        cheap = {"estimator": "sklearn.linear_model.LogisticRegression", "reference_folds": 0}
        v1 = train_command(ctx, **kw, actor="t", overrides=cheap, onnx=False)
        promote_command(
            ctx, model_name="churn", version=v1["version"], force=False, reason=None, actor="t"
        )
        v2 = train_command(ctx, **kw, actor="t", overrides={**cheap, "seed": 1}, onnx=False)
    finally:
        ctx.close()
    replica_homes = {name: _home(root, name) for name in ("api-1", "api-2")}
    worker_homes = [_home(root, name) for name in ("worker-1", "worker-2")]
    started: list[subprocess.Popen] = []
    replicas: dict[str, Server] = {}
    try:
        workers = [_start_worker(settings, home, extra) for home, extra in worker_homes]
        started += [w for w, _ in workers]

        def replica(name: str) -> None:
            home, extra = replica_homes[name]
            replicas[name] = start_server(
                settings,
                home,
                cwd=home,
                **extra,
                # Only a NOTIFY can move a replica within the 2 s asserted below.
                PGMLOPS_SERVING__RELOAD_POLL_SECONDS="30",
                PGMLOPS_SERVING__LOG_DURABILITY="acknowledged",
            )

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(replica, replica_homes))
        haproxy, balancer = _start_haproxy(root, replicas)
        started.append(haproxy)
        yield Hosts(
            settings=settings,
            replicas=replicas,
            workers=[w for w, _ in workers],
            worker_logs=[log for _, log in workers],
            balancer=balancer,
            versions={"v1": v1["version"], "v2": v2["version"]},
            homes={name: home for name, (home, _) in replica_homes.items()},
        )
    finally:
        with ThreadPoolExecutor(4) as pool:
            pool.map(stop_server, [s for s in replicas.values() if s.process.poll() is None])
            pool.map(_stop, started)


def test_an_alias_move_through_the_balancer_reaches_every_replica_within_2_s(
    hosts: Hosts,
) -> None:
    for name, srv in hosts.replicas.items():
        health = httpx.get(f"{srv.url}/health", timeout=5).json()
        assert health["alias_watch"] == "listen/notify", name
        assert health["model"]["version"] == hosts.versions["v1"], name

    for move, body, expected in (
        ("promote", {"version": hosts.versions["v2"], "force": True, "reason": "t"}, "v2"),
        ("rollback", {"reason": "t"}, "v1"),
    ):
        answer = httpx.post(f"{hosts.balancer}/{move}", json=body, headers=ADMIN, timeout=30)
        assert answer.status_code == 200, answer.text
        moved = time.monotonic()
        want = hosts.versions[expected]
        for name in hosts.replicas:
            wait_until(lambda n=name, v=want: hosts.served_version(n) == v, 2.0)
        took = time.monotonic() - moved
        print(f"\n{move}: every replica served {expected} {took:.2f} s after the answer")
        assert took < 2.0


def test_each_queued_job_runs_exactly_once_across_the_workers(hosts: Hosts) -> None:
    # Monitoring wants 200 rows (monitoring.drift.min_rows): one batch of 250 logs them.
    answer = httpx.post(f"{hosts.balancer}/predict", json=[RECORD] * 250, timeout=30)
    assert answer.status_code == 200, answer.text
    ctx = Context(hosts.settings)
    try:
        jobs = JobStore(ctx.db)
        # Distinct payloads, so the queue does not fold them into one waiting job.
        ids = [jobs.enqueue("monitor", "churn", {"last": 200 + i})[0].id for i in range(4)]

        def all_done() -> bool:
            return all(jobs.get(i).status in (SUCCEEDED, FAILED) for i in ids)

        wait_until(all_done, timeout=60, every=0.2)
        done = [jobs.get(i) for i in ids]
    finally:
        ctx.close()
    assert [j.status for j in done] == [SUCCEEDED] * len(ids), [j.error for j in done]
    # Every worker says "job N: monitor churn" when it starts one: each N once, over both logs.
    started = [
        int(m.group(1))
        for log in hosts.worker_logs
        for m in re.finditer(r"job (\d+): monitor churn", log.read_text())
    ]
    assert sorted(started) == sorted(ids)
    ran_by = {j.result["worker"] for j in done if j.result}
    print(f"\n{len(ids)} jobs, run by {len(ran_by)} worker(s): {sorted(ran_by)}")
    run_ids = [j.result["run_id"] for j in done if j.result]
    assert len(set(run_ids)) == len(ids)


def _deploy(settings: Settings, *args: str) -> None:
    """`pgmlops deploy` from the command line, as an operator on another machine runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "pgmlops.cli", "deploy", "--model-name", "churn", *args],
        env=server_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_both_replicas_serve_the_same_canary_share_with_no_failed_request(hosts: Hosts) -> None:
    v1, v2 = hosts.versions["v1"], hosts.versions["v2"]
    # Each replica on its own connection (one worker each); a client through the balancer.
    direct = {
        name: httpx.Client(base_url=srv.url, timeout=30) for name, srv in hosts.replicas.items()
    }
    records = make_churn(400, seed=8).drop(columns=["Exited"]).to_dict("records")
    plain = [{k: v for k, v in r.items() if k != "CustomerId"} for r in records]
    client = ContinuousClient(
        lambda: [httpx.Client(base_url=hosts.balancer, timeout=30) for _ in range(2)], records
    )
    try:
        with client:
            for args, mode, share in (
                (("--version", str(v2), "--canary", "20%"), "canary 20%", 0.2),
                (("--canary", "50%"), "canary 50%", 0.5),
            ):
                _deploy(hosts.settings, *args)
                # Polling is 30 s here: only the NOTIFY reaches the replicas this fast.
                took = wait_for_mode(list(direct.values()), mode, timeout=5.0)
                print(f"\n{mode}: every replica followed {took:.2f} s after the command")
                for name, http in direct.items():
                    roles = Counter(answered_by(http, plain))
                    assert set(roles) <= {("canary", v2), ("production", v1)}, roles
                    k = roles[("canary", v2)]
                    assert within_binomial(k, len(plain), share), (name, mode, roles)

            # Sticky by the key column: a customer gets the same version from either host.
            _deploy(hosts.settings, "--canary", "50%", "--sticky-key", "CustomerId")
            wait_for_mode(list(direct.values()), "canary 50% sticky by CustomerId", timeout=5.0)
            keyed = records[:100]
            seen = {name: answered_by(http, keyed) for name, http in direct.items()}
            assert seen["api-1"] == seen["api-2"]
            expected = [
                ("canary", v2)
                if sticky_bucket("churn", str(r["CustomerId"])) < 0.5
                else ("production", v1)
                for r in keyed
            ]
            assert seen["api-1"] == expected

            _deploy(hosts.settings, "--stop")
            wait_for_mode(list(direct.values()), None, timeout=5.0)
            for http in direct.values():
                assert set(answered_by(http, plain[:20])) == {("production", v1)}
            time.sleep(0.5)  # the client keeps sending after the stop
        print(f"client through the balancer: {client.sent} requests, {dict(client.answers)}")
        assert client.failures == []
        assert client.answers[("canary", v2)] > 0 and client.answers[("production", v1)] > 0
    finally:
        for http in direct.values():
            http.close()


class Load:
    """Client threads posting through the balancer; keeps each 200's id and when it came."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answered: list[tuple[float, str]] = []
        self.other: list[tuple[float, int | str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post) for _ in range(threads)]

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    resp = http.post("/predict", json=RECORD)
                except httpx.HTTPError as exc:
                    self.other.append((time.monotonic(), type(exc).__name__))
                    time.sleep(0.01)
                    continue
                if resp.status_code == 200:
                    self.answered.append((time.monotonic(), resp.json()["prediction_id"]))
                else:
                    self.other.append((time.monotonic(), resp.status_code))
                time.sleep(0.002)  # bounded load: the machine is shared

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def _logged(database_url: str, ids: list[str]) -> int:
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_killing_a_replica_under_load_loses_no_acknowledged_prediction(hosts: Hosts) -> None:
    victim = hosts.replicas["api-1"]
    with Load(hosts.balancer) as load:
        time.sleep(1.5)
        os.killpg(victim.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        victim.process.wait(timeout=10)
        time.sleep(2.5)
    ids = [i for _, i in load.answered]
    after = sum(1 for at, _ in load.answered if at > killed + 1.0)
    print(
        f"\nanswered {len(ids)} (after the kill: {after}), "
        f"not answered {len(load.other)}: {sorted({str(what) for _, what in load.other})}"
    )
    # Acknowledged: every 200 is committed (or spilled and fsynced) before it is sent.
    assert _logged(hosts.settings.database_url, ids) == len(ids)
    # The spill folder holds the survivor's own ledger (store/prediction_log/ledger.py), and no
    # spilled rows.
    spilled = [p for p in (hosts.homes["api-2"] / "spill").iterdir() if p.suffix == ".jsonl"]
    assert not spilled, "the survivor spilled rows"
    # The balancer took the dead replica out: only requests around the kill went unanswered
    # (in flight, or sent before two failed /ready checks), and the survivor answered the rest.
    assert after > 0
    late = [(round(at - killed, 2), what) for at, what in load.other if not 0 <= at - killed < 3]
    assert late == [], late
