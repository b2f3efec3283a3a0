"""How fast the prediction log drains into PostgreSQL, and whether it keeps up with scoring.

Run: ``PYTHONPATH=src .venv/bin/python bench/log_rate.py --only writer|serve [--rounds 3]
[--baseline DIR]``.

(a) **writer**: the logging process as `pgmlops serve` runs it (ProcessLogWriter with the
    serving defaults: batch 500, queue 200,000, log_when_full wait) on a fresh database;
    this process offers it `--writer-rows` rows (the demo churn features, 10,000 a request,
    encoded on this side as a serving process encodes them) as fast as it takes them. The
    records are built before the clock (a serving process builds them while scoring, and
    (b)'s scoring rate counts that); `offer` — encoding, buffering, writing the pipe — is
    timed. The sustained rate is rows written per second between 10% and 90% of the rows
    written (the `written` counter the logging process publishes), and end to end; CPU a
    row between those marks for the logging process, PostgreSQL's backends and this
    process (`offer_us`, the serving side's share).
(b) **serve**: the issue's run: `pgmlops serve --workers 2`, PostgreSQL, default settings;
    `--records` records sent to /predict in requests of 10,000 by `--clients` clients.
    Reported: rows answered (200), rows refused (503), the rows of the answered ids in
    `predictions`, and seconds from the last answer until every answered row was there
    (the bound is 60 s); scoring rows/s is rows answered over the sending time.

`--baseline DIR` runs again with the code under DIR (a `src` folder: PYTHONPATH), in the
same rounds, alternating, for a same-machine ratio. A writer round has a fresh database; the
serve rounds share one trained model and empty the log before each round (PGMLOPS_BENCH_DB,
default ``pgmlops_bench_log_rate``; dropped at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PGMLOPS_BENCH_DB", "pgmlops_bench_log_rate")

import httpx
import orjson
import psycopg

from serve_machine import say
from serve_setup import FEATURES, db_url, drop_database, recreate_database, set_up
from serve_targets import pgmlops_target

SCRIPT = Path(__file__).resolve()
REQUEST_ROWS = 10_000
CLK = os.sysconf("SC_CLK_TCK")


# -- (a) the writer alone ----------------------------------------------------------------------


def writer_rate(rows: int) -> dict[str, float]:
    """The logging process's sustained rate on a fresh database (run in a child: its code)."""
    from datetime import UTC, datetime

    from pgmlops.config import ServingConfig
    from pgmlops.domain.demo_data import make_churn
    from pgmlops.domain.registry.records import PredictionRecord
    from pgmlops.services.serving.prediction import prediction_ids
    from pgmlops.services.serving.prediction_log.child import LogProcessConfig
    from pgmlops.services.serving.prediction_log.process import ProcessLogWriter
    from pgmlops.store.db import Database

    recreate_database()
    Database(db_url()).ensure_schema()
    frame = make_churn(REQUEST_ROWS, seed=7)
    features = orjson.loads(frame[list(FEATURES)].to_json(orient="records"))
    defaults = ServingConfig()
    spill = tempfile.mkdtemp(prefix="log-rate-spill-")
    writer = ProcessLogWriter(
        LogProcessConfig(
            database_url=db_url(),
            spill_dir=spill,
            max_queue=defaults.log_queue_size,
            batch_size=defaults.log_batch_size,
            flush_seconds=defaults.log_flush_seconds,
            when_full=defaults.log_when_full,
        )
    )
    writer.start()
    marks: dict[float, float] = {}
    done = threading.Event()

    cpu: dict[float, tuple[float, float, float]] = {}
    conn = psycopg.connect(db_url(), autocommit=True)
    backends = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    backends += " AND pid <> pg_backend_pid()"

    def watch() -> None:  # the `written` counter crossing 10% and 90% of the rows
        while not done.is_set():
            stats = writer.stats()
            written = int(stats["written"])  # type: ignore[call-overload]
            for frac in (0.1, 0.9):
                if frac not in marks and written >= frac * rows:
                    marks[frac] = time.monotonic()
                    pids = [r[0] for r in conn.execute(backends).fetchall()]
                    child = cpu_s(int(stats["process_pid"]))  # type: ignore[call-overload]
                    cpu[frac] = (child, sum(cpu_s(p) for p in pids), time.process_time())
            time.sleep(0.02)

    # The requests' records are built before the clock: a serving process builds them while
    # scoring (its rate counts them); the log's work starts at offer, which encodes them.
    now = datetime.now(UTC)
    requests = []
    for _ in range(0, rows, REQUEST_ROWS):
        ids = prediction_ids(REQUEST_ROWS)
        requests.append(
            [
                PredictionRecord(ids[k], "default", 1, now, f, "0", 0.3, 0.4, None, 0.5, "bench")
                for k, f in enumerate(features)
            ]
        )
    threading.Thread(target=watch, daemon=True).start()
    t0 = time.monotonic()
    for batch in requests:
        while not writer.offer(batch):  # as a waiting request does (log_when_full: wait)
            writer._send()
            time.sleep(0.005)
        writer._send()
    if not writer.flush(600):
        raise RuntimeError("the writer did not drain within 600 s")
    total = time.monotonic() - t0
    done.set()
    stats = writer.stats()
    writer.stop()
    if stats["written"] != rows:
        raise RuntimeError(f"written {stats['written']} of {rows}: {stats}")
    conn.close()
    between = 0.8 * rows
    return {
        "sustained_rows_s": between / (marks[0.9] - marks[0.1]),
        "end_to_end_rows_s": rows / total,
        # CPU a row between the marks: the logging process, and PostgreSQL's backend(s).
        "log_process_us": 1e6 * (cpu[0.9][0] - cpu[0.1][0]) / between,
        "backend_us": 1e6 * (cpu[0.9][1] - cpu[0.1][1]) / between,
        # This process: the serving side's share (encoding each row, writing the pipe).
        "offer_us": 1e6 * (cpu[0.9][2] - cpu[0.1][2]) / between,
    }


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def writer_round(src: Path | None, rows: int) -> dict[str, float]:
    """writer_rate in a child process, importing the code under src (or this checkout's)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--writer-only", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"writer round failed:\n{out.stderr[-3000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


# -- (b) a real server -------------------------------------------------------------------------


def serve_round(
    setup: Any, src: Path | None, records: int, clients: int, rnd: int
) -> dict[str, Any]:
    """The issue's batch client against `serve --workers 2` (default settings, empty log)."""
    with psycopg.connect(db_url(), autocommit=True) as conn:
        conn.execute("TRUNCATE predictions")
    # A prefix of its own per round: the target's spill and metrics folders are made anew.
    target = pgmlops_target(
        setup, workers=2, logging=True, prefix=f"{'this' if src is None else 'base'}{rnd}"
    )
    if src is not None:
        target.env["PYTHONPATH"] = str(src)
    body = orjson.dumps([setup.records[k % len(setup.records)] for k in range(REQUEST_ROWS)])
    requests = records // REQUEST_ROWS
    answered: list[str] = []
    refused = [0]
    errors: list[str] = []
    lock = threading.Lock()
    todo = list(range(requests))

    def client() -> None:
        with httpx.Client(base_url=target.url, timeout=120) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                r = http.post(
                    "/predict", content=body, headers={"content-type": "application/json"}
                )
                with lock:
                    if r.status_code == 200:
                        answered.extend(p["prediction_id"] for p in r.json()["predictions"])
                    elif r.status_code == 503:
                        refused[0] += REQUEST_ROWS
                    else:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    target.start()
    try:
        target.wait_ready()
        time.sleep(2)  # let start-up work (partitions, alias watcher) settle
        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        last_answer = time.monotonic()
        with psycopg.connect(db_url(), autocommit=True) as conn:
            deadline = last_answer + 120
            while True:
                in_table = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
                if in_table >= len(answered) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            caught_up = time.monotonic() - last_answer
            found = 0
            for start in range(0, len(answered), 100_000):
                part = answered[start : start + 100_000]
                found += conn.execute(
                    "SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (part,)
                ).fetchone()[0]
        health = httpx.get(target.url + "/health", timeout=10).json()
    finally:
        target.stop()
    return {
        "answered": len(answered),
        "refused_503": refused[0],
        "errors": len(errors),
        "answered_in_table": found,
        "rows_in_table": in_table,
        "s_after_last_answer": round(caught_up, 1),
        "scoring_rows_s": round(len(answered) / (last_answer - t0)),
        "send_s": round(last_answer - t0, 1),
        "log_lost": health.get("prediction_log", {}).get("lost"),
        "first_error": errors[0] if errors else None,
    }


# -- report ------------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writer-rows", type=int, default=400_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--baseline", type=Path, help="a src folder to compare with (PYTHONPATH)")
    ap.add_argument("--only", choices=("writer", "serve"))
    ap.add_argument("--writer-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer_only:
        print(orjson.dumps(writer_rate(args.writer_only)).decode())
        return
    if args.only is None:
        ap.error("--only writer or --only serve (each uses the one database name)")
    codes: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.baseline:
        codes.append((f"baseline {args.baseline}", args.baseline.resolve()))
    results: dict[str, dict[str, list[Any]]] = {c: {"writer": [], "serve": []} for c, _ in codes}
    say(f"load average at start: {loadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="log-rate-"))
    try:
        # One trained model for every serve round (training took minutes on a busy machine);
        # each round starts from an empty log. The writer rounds make a database of their own.
        setup = set_up(workdir) if args.only != "writer" else None
        for rnd in range(args.rounds):
            order = codes if rnd % 2 == 0 else codes[::-1]
            for name, src in order:
                if args.only == "writer":
                    w = writer_round(src, args.writer_rows)
                    w["load"] = loadavg()
                    results[name]["writer"].append(w)
                    say(f"round {rnd + 1} writer, {name}: {w}")
                if args.only == "serve":
                    s = serve_round(setup, src, args.records, args.clients, rnd)
                    s["load"] = loadavg()
                    results[name]["serve"].append(s)
                    say(f"round {rnd + 1} serve, {name}: {s}")
    finally:
        drop_database()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"load average at end: {loadavg()}")
    for name, res in results.items():
        if res["writer"]:
            for key in (
                "sustained_rows_s",
                "end_to_end_rows_s",
                "log_process_us",
                "backend_us",
                "offer_us",
            ):
                runs = [r[key] for r in res["writer"]]
                worst = max(runs) if key.endswith("_us") else min(runs)  # CPU: more is worse
                say(
                    f"{name}: writer {key} median {statistics.median(runs):,.1f}, "
                    f"worst {worst:,.1f} ({', '.join(f'{x:,.1f}' for x in runs)})"
                )
        if res["serve"]:
            for key in ("s_after_last_answer", "scoring_rows_s"):
                runs = [r[key] for r in res["serve"]]
                worst = max(runs) if key == "s_after_last_answer" else min(runs)
                say(f"{name}: serve {key} median {statistics.median(runs)}, worst {worst}")
    print(orjson.dumps(results).decode())


if __name__ == "__main__":
    main()
