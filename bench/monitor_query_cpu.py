"""CPU seconds PostgreSQL spends on the monitor's per-feature cells query, serial and parallel.

Run: ``PGMLOPS_BENCH_ARTIFACTS=DIR python bench/monitor_query_cpu.py --database NAME [--last N]
[--repeats R]`` against a log kept by ``bench/monitor_speed.py --keep`` (same server, which
must be local: the backend's CPU is read from /proc). The query is the one ``pgmlops monitor``
runs, captured from a real ``run_monitor`` call on this checkout (so PYTHONPATH picks the
version measured), then run again on one connection with parallel workers off and with the
server's default, reporting the backend's CPU (user + system) and wall time. Wall time on a
loaded machine says more about the load than the query; the serial CPU is what the query
costs per row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from pgmlops.config import Settings
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.store.monitoring import window_summary

ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class _Captured(Exception):
    """Raised to stop run_monitor once the cells query is captured."""


def capture(database: str, last: int) -> str:
    """The cells query text ``run_monitor`` would send for the newest ``last`` rows."""
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    artifacts = os.environ["PGMLOPS_BENCH_ARTIFACTS"]  # the kept log's model artifacts
    settings = Settings(database_url=url, artifact_root=artifacts, model_name="churn")
    original = window_summary.WindowSummaryStore._cursor
    found: list[str] = []

    class Recorder:
        def __init__(self, cur: Any) -> None:
            self.cur = cur

        def execute(self, query: Any, *args: Any) -> Any:
            text = query.as_string(self.cur.connection) if hasattr(query, "as_string") else query
            # The cells query is the one grouping by feature: "GROUP BY <alias>.f, 2, ...".
            if ".f, 2," in text:
                found.append(text)
                raise _Captured
            return self.cur.execute(query, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cur, name)

    @contextmanager
    def recording(store: Any) -> Any:
        with original(store) as cur:
            yield Recorder(cur)

    window_summary.WindowSummaryStore._cursor = recording  # type: ignore[method-assign]
    ctx = Context(settings)
    try:
        run_monitor(ctx, "churn", last=last)
    except _Captured:
        pass
    finally:
        window_summary.WindowSummaryStore._cursor = original  # type: ignore[method-assign]
        ctx.close()
    if not found:
        raise SystemExit("the cells query was not captured (no churn model in that database?)")
    return found[0]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(database: str, query: str, parallel: bool) -> tuple[float, float]:
    """(CPU seconds of the backend, not of parallel workers; wall seconds)."""
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SET parallel_setup_cost = 0")
        conn.execute("SET parallel_tuple_cost = 0")
        conn.execute("SET enable_sort = off")
        if not parallel:
            conn.execute("SET max_parallel_workers_per_gather = 0")
        cpu, wall = _cpu(pid), time.perf_counter()
        conn.execute(query).fetchall()
        return _cpu(pid) - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--last", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    query = capture(args.database, args.last)
    print(f"load before: {os.getloadavg()[0]:.1f}")
    serial = [measure(args.database, query, False) for _ in range(args.repeats)]
    cpu = statistics.median(c for c, _ in serial)
    wall = statistics.median(w for _, w in serial)
    print(f"serial, --last {args.last:,}: median CPU {cpu:.2f} s, wall {wall:.2f} s")
    print(f"  = {cpu / args.last * 1e6:.1f} µs of CPU a row")
    runs = [measure(args.database, query, True)[1] for _ in range(args.repeats)]
    print(f"parallel (server default workers), wall median {statistics.median(runs):.2f} s")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
