"""`pgmlops predict` on 1,000,000 CSV rows into Parquet, logging every row to PostgreSQL.

Run: ``.venv/bin/python bench/batch_predict.py [--rows 1000000] [--runs 3]``
(PostgreSQL at $PGMLOPS_BENCH_POSTGRES_URL, default postgres@127.0.0.1:5432). Sets up like
bench/serve_bench.py in a database of its own (20,000 demo churn rows, ``pgmlops train`` +
``promote``), writes --rows demo churn rows (a different seed) to a CSV, then runs
``pgmlops predict --data rows.csv --out scored.parquet --id-column CustomerId --json`` --runs
times as a child process. Per run: wall time of the whole command (start-up, model load,
scoring, the Parquet file and the prediction-log inserts), the job's own seconds, and the
child's peak RSS (``os.wait4``'s ru_maxrss). Checks every row is written and logged. Targets:
< 30 s and < 1 GB. Writes bench/results/batch.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb
import serve_setup

# Where set_up, db_url and drop_database read it: never the serving benchmark's database.
serve_setup.DB_NAME = "pgmlops_bench_batch"
TARGET_S = 30.0
TARGET_RSS_MB = 1024.0


def machine() -> dict:
    """Cores, CPU model, RAM and load (serve_bench's version also asks for wrk)."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    with open("/proc/meminfo") as fh:
        mem_kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "loadavg_at_start": [f"{x:.1f}" for x in os.getloadavg()],
    }


APP_NAME = "pgmlops-batch-bench"


def _schedstat(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread of pid: (ns on a CPU, ns runnable but waiting for one)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            cpu, wait, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        out[f"{pid}/{task.name}"] = (int(cpu), int(wait))
    return out


class Sampler(threading.Thread):
    """Polls the child's threads and its PostgreSQL backends; keeps each one's last counters.

    The machine is shared: on-CPU time says what the job costs, runqueue wait what the
    other tenants cost it, and the backends' CPU what the database did for it.
    """

    def __init__(self, pid: int, admin_engine: Any) -> None:
        super().__init__(daemon=True)
        self.pid, self.engine = pid, admin_engine
        self.child: dict[str, tuple[int, int]] = {}
        self.backends: dict[str, tuple[int, int]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        from sqlalchemy import text

        query = text("SELECT pid FROM pg_stat_activity WHERE application_name = :a")
        with self.engine.connect() as conn:
            while not self.done.wait(0.2):
                self.child.update(_schedstat(self.pid))
                for (pid,) in conn.execute(query, {"a": APP_NAME}):
                    self.backends.update(_schedstat(pid))

    def totals(self) -> dict[str, float]:
        return {
            "child_cpu_s": round(sum(c for c, _ in self.child.values()) / 1e9, 2),
            "child_runqueue_s": round(sum(w for _, w in self.child.values()) / 1e9, 2),
            "pg_cpu_s": round(sum(c for c, _ in self.backends.values()) / 1e9, 2),
            "pg_runqueue_s": round(sum(w for _, w in self.backends.values()) / 1e9, 2),
        }


def run_once(setup: sb.Setup, data: Path, out: Path, chunk_rows: int | None) -> dict:
    args = [*sb.pgmlops_cmd(), "predict", "--data", str(data), "--out", str(out)]
    args += ["--id-column", "CustomerId", "--json"]
    if chunk_rows:
        args += ["--chunk-rows", str(chunk_rows)]
    env = dict(setup.env)
    # Names the job's database sessions so the sampler can find their backends.
    env["PGMLOPS_DATABASE_URL"] += f"?application_name={APP_NAME}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, cwd=setup.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sampler = Sampler(proc.pid, sb.admin_engine())
    sampler.start()
    # wait4 reports this child's own peak RSS (KiB on Linux), not the benchmark's.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"pgmlops predict failed:\n{stderr.decode()}")
    summary = json.loads(stdout)
    return {
        "wall_s": round(wall, 2),
        "job_s": summary["seconds"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "rows": summary["rows"],
        "written": summary["written"],
        "logged": summary["logged"],
        **sampler.totals(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk-rows", type=int, default=None, help="default: the command's")
    ap.add_argument("--out", type=Path, default=sb.RESULTS / "batch.md")
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be at least 1")

    from pgmlops.domain.demo_data import make_churn
    from pgmlops.store.prediction_log.predictions import PredictionStore

    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-batch-"))
    machine_info = machine()
    setup = sb.set_up(workdir)
    data = workdir / "rows.csv"
    make_churn(args.rows, seed=99).to_csv(data, index=False)
    sb.say(f"{args.rows:,} rows to score: {data.stat().st_size / 1e6:.0f} MB of CSV")
    runs = []
    try:
        store = PredictionStore(setup.ctx.db)
        for k in range(args.runs):
            before = store.count(sb.MODEL)
            out = workdir / f"scored-{k}.parquet"
            run = run_once(setup, data, out, args.chunk_rows)
            import pyarrow.parquet as pq

            in_file = pq.ParquetFile(out).metadata.num_rows
            in_log = store.count(sb.MODEL) - before
            if not in_file == in_log == args.rows:
                raise RuntimeError(f"{in_file} rows in the file, {in_log} logged, {args.rows} read")
            run["load_after"] = f"{os.getloadavg()[0]:.1f}"
            runs.append(run)
            sb.say(
                f"run {k + 1}: {run['wall_s']} s wall ({run['job_s']} s in the job), "
                f"peak RSS {run['peak_rss_mb']} MB, CPU {run['cpu_s']} s"
            )
            out.unlink()
        store.close()
    finally:
        setup.ctx.close()
        sb.drop_database()

    wall = statistics.median(r["wall_s"] for r in runs)
    rss = max(r["peak_rss_mb"] for r in runs)
    lines = [
        "# Batch scoring: `pgmlops predict`, CSV → Parquet, logging to PostgreSQL",
        "",
        f"`python bench/batch_predict.py --rows {args.rows} --runs {args.runs}` "
        f"(niceness {os.nice(0)}), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine_info['nproc']}-core shared VM "
        f"({machine_info['cpu']}, {machine_info['ram_gib']} GiB), load at start "
        f"{' '.join(machine_info['loadavg_at_start'])}.",
        "",
        f"Model: demo churn, {setup.model_version.card.estimator.rsplit('.', 1)[-1]}, served "
        "from its ONNX copy. Every row written to the file and logged (checked).",
        "",
        "CPU s: the pgmlops process (rusage). Sampled from /proc every 0.2 s (the last sample"
        " before exit, so slightly under): its threads' on-CPU and runqueue-wait seconds, and"
        " the same for the PostgreSQL backends serving its sessions.",
        "",
        "| run | wall s | job s | peak RSS MB | CPU s | runqueue wait s | PG backend CPU s "
        "| PG runqueue wait s | load after |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {i + 1} | {r['wall_s']} | {r['job_s']} | {r['peak_rss_mb']} | {r['cpu_s']} "
            f"| {r['child_runqueue_s']} | {r['pg_cpu_s']} | {r['pg_runqueue_s']} "
            f"| {r['load_after']} |"
            for i, r in enumerate(runs)
        ],
        "",
        f"**Median wall {wall} s** (target < {TARGET_S:.0f} s: "
        f"{'met' if wall < TARGET_S else 'MISSED'}); **largest peak RSS {rss} MB** "
        f"(target < {TARGET_RSS_MB:.0f} MB: {'met' if rss < TARGET_RSS_MB else 'MISSED'}).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
