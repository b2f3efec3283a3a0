"""Start and stop a real `pgmlops serve` process for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ADMIN_KEY = "test-admin-key"


def free_port() -> int:
    """A free port from this pytest-xdist worker's own range, below the kernel's ephemeral ones.

    A port from bind(0) may be handed to another worker's bind(0) as soon as it is released,
    and servers bind with SO_REUSEPORT: two test servers would share a port and its requests.
    """
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    low = 20_000 + 3_000 * (index % 4)
    for _ in range(500):
        port = random.randrange(low, low + 3_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {low}-{low + 3_000}")


@dataclass
class Server:
    """A running server process and how to reach it."""

    url: str
    process: subprocess.Popen
    env: dict[str, str]
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": ADMIN_KEY}


def server_env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    env.update(
        PGMLOPS_DATABASE_URL=settings.database_url,
        PGMLOPS_ARTIFACT_ROOT=settings.artifact_root,
        PGMLOPS_MODEL_NAME=settings.model_name,
        PGMLOPS_API_KEY=ADMIN_KEY,
        PGMLOPS_SERVING__RELOAD_POLL_SECONDS="0.5",
        PGMLOPS_SERVING__LOG_FLUSH_SECONDS="0.1",
        PGMLOPS_SERVING__SPILL_DIR=str(Path(settings.artifact_root).parent / "spill"),
    )
    env.update(extra)
    return env


def start_server(
    settings,
    tmp_path: Path,
    *,
    workers: int = 1,
    args: tuple[str, ...] = (),
    cwd: Path | None = None,
    **extra: str,
) -> Server:
    port = free_port()
    env = server_env(settings, **extra)
    log = tmp_path / f"server-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "pgmlops.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *args,
    ]
    process = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200 and (
                _started_workers(log) >= workers
            ):
                return Server(url, process, env, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")


def _started_workers(log: Path) -> int:
    """Workers whose uvicorn finished start-up (each then listens at once)."""
    pids = set()
    for line in log.read_text(errors="replace").splitlines():
        if '"Application startup complete."' in line:
            with contextlib.suppress(ValueError):
                pids.add(json.loads(line)["pid"])
    return len(pids)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
