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
import json
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from serve_floor import floor
from serve_load import Quietness, RowCounter, batch, open_loop, wrk, wrk_rate
from serve_machine import (
    CLK,
    RESULTS,
    CpuWindow,
    cpu_of,
    log_process_pids,
    machine,
    machine_busy,
    say,
    wait_quiet,
)
from serve_report import markdown, summarize, targets
from serve_setup import (
    DB_NAME,
    FEATURES,
    MODEL,
    Setup,
    admin_engine,
    base_env,
    db_url,
    drop_database,
    pgmlops_cmd,
    run_cli,
    set_up,
)
from serve_targets import (
    Target,
    bare_target,
    baseline_target,
    has_logging_switch,
    mlflow_target,
    pgmlops_target,
)

# Other bench scripts (log_durability.py, train_bench.py, ...) reach these through this
# module, as they did before it was split by what it measures.
__all__ = [
    "CLK",
    "DB_NAME",
    "FEATURES",
    "MODEL",
    "RESULTS",
    "Setup",
    "Target",
    "admin_engine",
    "base_env",
    "cpu_of",
    "db_url",
    "drop_database",
    "machine",
    "machine_busy",
    "main",
    "pgmlops_cmd",
    "pgmlops_target",
    "say",
    "set_up",
    "wrk",
]

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
