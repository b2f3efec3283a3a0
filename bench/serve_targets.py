"""serve_bench.py's servers: pgmlops serve, an older build, the bare app and MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from serve_machine import BENCH, ROOT, say, tree
from serve_setup import Setup, pgmlops_cmd

MLFLOW_VENV = BENCH / ".venv-mlflow"

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
