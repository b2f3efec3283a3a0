"""Single-record /predict throughput and latency of `pgmlops serve`, against its floor and MLflow.

Run: ``.venv/bin/python bench/serve_bench.py [--duration 10] [--runs 3] [--connections 16]
[--no-mlflow] [--keep]``. Everything runs on 127.0.0.1, on this machine, in one run:

1. set-up: a fresh PostgreSQL database (``pgmlops_bench_serve`` on PGMLOPS_BENCH_POSTGRES_URL,
   default postgres@127.0.0.1:5432, dropped at the end unless ``--keep``), an artifact folder
   in a temp dir, 20,000 demo churn rows (seed 7), ``pgmlops train`` + ``pgmlops promote``
   as subprocesses; the production version must have an ONNX copy;
2. the floor: in-process predict time of one record (median of many calls) for the server's
   own path (pydantic record model + ``predict_records``), raw onnxruntime ``session.run``, and
   the scikit-learn pipeline's ``predict_proba`` on a one-row DataFrame;
3. ``pgmlops serve --workers 1|2`` with prediction logging to PostgreSQL on and off, and
   MLflow's scoring server (``mlflow models serve -w 2``, from bench/.venv-mlflow) on the same
   fitted pipeline, and the bare FastAPI + pydantic + onnxruntime app (bench/bare_app.py, the
   issue's ceiling), all started at once and measured in interleaved rounds of
   ``wrk -t1 -c16 -d10s --latency`` (bench/wrk_predict.lua), so that background load on a
   shared machine hits every configuration alike; a run during which other processes used
   more than ``--max-other`` cores is repeated (quietest attempt kept); medians of the runs;
   after each logging-on run the ``predictions`` table must have grown by (about) the
   requests wrk completed, and by nothing after a logging-off run;
4. p50/p99 at half of the 2-worker peak with an open-loop, constant-rate load generator
   written here (asyncio, raw HTTP/1.1 keep-alive sockets, 16 connections, like wrk2);
5. a 10,000-record batch POST /predict against the 2-worker server (median of 5, httpx);
6. a Markdown table with the machine description, written to bench/results/serve.md (raw
   numbers in bench/results/serve.json).

Every load is bounded in time; every process this script starts is stopped by its own id.
The MLflow venv is made with ``python3.11 -m venv bench/.venv-mlflow && bench/.venv-mlflow/
bin/pip install "mlflow==3.17.*" "scikit-learn==<same as .venv>" "numpy==<same as .venv>"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from pgmlops.domain import demo_data

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_predict.lua"
LUA_RATE = BENCH / "wrk_rate.lua"
MLFLOW_VENV = BENCH / ".venv-mlflow"
ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Its own name per run when asked, so two benchmarks on one PostgreSQL do not drop each other.
DB_NAME = os.environ.get("PGMLOPS_BENCH_DB", "pgmlops_bench_serve")
MODEL = "default"
CLK = os.sysconf("SC_CLK_TCK")
# The demo data's feature columns: everything but the identifier and the target.
FEATURES = tuple(c for c in demo_data.COLUMNS if c not in ("CustomerId", demo_data.TARGET))

# Settings must come from this script only, not from the caller's shell.
for _k in [k for k in os.environ if k.startswith("PGMLOPS_")]:
    del os.environ[_k]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- machine and CPU accounting ---------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    import numpy
    import onnxruntime
    import sklearn

    import pgmlops

    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": int(nproc),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pgmlops": pgmlops.__version__,
        "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "wrk": (wrk_v.stdout + wrk_v.stderr).split("\n")[0].strip(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tree(root: int) -> list[int]:
    """root and all its descendants."""
    parents: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st:
            parents.setdefault(int(st[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        st = _stat(pid)
        if st:
            total += int(st[11]) + int(st[12])
    return total / CLK


def postgres_pids() -> list[int]:
    out = []
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                out.append(pid)
    return out


def log_process_pids(pids: list[int]) -> list[int]:
    """The prediction-logging processes among pids (they name themselves `pgmlops-log`)."""
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "pgmlops-log":
                out.append(pid)
    return out


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine since boot."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK


class CpuWindow:
    """Who used the CPU during a measurement: the target, the load generator, Postgres, others."""

    def __init__(self, target_pids: list[int]) -> None:
        self.target_pids = target_pids
        self.pg = postgres_pids()
        self.t0 = time.monotonic()
        self.busy0 = machine_busy()
        self.target0 = cpu_of(target_pids)
        self.pg0 = cpu_of(self.pg)
        self.children0 = _rusage_children()
        self.self0 = _rusage_self()

    def close(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        busy = machine_busy() - self.busy0
        target = cpu_of(self.target_pids) - self.target0
        pg = cpu_of(self.pg) - self.pg0
        gen = (_rusage_children() - self.children0) + (_rusage_self() - self.self0)
        other = max(0.0, busy - target - pg - gen)
        return {
            "wall_s": round(wall, 2),
            "server_cores": round(target / wall, 2),
            "loadgen_cores": round(gen / wall, 2),
            "postgres_cores": round(pg / wall, 2),
            "other_cores": round(other / wall, 2),
            "idle_cores": round(max(0.0, os.cpu_count() - busy / wall), 2),  # type: ignore[operator]
        }


def _rusage_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rusage_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_quiet(limit_s: float, max_busy_cores: float = 0.3) -> float:
    """Wait (at most limit_s) for a 2-second window in which the machine is nearly idle."""
    deadline = time.monotonic() + limit_s
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(2.0)
        cores = (machine_busy() - b0) / (time.monotonic() - t0)
        if cores <= max_busy_cores or time.monotonic() >= deadline:
            return round(cores, 2)


# -- database and set-up ------------------------------------------------------------------


def _admin_engine():
    from sqlalchemy import create_engine

    from pgmlops.store.db import normalize_url

    return create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def db_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(ADMIN_URL).set(database=DB_NAME).render_as_string(False)


def recreate_database() -> None:
    from sqlalchemy import text

    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine.dispose()


def drop_database() -> None:
    from sqlalchemy import text

    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    engine.dispose()


def pgmlops_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "pgmlops"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pgmlops.cli"]


def base_env(workdir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    env.update(
        PGMLOPS_DATABASE_URL=database_url,
        PGMLOPS_ARTIFACT_ROOT=str(workdir / "artifacts"),
        PGMLOPS_MODEL_NAME=MODEL,
    )
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> Any:
    proc = subprocess.run(
        [*pgmlops_cmd(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pgmlops {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


@dataclass
class Setup:
    workdir: Path
    env: dict[str, str]
    version: int
    train_seconds: float
    records: list[dict[str, Any]]
    ctx: Any = None
    model_version: Any = None


def set_up(workdir: Path) -> Setup:
    from pgmlops.config import Settings
    from pgmlops.domain.demo_data import make_churn
    from pgmlops.services.context import Context

    recreate_database()
    frame = make_churn(20_000, seed=7)
    frame.to_csv(workdir / "churn.csv", index=False)
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame[list(FEATURES)].to_dict("records")
    ]
    env = base_env(workdir, db_url())
    t0 = time.perf_counter()
    trained = run_cli(
        ["train", "--data", "churn.csv", "--target", "Exited", "--json"], env, workdir
    )
    train_s = time.perf_counter() - t0
    promoted = run_cli(["promote", "--version", str(trained["version"]), "--json"], env, workdir)
    if promoted["action"] != "promote":
        raise RuntimeError(f"promotion did not happen: {promoted}")
    settings = Settings(
        database_url=env["PGMLOPS_DATABASE_URL"],
        artifact_root=env["PGMLOPS_ARTIFACT_ROOT"],
        model_name=MODEL,
    )
    ctx = Context(settings)
    version = ctx.registry.get_version(MODEL, trained["version"])
    if not (version.card.onnx.present and "onnx" in version.files):
        raise RuntimeError(f"v{version.version} has no ONNX copy: {version.card.onnx}")
    say(
        f"trained + promoted {MODEL} v{version.version} "
        f"({version.card.estimator.rsplit('.', 1)[-1]},"
        f" ONNX max |diff| {version.card.onnx.max_abs_diff:.2g}) in {train_s:.1f} s"
    )
    return Setup(workdir, env, version.version, train_s, records, ctx, version)


# -- the floor: in-process predict time -------------------------------------------------------


def _median_us(fn, calls: int, warmup: int = 200, chunk: int = 50) -> tuple[float, float]:
    """(wall, thread CPU) µs per call: medians over chunks of `chunk` calls."""
    for _ in range(warmup):
        fn()
    chunk = max(1, min(chunk, calls // 20))
    wall, cpu = [], []
    clock, tclock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(max(1, calls // chunk)):
        t0, c0 = clock(), tclock()
        for _ in range(chunk):
            fn()
        wall.append((clock() - t0) / chunk)
        cpu.append((tclock() - c0) / chunk)
    return statistics.median(wall) / 1000.0, statistics.median(cpu) / 1000.0


def _one_thread(fn: Any, *args: Any) -> Any:
    """fn(*args) with OpenMP/BLAS pools limited to one thread (set once: it costs ms)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def floor(setup: Setup, scale: float) -> dict[str, float]:
    import pandas as pd

    from pgmlops.domain.schema import coerce_features
    from pgmlops.services.inference import onnx_row_feeds
    from pgmlops.services.prediction import predict_records
    from pgmlops.services.promotion import version_engine
    from pgmlops.services.serving import load_version

    ctx, version = setup.ctx, setup.model_version
    serving = ctx.settings.serving
    loaded = load_version(ctx, version)
    if loaded.engine.name != "onnx":
        raise RuntimeError(f"served engine is {loaded.engine.name}, expected onnx")
    payload = orjson.loads(orjson.dumps(setup.records[0]))  # exactly as a request body parses
    n = lambda k: max(200, int(k * scale))  # noqa: E731

    def server_path() -> None:
        rows = [loaded.single.validate_python(payload).__dict__]
        predict_records(loaded, rows, serving, request_id=None, started=time.perf_counter())

    row = loaded.single.validate_python(payload).__dict__
    schema = loaded.card.feature_schema
    session = loaded.engine.session
    outputs = [o.name for o in session.get_outputs()]
    out_name = "probabilities" if "probabilities" in outputs else outputs[-1]
    feeds = onnx_row_feeds(schema, row)
    pipe_engine = version_engine(ctx, version)
    frame = coerce_features(pd.DataFrame([setup.records[0]]), schema)
    pipeline = pipe_engine.pipeline

    result = {
        "server_path_us": _median_us(server_path, n(20_000)),
        "validate_us": _median_us(lambda: loaded.single.validate_python(payload), n(20_000)),
        "predict_records_us": _median_us(
            lambda: predict_records(
                loaded, [row], serving, request_id=None, started=time.perf_counter()
            ),
            n(20_000),
        ),
        "engine_predict_one_us": _median_us(lambda: loaded.engine.predict_one(row), n(20_000)),
        "onnx_session_run_us": _median_us(lambda: session.run([out_name], feeds), n(50_000)),
        "sklearn_predict_proba_us": _median_us(lambda: pipeline.predict_proba(frame), n(2_000), 20),
        "sklearn_predict_proba_1t_us": _one_thread(
            _median_us, lambda: pipeline.predict_proba(frame), n(2_000), 20
        ),
        "pipeline_engine_predict_one_us": _median_us(
            lambda: pipe_engine.predict_one(row), n(1_000), 20
        ),
    }
    out: dict[str, Any] = {k: round(v[0], 2) for k, v in result.items()}
    out.update({k.replace("_us", "_cpu_us"): round(v[1], 2) for k, v in result.items()})
    onnx_p = float(loaded.engine.predict_one(row)[1])
    skl_p = float(pipeline.predict_proba(frame)[0, 1])
    out["onnx_vs_sklearn_abs_diff"] = abs(onnx_p - skl_p)
    return out


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    """One server under test."""

    key: str
    label: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    path: str
    ready_path: str
    body: bytes
    workers: int
    logging: bool | None = None  # pgmlops only: logging to PostgreSQL on or off
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = self.cwd / f"{self.key}.log"
        self.process = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        assert self.process and self.log_path
        deadline = time.monotonic() + timeout
        ok = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.key} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + self.ready_path, timeout=2)
                ok = ok + 1 if r.status_code == 200 else 0
            except httpx.HTTPError:
                ok = 0
            if ok >= 10 and self._workers_loaded():
                return
            time.sleep(0.2 if ok == 0 else 0.02)
        raise RuntimeError(f"{self.key} not ready:\n{self.log_path.read_text()[-3000:]}")

    def _workers_loaded(self) -> bool:
        if self.logging is None:  # MLflow: /ping answers once a worker has the model
            return True
        pids = set()
        for line in self.log_path.read_text(errors="replace").splitlines():  # type: ignore[union-attr]
            if '"serving ' in line and " with " in line:
                with contextlib.suppress(ValueError):
                    pids.add(json.loads(line).get("pid"))
        return len(pids) >= self.workers

    def pids(self) -> list[int]:
        assert self.process
        return tree(self.process.pid)

    def stop(self) -> None:
        if not self.process or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def pgmlops_target(
    setup: Setup,
    *,
    workers: int,
    logging: bool,
    prefix: str = "pgmlops",
    writer: str | None = None,
) -> Target:
    key = f"{prefix}_{'on' if logging else 'off'}_{workers}w"
    env = dict(setup.env)
    env["PGMLOPS_SERVING__SPILL_DIR"] = str(setup.workdir / f"spill-{key}")
    if not logging:
        env["PGMLOPS_SERVING__LOG_PREDICTIONS"] = "false"
    if writer:
        env["PGMLOPS_SERVING__LOG_WRITER"] = writer
    if workers > 1:
        # What `pgmlops serve` does itself for >1 worker; here the folder is ours to delete.
        prom = setup.workdir / f"prom-{key}"
        prom.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    port = free_port()
    return Target(
        key=key,
        label=f"pgmlops, {workers} worker{'s' if workers > 1 else ''}, logging "
        + ("on (PostgreSQL)" if logging else "off")
        + (f", log_writer: {writer}" if writer else ""),
        cmd=[*pgmlops_cmd(), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=setup.workdir,
        port=port,
        path="/predict",
        ready_path="/ready",
        body=orjson.dumps(setup.records[0]),
        workers=workers,
        logging=logging,
    )


def baseline_target(setup: Setup, src: Path, *, workers: int) -> Target:
    """The logging-on server run from another checkout's code (PYTHONPATH), same everything else."""
    t = pgmlops_target(setup, workers=workers, logging=True, prefix="baseline")
    t.label = f"{t.label} -- baseline code from {src}"
    t.env["PYTHONPATH"] = str(src.resolve())
    return t


def bare_target(setup: Setup, workers: int = 2) -> Target:
    """bench/bare_app.py: pydantic + onnxruntime in FastAPI, nothing else (issue 3's ceiling)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(BENCH),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return Target(
        key=f"bare_{workers}w",
        label=f"ceiling: bare FastAPI + pydantic + onnxruntime (bench/bare_app.py), {workers} "
        "workers",
        cmd=cmd,
        env=dict(setup.env),
        cwd=setup.workdir,
        port=port,
        path="/predict",
        ready_path="/ready",
        body=orjson.dumps(setup.records[0]),
        workers=workers,
    )


def has_logging_switch() -> bool:
    from pgmlops.config import ServingConfig

    if "log_predictions" not in ServingConfig.model_fields:
        return False
    src = (ROOT / "src/pgmlops/api/predict_routes.py").read_text()
    return "log_predictions" in src


# -- MLflow ------------------------------------------------------------------------------------

_MLFLOW_SAVE = textwrap.dedent(
    """
    import json, sys, joblib, mlflow, mlflow.sklearn, skops.io
    pipe = joblib.load(sys.argv[1])
    # We fitted this pipeline ourselves: trust exactly the types skops reports for it
    # (numpy.dtype, and HistGradientBoosting's TreePredictor).
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
    mlflow.sklearn.save_model(
        pipe, sys.argv[2], skops_trusted_types=trusted, pyfunc_predict_fn="predict_proba"
    )
    print(json.dumps(trusted))
    print(mlflow.__version__)
    """
)


def mlflow_target(setup: Setup, workers: int = 2) -> tuple[Target, str]:
    import joblib

    from pgmlops.services.promotion import version_engine

    py = MLFLOW_VENV / "bin/python"
    if not py.exists():
        raise RuntimeError(f"{py} missing: see the module docstring for how to make it")
    pipe = version_engine(setup.ctx, setup.model_version).pipeline  # sha256-checked load
    pkl = setup.workdir / "pipeline.joblib"
    joblib.dump(pipe, pkl)
    model_dir = setup.workdir / "mlflow-model"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGMLOPS_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}:{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"file://{setup.workdir / 'mlruns'}"
    out = subprocess.run(
        [str(py), "-c", _MLFLOW_SAVE, str(pkl), str(model_dir)],
        env=env,
        cwd=setup.workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"mlflow save_model failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    *_, trusted, mlflow_version = out.stdout.strip().splitlines()
    say(f"MLflow {mlflow_version} model saved; skops types trusted: {trusted}")
    port = free_port()
    cmd = [
        str(MLFLOW_VENV / "bin/mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
    ]
    target = Target(
        key=f"mlflow_{workers}w",
        label=f"MLflow {mlflow_version} `mlflow models serve`, {workers} workers",
        cmd=cmd,
        env=env,
        cwd=setup.workdir,
        port=port,
        path="/invocations",
        ready_path="/ping",
        body=orjson.dumps({"dataframe_records": [setup.records[0]]}),
        workers=workers,
    )
    return target, mlflow_version


# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def wrk(target: Target, duration: float, connections: int) -> dict[str, Any]:
    env = {**os.environ, "WRK_BODY": target.body.decode()}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        target.url + target.path,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}\n{out.stdout}")
    return parse_wrk(out.stdout)


def parse_wrk(text: str) -> dict[str, Any]:
    res: dict[str, Any] = {"raw": text}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        res[f"p{pct}_ms"] = round(_ms(value, unit), 3)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


def wrk_rate(target: Target, rate: float, duration: float, connections: int) -> dict[str, Any]:
    """wrk at a constant total rate (bench/wrk_rate.lua): C-timed latency from the send."""
    env = {**os.environ, "WRK_BODY": target.body.decode(), "WRK_RATE": f"{rate:.3f}"}
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
        "-s", str(LUA_RATE), target.url + target.path,
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}\n{out.stdout}")
    r = parse_wrk(out.stdout)
    r["target_rps"] = round(rate, 1)
    return r


class Quietness:
    """Repeat a measurement that other processes disturbed, within a time budget.

    A run counts when processes other than the server, the load generator and PostgreSQL used
    at most `max_other` cores during it; otherwise it is repeated (after waiting up to 60 s
    for a quiet moment), at most `attempts` times, and the quietest attempt is kept.
    """

    def __init__(self, max_other: float, attempts: int, budget_s: float) -> None:
        self.max_other = max_other
        self.attempts = attempts
        self.deadline = time.monotonic() + budget_s
        self.repeated = 0
        self.noisy: list[str] = []

    def run(self, fn: Any, what: str) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        for attempt in range(1, self.attempts + 1):
            r = fn()
            r["attempts"] = attempt
            if best is None or r["other_cores"] < best["other_cores"]:
                best = r
            if r["other_cores"] <= self.max_other:
                break
            if attempt == self.attempts or time.monotonic() > self.deadline:
                self.noisy.append(f"{what} (other {best['other_cores']} cores)")
                break
            self.repeated += 1
            say(f"{what}: other processes used {r['other_cores']} cores; repeating")
            wait_quiet(60, self.max_other)
        assert best is not None
        return best


# -- prediction-log rows ----------------------------------------------------------------------


class RowCounter:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        from pgmlops.store.db import normalize_url

        self.engine = create_engine(normalize_url(url))

    def count(self) -> int:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        deadline = time.monotonic() + 120
        while True:  # ride out a PostgreSQL restart by someone else on a shared machine
            try:
                with self.engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def stable(self, quiet_s: float = 1.5, limit_s: float = 60) -> int:
        """The row count once it has not moved for quiet_s (the writer flushes every 0.5 s)."""
        deadline = time.monotonic() + limit_s
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return last

    def close(self) -> None:
        self.engine.dispose()


# -- open-loop load at a fixed rate -----------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _open_loop(
    port: int, request: bytes, rate: float, duration: float, connections: int
) -> dict[str, Any]:
    period = connections / rate
    start = time.perf_counter() + 0.2
    end = start + duration
    from_schedule: list[float] = []
    from_send: list[float] = []
    late_sends: list[float] = []
    errors = 0

    async def conn(i: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        k = 0
        offset = i * period / connections
        while True:
            due = start + offset + k * period
            if due >= end:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            sent = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            done = time.perf_counter()
            from_schedule.append(done - due)
            from_send.append(done - sent)
            late_sends.append(sent - due)
            if status != 200:
                errors += 1
            k += 1
        writer.close()

    await asyncio.gather(*(conn(i) for i in range(connections)))
    elapsed = time.perf_counter() - start

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0, 3)

    return {
        "target_rps": round(rate, 1),
        "achieved_rps": round(len(from_send) / elapsed, 1),
        "requests": len(from_send),
        "errors": errors,
        "p50_ms": pct(from_send, 0.50),
        "p99_ms": pct(from_send, 0.99),
        "p999_ms": pct(from_send, 0.999),
        "p50_sched_ms": pct(from_schedule, 0.50),
        "p99_sched_ms": pct(from_schedule, 0.99),
        "p99_send_lateness_ms": pct(late_sends, 0.99),
    }


def open_loop(target: Target, rate: float, duration: float, connections: int) -> dict[str, Any]:
    request = (
        f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(target.body)}\r\n\r\n"
    ).encode() + target.body
    coro = _open_loop(target.port, request, rate, duration, connections)
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- 10,000-record batch ------------------------------------------------------------------------


def batch(target: Target, records: list[dict], repeats: int, counter: RowCounter) -> dict[str, Any]:
    body = orjson.dumps(records)
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(repeats + 1):
            counter.stable()  # the previous batch's log rows are written: time one batch alone
            t0 = time.perf_counter()
            r = client.post(
                target.url + "/predict", content=body, headers={"Content-Type": "application/json"}
            )
            data = orjson.loads(r.content)
            wall = time.perf_counter() - t0
            if r.status_code != 200 or len(data["predictions"]) != len(records):
                raise RuntimeError(f"batch answered {r.status_code}: {r.text[:300]}")
            if i:  # the first one warms up
                times.append(wall * 1000.0)
    return {
        "records": len(records),
        "body_bytes": len(body),
        "times_ms": [round(t, 1) for t in times],
        "median_ms": round(statistics.median(times), 1),
    }


# -- report -------------------------------------------------------------------------------------


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(t: Target) -> dict[str, Any]:
    return {
        "label": t.label,
        "writer": t.env.get("PGMLOPS_SERVING__LOG_WRITER", "default"),
        "rps_runs": [round(r["rps"], 1) for r in t.runs],
        "rps": round(_med(t.runs, "rps"), 1),
        "p50_ms": round(_med(t.runs, "p50_ms"), 3),
        "p99_ms": round(_med(t.runs, "p99_ms"), 3),
        "requests": sum(r["requests"] for r in t.runs),
        "non_2xx": sum(r["non_2xx"] + r["socket_errors"] for r in t.runs),
        "rows_logged": sum(r.get("rows", 0) for r in t.runs) if t.logging is not None else None,
        "server_cores": round(_med(t.runs, "server_cores"), 2),
        "server_cpu_us": round(_med(t.runs, "server_cpu_us"), 1),
        "serving_cpu_us_runs": [r.get("serving_cpu_us") for r in t.runs],
        "log_process_cpu_us": round(_med(t.runs, "log_process_cpu_us"), 1),
        "p99_ms_runs": [r.get("p99_ms") for r in t.runs],
        "loadgen_cores": round(_med(t.runs, "loadgen_cores"), 2),
        "postgres_cores": round(_med(t.runs, "postgres_cores"), 2),
        "other_cores": round(_med(t.runs, "other_cores"), 2),
    }


FLOOR_ROWS = (
    ("server_path", "**server path**: pydantic record model + `predict_records` (ONNX)"),
    ("validate", "├ pydantic validation of one record"),
    ("predict_records", "├ `predict_records` (feeds, session.run, response item, log record)"),
    ("engine_predict_one", "└ `OnnxEngine.predict_one` alone (feeds, session.run, outputs)"),
    ("onnx_session_run", "**raw onnxruntime** `session.run` on one row (feeds prebuilt)"),
    ("sklearn_predict_proba", "**scikit-learn** `pipeline.predict_proba` on a one-row DataFrame"),
    ("sklearn_predict_proba_1t", "└ the same with OpenMP limited to 1 thread (threadpoolctl)"),
    ("pipeline_engine_predict_one", "`PipelineEngine.predict_one` (DataFrame + coerce + predict)"),
)


def markdown(res: dict[str, Any]) -> str:
    m, fl, s = res["machine"], res["floor"], res["servers"]
    lines = [
        "# Serving benchmark",
        "",
        f"Run {res['started']} with `{res['command']}` "
        f"({res['duration_s']:g} s per wrk run, {res['runs']} runs each, "
        f"`wrk -t1 -c{res['connections']} --latency`, configurations interleaved per round).",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; pgmlops {m['pgmlops']}, scikit-learn {m['scikit-learn']}, "
        f"onnxruntime {m['onnxruntime']}, {m['wrk']}. Load generator, servers and PostgreSQL 15 "
        "share the same cores. Load average at start: "
        f"{' '.join(m['loadavg_at_start'])}; idle check before measuring: "
        f"{res['quiet_cores']} cores busy.",
        "",
        f"Model: demo churn, 20,000 rows (seed 7), {res['estimator']}, v{res['version']}, "
        f"served with onnxruntime (ONNX copy validated at training).",
        "",
        "## Floor: in-process predict time of one record (median of many calls)",
        "",
        "Wall time and this thread's CPU time per call, medians over chunks of calls. CPU time "
        "is the steadier figure when other work shares the cores.",
        "",
        "| path | wall µs per record | CPU µs per record |",
        "| --- | ---: | ---: |",
        *[f"| {label} | {fl[key + '_us']} | {fl[key + '_cpu_us']} |" for key, label in FLOOR_ROWS],
        "",
        f"ONNX vs scikit-learn probability on that record: |diff| = "
        f"{fl['onnx_vs_sklearn_abs_diff']:.2g}.",
        "",
        "## Single-record throughput and latency (wrk, closed loop, 16 connections)",
        "",
        "| server | req/s (median) | runs | p50 ms | p99 ms | errors | rows logged / "
        "requests | server CPU µs/req | server cores | wrk cores | postgres cores | other cores |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in s.values():
        logged = "—"
        if v["rows_logged"] is not None:
            logged = f"{v['rows_logged']:,} / {v['requests']:,}"
        runs = ", ".join(f"{x:,.0f}" for x in v["rps_runs"])
        lines.append(
            f"| {v['label']} | **{v['rps']:,.0f}** | {runs} | {v['p50_ms']:.2f} | "
            f"{v['p99_ms']:.2f} | {v['non_2xx']} | {logged} | {v['server_cpu_us']:,.0f} | "
            f"{v['server_cores']} | {v['loadgen_cores']} | {v['postgres_cores']} | "
            f"{v['other_cores']} |"
        )
    lines += [
        "",
        "`rows logged`: growth of the `predictions` table during the measured runs (after the "
        "writer's last flush) against the requests wrk completed. `server CPU µs/req`: CPU "
        "time of the server's processes divided by requests served (median of runs) -- the "
        "figure least disturbed by other work. `other cores`: CPU used on this machine by "
        "processes that are neither the server, wrk nor PostgreSQL (background noise on a "
        "shared machine); medians of runs.",
        "",
    ]
    nz = res.get("noise")
    if nz:
        lines += [
            f"Shared machine: a run during which other processes used more than "
            f"{nz['max_other_cores']} cores was repeated (quietest attempt kept); "
            f"{nz['repeated_runs']} repeats were needed; runs still above the limit: "
            f"{', '.join(nz['still_noisy']) or 'none'}.",
            "",
        ]
    if res.get("logging_note"):
        lines += [res["logging_note"], ""]
    hp = res.get("half_peak")
    if hp:
        lines += [
            "## Latency at half of the 2-worker peak (open loop, constant rate)",
            "",
            "Load generator: `serve_bench.py`'s own asyncio (uvloop) client, 16 keep-alive "
            "connections, each sending on a fixed schedule (wrk2 style), "
            f"{res['duration_s']:g} s per run, {len(hp['runs'])} runs; latency measured from the "
            "send, and from the scheduled time (corrects coordinated omission; includes the ~1 ms "
            "timer granularity of the event loop).",
            "",
            "| target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | p99 from schedule ms "
            "| errors | generator cores |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in hp["runs"]:
            lines.append(
                f"| {r['target_rps']:,.0f} | {r['achieved_rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['p99_sched_ms']:.2f} | "
                f"{r['errors']} | {r['loadgen_cores']} |"
            )
        lines += [
            f"| **median** | | **{hp['p50_ms']:.2f}** | **{hp['p99_ms']:.2f}** | | "
            f"**{hp['p99_sched_ms']:.2f}** | | |",
            "",
        ]
    hw = res.get("half_peak_wrk")
    if hw:
        lines += [
            "The same load from `wrk` (C, epoll; bench/wrk_rate.lua): one shared schedule for "
            "the 16 connections, request k due at start + k/rate, a free connection waiting for "
            "the next due time (wrk's millisecond timer); latency measured by wrk from the send.",
            "",
            "| target req/s | achieved req/s | p50 ms | p75 ms | p90 ms | p99 ms | errors | "
            "wrk cores |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in hw["runs"]:
            lines.append(
                f"| {r['target_rps']:,.0f} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p75_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['non_2xx'] + r['socket_errors']} | {r['loadgen_cores']} |"
            )
        lines += [
            f"| **median** | **{hw['rps']:,.0f}** | **{hw['p50_ms']:.2f}** | | | "
            f"**{hw['p99_ms']:.2f}** | | |",
            "",
        ]
    hx = res.get("half_peak_writer")
    if hx:
        lines += [
            f"The same two loads against the 2-worker server with `log_writer: {hx['writer']}`, "
            "each run right after the default server's run of the same round: p99 ms, open "
            "loop "
            + ", ".join(f"{r['p99_ms']:.2f}" for r in hx["open_runs"])
            + f" (**median {hx['p99_ms']:.2f}**); wrk "
            + ", ".join(f"{r['p99_ms']:.2f}" for r in hx["wrk_runs"])
            + f" (**median {hx['p99_wrk_ms']:.2f}**).",
            "",
        ]
    b = res.get("batch")
    if b:
        lines += [
            "## 10,000-record batch, POST /predict, 2 workers, logging on",
            "",
            f"Client-side wall time with httpx (body {b['body_bytes'] / 1e6:.2f} MB pre-encoded, "
            "response parsed, 10,000 predictions checked), each batch after the previous one's "
            f"log rows were written: runs {', '.join(str(t) for t in b['times_ms'])} ms; "
            f"**median {b['median_ms']} ms**.",
            "",
        ]
    lines += ["## Targets (issue 3)", "", "| target | measured | met |", "| --- | --- | --- |"]
    for name, measured, ok in res["targets"]:
        met = "—" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {name} | {measured} | {met} |")
    lines.append("")
    return "\n".join(lines)


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    s = res["servers"]
    out: list[tuple[str, str, bool | None]] = []
    on2 = s.get("pgmlops_on_2w")
    if on2:
        out.append(
            (
                ">= 4,000 req/s, 2 workers, logging on",
                f"{on2['rps']:,.0f} req/s",
                on2["rps"] >= 4000,
            )
        )
    hp, hw = res.get("half_peak"), res.get("half_peak_wrk")
    if hp:
        out.append(
            (
                "p99 < 10 ms at half of peak (asyncio open-loop generator)",
                f"p99 {hp['p99_ms']:.2f} ms at {hp['achieved_rps']:,.0f} req/s "
                f"({hp['p99_sched_ms']:.2f} ms from schedule)",
                hp["p99_ms"] < 10,
            )
        )
    if hw:
        out.append(
            (
                "p99 < 10 ms at half of peak (wrk at a constant rate)",
                f"p99 {hw['p99_ms']:.2f} ms at {hw['rps']:,.0f} req/s",
                hw["p99_ms"] < 10,
            )
        )
    hx = res.get("half_peak_writer")
    if hx:
        out.append(
            (
                f"(context) p99 at half of peak, log_writer: {hx['writer']}, same rounds",
                f"p99 {hx['p99_ms']:.2f} ms (asyncio open loop), {hx['p99_wrk_ms']:.2f} ms (wrk)",
                None,
            )
        )
    for w, prefix in itertools.product((1, 2), ("pgmlops", "writer")):
        on, off = s.get(f"{prefix}_on_{w}w"), s.get(f"pgmlops_off_{w}w")
        if on and off:
            # Issue 11 §4: the on/off ratio of the runs made back to back in the same round
            # (a fast or slow spell of the machine hits both), its median and its worst
            # round; and the serving processes' CPU per request (the logging processes'
            # CPU is counted apart), same-round differences.
            ratios = [a / b for a, b in zip(on["rps_runs"], off["rps_runs"], strict=False)]
            paired, worst = 1 - statistics.median(ratios), 1 - min(ratios)
            cpu_on = [x or 0.0 for x in on["serving_cpu_us_runs"]]
            cpu_off = [x or 0.0 for x in off["serving_cpu_us_runs"]]
            extra = [a - b for a, b in zip(cpu_on, cpu_off, strict=False)]
            name = f"{w} worker{'s' if w > 1 else ''}"
            if prefix != "pgmlops":
                name += f", log_writer: {on['writer']}"
            out.append(
                (
                    f"logging costs <= 8% of throughput ({name}, same-round on/off ratio)",
                    f"{paired:.1%} by the median of same-round ratios (rounds: "
                    + ", ".join(f"{1 - r:.1%}" for r in ratios)
                    + f"; worst {worst:.1%}); medians {on['rps']:,.0f} on vs "
                    f"{off['rps']:,.0f} off req/s",
                    paired <= 0.08,
                )
            )
            out.append(
                (
                    f"logging costs <= 20 µs of serving-process CPU per request ({name})",
                    f"{statistics.median(extra):+.1f} µs by the median of same-round "
                    "differences (rounds: "
                    + ", ".join(f"{x:+.1f}" for x in extra)
                    + f"); the logging process{'es' if w > 1 else ''} "
                    f"{on['log_process_cpu_us']:.1f} µs/req on top",
                    statistics.median(extra) <= 20,
                )
            )
    for w in (1, 2):
        ours, base = s.get(f"pgmlops_on_{w}w"), s.get(f"baseline_on_{w}w")
        if ours and base:
            paired = statistics.median(
                a / b for a, b in zip(ours["rps_runs"], base["rps_runs"], strict=False)
            )
            out.append(
                (
                    f"(context) this code vs the baseline code, {w} worker{'s' if w > 1 else ''}",
                    f"{ours['rps']:,.0f} vs {base['rps']:,.0f} req/s ({paired - 1:+.1%} by "
                    f"same-round ratios), p99 {ours['p99_ms']:.2f} vs {base['p99_ms']:.2f} ms, "
                    f"CPU {ours['server_cpu_us']:,.0f} vs {base['server_cpu_us']:,.0f} µs/req",
                    None,
                )
            )
    bare = s.get("bare_2w")
    if on2 and bare:
        out.append(
            (
                "(context) share of the bare FastAPI + onnxruntime ceiling, 2 workers",
                f"{on2['rps'] / bare['rps']:.0%} ({on2['rps']:,.0f} vs {bare['rps']:,.0f} req/s; "
                f"CPU {on2['server_cpu_us']:,.0f} vs {bare['server_cpu_us']:,.0f} µs/req)",
                None,
            )
        )
    ml = s.get("mlflow_2w")
    if on2 and ml:
        ratio = on2["rps"] / ml["rps"]
        out.append(
            (
                ">= 20x MLflow scoring server (2 workers each)",
                f"{ratio:.1f}x ({on2['rps']:,.0f} vs {ml['rps']:,.0f} req/s)",
                ratio >= 20,
            )
        )
    b = res.get("batch")
    if b:
        out.append(("10,000-record batch < 150 ms", f"{b['median_ms']} ms", b["median_ms"] < 150))
    return out


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--batch-repeats", type=int, default=5)
    ap.add_argument("--floor-scale", type=float, default=1.0, help="scale the floor's call counts")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="max s to wait for an idle box")
    ap.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="repeat a run when other processes used more cores than this during it",
    )
    ap.add_argument("--max-attempts", type=int, default=4, help="per run, see --max-other")
    ap.add_argument("--retry-budget", type=float, default=1800, help="s of repeating, at most")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the database and temp dir")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve.md")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="also serve (logging on) from this other checkout's src folder, e.g. main's, in "
        "the same interleaved rounds: a before/after comparison on one machine, one database",
    )
    ap.add_argument(
        "--also-writer",
        choices=("process", "thread"),
        help="also serve (logging on) with this `serving.log_writer`, in the same interleaved "
        "rounds, each compared with the same logging-off server",
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    res: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/serve_bench.py " + " ".join(sys.argv[1:]),
        "duration_s": args.duration,
        "runs": args.runs,
        "connections": args.connections,
        "machine": machine(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-serve-bench-"))
    servers: list[Target] = []
    counter: RowCounter | None = None
    try:
        setup = set_up(workdir)
        res["version"] = setup.version
        res["estimator"] = setup.model_version.card.estimator.rsplit(".", 1)[-1]
        res["train_cli_seconds"] = round(setup.train_seconds, 1)

        say("floor: in-process predict time")
        res["quiet_cores"] = wait_quiet(args.quiet_wait)
        res["floor"] = floor(setup, args.floor_scale)
        say(f"floor: {res['floor']}")

        switch = has_logging_switch()
        if switch:
            res["logging_note"] = (
                "Logging off = the same server with `PGMLOPS_SERVING__LOG_PREDICTIONS=false` "
                "(`serving.log_predictions: false`); its rows-logged column must stay at 0."
            )
            offs = [pgmlops_target(setup, workers=w, logging=False) for w in (1, 2)]
        else:
            # No switch: the only outside difference we can make is the database behind it.
            res["logging_note"] = (
                "**There is no `serving.log_predictions` setting**: 'logging off' here is the "
                "same server logging to SQLite instead of PostgreSQL. A "
                "`serving.log_predictions: false` switch is needed to measure the real cost."
            )
            offs = []
            for w in (1, 2):
                t = pgmlops_target(setup, workers=w, logging=False)
                t.env["PGMLOPS_DATABASE_URL"] = f"sqlite:///{workdir / 'off.db'}"
                t.label = t.label.replace("logging off", "logging to SQLite")
                offs.append(t)
        servers = [
            pgmlops_target(setup, workers=1, logging=True),
            pgmlops_target(setup, workers=2, logging=True),
            *offs,
            bare_target(setup, workers=2),
        ]
        if not switch:
            # The SQLite copy needs the same registry: train there too (same data, same seed).
            senv = dict(setup.env, PGMLOPS_DATABASE_URL=offs[0].env["PGMLOPS_DATABASE_URL"])
            senv["PGMLOPS_ARTIFACT_ROOT"] = str(workdir / "artifacts-sqlite")
            run_cli(["train", "--data", "churn.csv", "--target", "Exited", "--json"], senv, workdir)
            run_cli(["promote", "--json"], senv, workdir)
            for t in offs:
                t.env["PGMLOPS_ARTIFACT_ROOT"] = senv["PGMLOPS_ARTIFACT_ROOT"]
        if args.also_writer:
            servers += [
                pgmlops_target(
                    setup, workers=w, logging=True, prefix="writer", writer=args.also_writer
                )
                for w in (1, 2)
            ]
        if args.baseline_src:
            servers += [baseline_target(setup, args.baseline_src, workers=w) for w in (1, 2)]
        if not args.no_mlflow:
            ml, res["mlflow_version"] = mlflow_target(setup)
            servers.append(ml)

        for t in servers:
            say(f"starting {t.key}: {' '.join(t.cmd[-6:])}")
            t.start()
        for t in servers:
            t.wait_ready()
        say("all servers ready")

        # Same record answered alike by pgmlops and MLflow.
        pg_answer = httpx.post(
            servers[1].url + "/predict",
            content=servers[1].body,
            headers={"Content-Type": "application/json"},
        ).json()
        res["sample_answer"] = pg_answer
        if not args.no_mlflow:
            ml_answer = httpx.post(
                ml.url + "/invocations",
                content=ml.body,
                headers={"Content-Type": "application/json"},
            ).json()
            res["mlflow_answer"] = ml_answer
            p_ml = ml_answer["predictions"][0][1]
            res["mlflow_prob_abs_diff"] = abs(p_ml - pg_answer["probability"])
            say(f"probability pgmlops {pg_answer['probability']:.6f} vs MLflow {p_ml:.6f}")

        counter = RowCounter(setup.env["PGMLOPS_DATABASE_URL"])
        say("warm-up: 3 s of wrk per server")
        for t in servers:
            w = wrk(t, 3, args.connections)
            if w["non_2xx"] or w["socket_errors"]:
                raise RuntimeError(f"{t.key} warm-up errors:\n{w['raw']}")
        res["quiet_cores_before_load"] = wait_quiet(args.quiet_wait)
        quiet = Quietness(args.max_other, args.max_attempts, args.retry_budget)
        for rnd in range(args.runs):
            for t in servers:

                def one_run(t: Target = t) -> dict[str, Any]:
                    before = counter.stable() if t.logging is not None else None
                    win = CpuWindow(t.pids())
                    logp = log_process_pids(win.target_pids)
                    log0 = cpu_of(logp)
                    r = wrk(t, args.duration, args.connections)
                    r.update(win.close())
                    n = max(1, r["requests"])
                    r["server_cpu_us"] = round(r["server_cores"] * r["wall_s"] / n * 1e6, 1)
                    # The logging processes' share, and what is left: the serving processes.
                    r["log_process_cpu_us"] = round((cpu_of(logp) - log0) / n * 1e6, 1)
                    r["serving_cpu_us"] = round(r["server_cpu_us"] - r["log_process_cpu_us"], 1)
                    if before is not None:
                        r["rows"] = counter.stable() - before
                    return r

                r = quiet.run(one_run, t.key)
                t.runs.append(r)
                rows = f", rows +{r['rows']}" if "rows" in r else ""
                say(
                    f"round {rnd + 1} {t.key}: {r['rps']:,.0f} req/s p50 {r.get('p50_ms')} ms "
                    f"p99 {r.get('p99_ms')} ms, non-2xx {r['non_2xx']}{rows}; cores: server "
                    f"{r['server_cores']} wrk {r['loadgen_cores']} pg {r['postgres_cores']} "
                    f"other {r['other_cores']}"
                )
        res["servers"] = {t.key: summarize(t) for t in servers}
        for t in servers:
            s = res["servers"][t.key]
            if t.logging and s["rows_logged"] < s["requests"]:
                raise RuntimeError(f"{t.key}: {s['rows_logged']} rows for {s['requests']} requests")
            if t.logging is False and switch and s["rows_logged"]:
                raise RuntimeError(f"{t.key}: logging off but {s['rows_logged']} rows were written")

        on2 = next(t for t in servers if t.key == "pgmlops_on_2w")
        peak = res["servers"]["pgmlops_on_2w"]["rps"]
        say(f"half of peak: {peak / 2:,.0f} req/s open loop against {on2.key}")

        # With --also-writer, that writer's 2-worker server takes the same load in the same
        # rounds, right after the default one: p99 at half load of both writers.
        other2 = next((t for t in servers if t.key == "writer_on_2w"), None)
        other_runs: dict[str, list[dict[str, Any]]] = {"open": [], "wrk": []}

        def at_half_peak(load: Any, what: str, kind: str) -> list[dict[str, Any]]:
            runs = []
            for _ in range(args.runs):
                for target in (on2, other2):
                    if target is None:
                        continue

                    def one(target: Any = target) -> dict[str, Any]:
                        counter.stable()
                        win = CpuWindow(target.pids())
                        r = load(target, peak / 2, args.duration, args.connections)
                        r.update(win.close())
                        r.pop("raw", None)
                        return r

                    label = what if target is on2 else f"{what} ({target.key})"
                    r = quiet.run(one, label)
                    (runs if target is on2 else other_runs[kind]).append(r)
                    say(f"{label}: {r}")
            return runs

        hp_runs = at_half_peak(open_loop, "half peak", "open")
        wr_runs = at_half_peak(wrk_rate, "half peak, wrk at a constant rate", "wrk")
        if other2 is not None:
            res["half_peak_writer"] = {
                "writer": other2.env.get("PGMLOPS_SERVING__LOG_WRITER"),
                "open_runs": other_runs["open"],
                "wrk_runs": other_runs["wrk"],
                "p99_ms": statistics.median(r["p99_ms"] for r in other_runs["open"]),
                "p99_wrk_ms": statistics.median(r["p99_ms"] for r in other_runs["wrk"]),
            }
        res["half_peak_wrk"] = {
            "runs": wr_runs,
            "rps": statistics.median(r["rps"] for r in wr_runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in wr_runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in wr_runs),
        }
        res["half_peak"] = {
            "runs": hp_runs,
            "achieved_rps": statistics.median(r["achieved_rps"] for r in hp_runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in hp_runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in hp_runs),
            "p99_sched_ms": statistics.median(r["p99_sched_ms"] for r in hp_runs),
        }

        res["noise"] = {
            "max_other_cores": args.max_other,
            "repeated_runs": quiet.repeated,
            "still_noisy": quiet.noisy,
        }
        say("10,000-record batch")
        res["batch"] = batch(on2, setup.records[:10_000], args.batch_repeats, counter)
        say(f"batch: {res['batch']}")
    finally:
        for t in servers:
            t.stop()
        if counter:
            counter.close()
        if "setup" in locals() and setup.ctx is not None:
            setup.ctx.close()
        if not args.keep:
            drop_database()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir} and database {DB_NAME}")

    res["targets"] = targets(res)
    md = markdown(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    for t in res["servers"].values():
        t.pop("raw", None)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
