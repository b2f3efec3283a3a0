"""serve_bench.py's machine: its description, and who used its CPU during a measurement."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CLK = os.sysconf("SC_CLK_TCK")
# The benchmark's own PGMLOPS_BENCH_* variables are read before the clearing below.
ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Its own name per run when asked, so two benchmarks on one PostgreSQL do not drop each other.
DB_NAME = os.environ.get("PGMLOPS_BENCH_DB", "pgmlops_bench_serve")

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
