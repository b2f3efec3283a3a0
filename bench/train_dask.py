"""`pgmlops train` single-process vs `--engine dask` (a LocalCluster of 2 workers), by rows.

Run: ``PYTHONPATH=src .venv/bin/python bench/train_dask.py [--rows 1000000 5000000]``.
For each size the demo churn rows (seed 7) are written once (not timed) as one Parquet file
and as a folder of Parquet parts of 250,000 rows; then, as a user runs them, each as a
subprocess against a fresh SQLite database and artifact folder:

- local: ``pgmlops train --data churn.parquet --target Exited --estimator lightgbm --json``
- dask:  the same on the folder with ``--engine dask`` (training.dask_address empty: the run
  starts a LocalCluster of ``training.dask_workers`` = 2 worker processes and closes it).

Both fit LightGBM with its defaults. Every 0.2 s the process tree is sampled: peak RSS of the
driver (the `pgmlops` process) and of each other process in its tree (the Dask nanny and
worker processes), and the peak of the tree's total. Writes bench/results/train-dask.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from serve_bench import machine, machine_busy, say  # noqa: E402

PART_ROWS = 250_000
MB = 1024 * 1024


def write_data(rows: int, top: Path) -> tuple[Path, Path]:
    from pgmlops.domain.demo_data import make_churn

    frame = make_churn(rows, seed=7)
    single = top / f"churn-{rows}.parquet"
    frame.to_parquet(single, index=False)
    parts = top / f"churn-{rows}-parts"
    parts.mkdir()
    for i, start in enumerate(range(0, rows, PART_ROWS)):
        frame.iloc[start : start + PART_ROWS].to_parquet(
            parts / f"part-{i:04d}.parquet", index=False
        )
    return single, parts


class TreeMemory:
    """Peak RSS per process of a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peaks: dict[int, tuple[str, int]] = {}
        self.total_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[1:4])[:60]
                except psutil.Error:
                    continue
                total += rss
                if rss > self.peaks.get(p.pid, ("", 0))[1]:
                    self.peaks[p.pid] = (name, rss)
            self.total_peak = max(self.total_peak, total)
            time.sleep(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        driver = self.peaks.pop(self.root.pid, ("", 0))[1]
        others = sorted((rss for _, rss in self.peaks.values()), reverse=True)
        return {
            "driver_mb": round(driver / MB),
            "other_processes_mb": [round(r / MB) for r in others if r > 50 * MB],
            "tree_total_peak_mb": round(self.total_peak / MB),
        }


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    b0, t0 = machine_busy(), time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    mem = TreeMemory(proc.pid)
    out, err = proc.communicate(timeout=3600)
    wall = time.perf_counter() - t0
    memory = mem.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out}\n{err[-3000:]}")
    summary = json.loads(out)
    return {
        "wall_s": round(wall, 1),
        "in_process_s": summary["seconds"],
        "machine_busy_cores": round((machine_busy() - b0) / wall, 2),
        "roc_auc": round(summary["metrics"]["roc_auc"], 4),
        "onnx": summary["onnx"],
        "onnx_detail": summary.get("onnx_detail"),
        **memory,
    }


def onnx_cell(r: dict) -> str:
    """Whether the run kept an ONNX copy, and on how many holdout rows it was checked."""
    d = r.get("onnx_detail")
    if not d:
        return "-" if r.get("onnx") is None else ("yes" if r["onnx"] else "no")
    if not d["present"]:
        return f"no: {d.get('reason')}"
    rows = d.get("checked_rows")
    return f"yes, max diff {d['max_abs_diff']:.1e}" + (f" on {rows:,} rows" if rows else "")


def write_report(
    args: argparse.Namespace, started: str, m: dict, niceness: int, results: list
) -> None:
    """The results table as Markdown (and JSON) at args.out."""
    lines = [
        "# Training: single process vs a Dask LocalCluster",
        "",
        f"Runs on {started[:10]}, each with the command in its row (PYTHONPATH=src, "
        "niceness as shown).",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Python {m['python']}. "
        "Other helpers' builds and tests shared the machine: the load average at each run's "
        "start and the cores the whole machine kept busy during it are in the table.",
        "",
        "Each run is `pgmlops train --estimator lightgbm --json` as a subprocess (fit, threshold, "
        "holdout evaluation, ONNX export and check, profile, register) on demo churn rows; "
        f"dask: `--engine dask` on Parquet parts of {PART_ROWS:,} rows, a LocalCluster of "
        f"{args.workers} worker processes started and closed by the run. Memory: peak RSS "
        "sampled every 0.2 s; `others` lists every other process of the run's tree above 50 MB "
        "(the Dask workers; the nanny processes stay below).",
        "",
        "| rows | engine | wall s | in-process s | ROC AUC | driver peak MB | others' peak MB | "
        "tree total peak MB | ONNX copy | load at start | machine busy cores | started | "
        "command |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for r in results:
        others = ", ".join(str(x) for x in r["other_processes_mb"]) or "-"
        lines.append(
            f"| {r['rows']:,} | {r['engine']} | {r['wall_s']} | {r['in_process_s']} | "
            f"{r['roc_auc']} | {r['driver_mb']} | {others} | {r['tree_total_peak_mb']} | "
            f"{onnx_cell(r)} | "
            f"{r['load_at_start']} | {r['machine_busy_cores']} | {r.get('at', '')} | "
            f"`{r.get('command', '')}` |"
        )
    md = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engines", nargs="+", default=["local", "dask"], choices=["local", "dask"])
    ap.add_argument(
        "--append", action="store_true", help="keep the runs already in the results JSON"
    )
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "train-dask.md")
    args = ap.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    niceness = os.nice(0)
    command = f"nice -n {niceness} python bench/train_dask.py {' '.join(sys.argv[1:])}".strip()
    results = []
    if args.append and args.out.with_suffix(".json").exists():
        results = json.loads(args.out.with_suffix(".json").read_text())
    top = Path(tempfile.mkdtemp(prefix="pgmlops-train-dask-"))
    try:
        for rows in args.rows:
            say(f"writing {rows:,} rows")
            single, parts = write_data(rows, top)
            for engine, data in (("local", single), ("dask", parts)):
                if engine not in args.engines:
                    continue
                work = top / f"{engine}-{rows}"
                work.mkdir()
                env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
                env.update(
                    PGMLOPS_DATABASE_URL=f"sqlite:///{work / 'pgmlops.db'}",
                    PGMLOPS_ARTIFACT_ROOT=str(work / "artifacts"),
                    PGMLOPS_TRAINING__DASK_WORKERS=str(args.workers),
                )
                cmd = [
                    sys.executable, "-m", "pgmlops.cli", "train", "--data", str(data),
                    "--target", "Exited", "--estimator", "lightgbm", "--engine", engine, "--json",
                ]  # fmt: skip
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                say(f"{engine} on {rows:,} rows (load {load})")
                result = {
                    "rows": rows,
                    "engine": engine,
                    "load_at_start": load,
                    "at": datetime.now(UTC).strftime("%H:%M UTC"),
                    "command": command,
                    **run(cmd, env, work),
                }
                say(str(result))
                results.append(result)
                # Written after every run, so a long 5M run cut short keeps the earlier rows.
                write_report(args, started, m, niceness, results)
            single.unlink()
            shutil.rmtree(parts)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
