"""End-to-end `pgmlops train` on 100,000 demo rows, and `pgmlops --help` start-up time.

Run: ``.venv/bin/python bench/train_bench.py [--rows 100000] [--runs 3] [--help-runs 10]``.
Each training run is `pgmlops train --data churn.csv --target Exited --json` as a subprocess
(train + evaluate + ONNX export and check + register a candidate) against a fresh SQLite
database and artifact folder in a temp dir, timed wall-clock from the outside; the data file
is written once beforehand and not timed. Reports the median of the runs (and the in-process
`seconds` the command prints, to show the interpreter/import share), the median of
`pgmlops --help` runs, the machine, and the CPU other processes used meanwhile; writes
bench/results/train.md (and train.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from serve_bench import machine, machine_busy, pgmlops_cmd, say  # noqa: E402


def clean_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    env["PGMLOPS_DATABASE_URL"] = f"sqlite:///{workdir / 'pgmlops.db'}"
    env["PGMLOPS_ARTIFACT_ROOT"] = str(workdir / "artifacts")
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, str]:
    b0, t0 = machine_busy(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    timed.busy_cores = (machine_busy() - b0) / wall  # type: ignore[attr-defined]
    return wall, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--help-runs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "train.md")
    args = ap.parse_args()

    from pgmlops.domain.demo_data import make_churn

    res: dict = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/train_bench.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "rows": args.rows,
    }
    top = Path(tempfile.mkdtemp(prefix="pgmlops-train-bench-"))
    try:
        data = top / "churn.csv"
        make_churn(args.rows, seed=7).to_csv(data, index=False)
        runs = []
        for i in range(args.runs):
            work = top / f"run{i}"
            work.mkdir()
            cmd = [*pgmlops_cmd(), "train", "--data", str(data), "--target", "Exited", "--json"]
            wall, out = timed(cmd, clean_env(work), work, timeout=1800)
            summary = json.loads(out)
            run = {
                "wall_s": round(wall, 2),
                "in_process_s": summary["seconds"],
                "machine_busy_cores": round(timed.busy_cores, 2),  # type: ignore[attr-defined]
                "version": summary["version"],
                "onnx": summary["onnx"],
                "roc_auc": round(summary["metrics"]["roc_auc"], 4),
                "estimator": summary["estimator"].rsplit(".", 1)[-1],
            }
            runs.append(run)
            say(f"train run {i + 1}: {run}")
        helps = []
        for _ in range(args.help_runs):
            wall, _out = timed([*pgmlops_cmd(), "--help"], clean_env(top), top, timeout=120)
            helps.append(round(wall * 1000, 1))
        say(f"--help: {helps} ms")
    finally:
        shutil.rmtree(top, ignore_errors=True)

    res["train_runs"] = runs
    res["train_median_s"] = statistics.median(r["wall_s"] for r in runs)
    res["train_in_process_median_s"] = statistics.median(r["in_process_s"] for r in runs)
    res["help_ms"] = helps
    res["help_median_ms"] = statistics.median(helps)
    m = res["machine"]
    lines = [
        "# Training benchmark",
        "",
        f"Run {res['started']} with `{res['command']}`.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; pgmlops {m['pgmlops']}, scikit-learn {m['scikit-learn']}, "
        f"onnxruntime {m['onnxruntime']}. Load average at start: "
        f"{' '.join(m['loadavg_at_start'])}.",
        "",
        f"## `pgmlops train` on {args.rows:,} demo churn rows (seed 7), SQLite, end to end",
        "",
        "Subprocess wall time: start-up, read CSV, profile, split, fit, tune threshold, evaluate, "
        "export + check ONNX, store artifacts, register. `in-process` is the `seconds` the "
        "command reports itself.",
        "",
        "| run | wall s | in-process s | estimator | ROC AUC | ONNX | machine busy cores |",
        "| ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['wall_s']} | {r['in_process_s']} | {r['estimator']} | {r['roc_auc']} | "
            f"{'yes' if r['onnx'] else 'no'} | {r['machine_busy_cores']} |"
        )
    lines += [
        f"| **median** | **{res['train_median_s']}** | "
        f"{res['train_in_process_median_s']} | | | | |",
        "",
        "`machine busy cores` is the CPU the whole machine used during the run (of "
        f"{m['nproc']}): above what one training needs means other work shared the cores.",
        "",
        "## `pgmlops --help` start-up",
        "",
        f"{args.help_runs} runs: {', '.join(str(h) for h in helps)} ms; "
        f"**median {res['help_median_ms']} ms**.",
        "",
    ]
    md = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
