"""The logging process's CPU per row, by thread and stage, in bench/log_rate.py's writer run.

Run: ``PYTHONPATH=src .venv/bin/python bench/log_stages.py [--rows 400000] [--parts]``.

One writer run of bench/log_rate.py (``writer_rate``: fresh database, 10,000-row requests
offered as fast as the logging process takes them) with timers wrapped around the writer
thread's stages; they run in the logging process (forked after the wrapping). Reported per
row written: thread CPU (time.thread_time) of the packing (store/copy_rows.binary_rows),
of the rest of the batch write (psycopg, libpq, the socket), of the writer thread's whole
loop, and of the reading thread's whole life (utime+stime of the process's first thread
from /proc, sampled until it exits); the collector's passes (wall time, any thread); and
log_rate's own figures. ``--parts``: the reading thread's per-row work and the packing,
timed alone in this process with Python's default collector and with the logging
process's settings (child._tune_gc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

import log_rate
from pgmlops.services.serving.prediction_log import child
from pgmlops.store.prediction_log import predictions
from pgmlops.store.prediction_log.spill import EncodedRecord

CLK = os.sysconf("SC_CLK_TCK")
acc: dict[str, float] = {}


def add(key: str, value: float) -> None:
    acc[key] = acc.get(key, 0.0) + value


def wrap() -> None:
    """Timers around the stages; the logging process inherits them at its fork."""
    pack, execute = predictions.binary_rows, predictions.PredictionStore._execute
    cycle = child.PredictionLogWriter._cycle
    out = Path(tempfile.mkdtemp(prefix="log-stages-")) / "stages.json"
    os.environ["LOG_STAGES_OUT"] = str(out)

    def timed_pack(records: Any) -> bytes:
        t = time.thread_time()
        data = pack(records)
        add("pack", time.thread_time() - t)
        add("rows", len(records))
        return data

    def timed_execute(self: Any, records: Any, run: Any) -> None:
        t = time.thread_time()
        try:
            execute(self, records, run)
        finally:
            add("write_batch", time.thread_time() - t)
            out.write_text(json.dumps(acc))

    def timed_cycle(self: Any) -> None:
        t = time.thread_time()
        cycle(self)
        add("writer_thread", time.thread_time() - t)

    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            add(f"gc_gen{info['generation']}_wall", time.perf_counter() - started[0])

    predictions.binary_rows = timed_pack  # type: ignore[assignment]
    predictions.PredictionStore._execute = timed_execute  # type: ignore[method-assign]
    child.PredictionLogWriter._cycle = timed_cycle  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)


def reader_thread_cpu(stop: threading.Event, seen: dict[str, float]) -> None:
    """utime+stime of the logging process's first thread (the reader), until it exits."""
    while not stop.is_set():
        for pid in os.listdir("/proc/self/task"):
            try:
                kids = Path(f"/proc/self/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:
                    if Path(f"/proc/{kid}/comm").read_text().strip() != "pgmlops-log":
                        continue
                    raw = Path(f"/proc/{kid}/task/{kid}/stat").read_text()
                except OSError:
                    continue
                fields = raw[raw.rfind(")") + 2 :].split()
                seen["reader"] = (int(fields[11]) + int(fields[12])) / CLK
        time.sleep(0.1)


def parts() -> None:
    """The reading thread's per-row work and the packing, alone, default vs tuned collector."""
    from pgmlops.domain.demo_data import make_churn
    from pgmlops.domain.registry.records import PredictionRecord
    from pgmlops.services.serving.prediction import prediction_ids
    from pgmlops.store.prediction_log.copy_rows import binary_rows
    from serve_setup import FEATURES

    frame = make_churn(10_000, seed=7)
    features = orjson.loads(frame[list(FEATURES)].to_json(orient="records"))
    ids = prediction_ids(len(features))
    now = datetime.now(UTC)
    recs = [
        PredictionRecord(ids[k], "default", 1, now, f, "0", 0.3, 0.4, None, 0.5, "bench")
        for k, f in enumerate(features)
    ]
    buf = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in recs) * 20
    chunks = [buf[k : k + (1 << 20)] for k in range(0, len(buf), 1 << 20)]
    got: dict[str, list[float]] = {}
    for _ in range(5):  # alternating, so that load on a shared machine hits both alike
        for setting in ("default", "tuned"):
            gc.unfreeze()
            gc.collect()
            if setting == "tuned":
                gc.freeze()
                gc.set_threshold(child.GC_YOUNG, 10, 10)
            else:
                gc.set_threshold(700, 10, 10)
            held: list[list[EncodedRecord]] = []  # a queue's worth stays alive, as there
            t = time.process_time()
            rest = b""
            for chunk in chunks:
                *lines, rest = (rest + chunk).split(b"\n")
                held.append([EncodedRecord(line) for line in lines])
                if len(held) > 90:
                    del held[0]
            got.setdefault(f"{setting} reading", []).append(
                (time.process_time() - t) / 200_000 * 1e6
            )
            encoded = [e for part in held[-5:] for e in part][:10_000]
            t = time.process_time()
            for k in range(0, len(encoded), 500):
                binary_rows(encoded[k : k + 500])
            got.setdefault(f"{setting} packing", []).append(
                (time.process_time() - t) / len(encoded) * 1e6
            )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for key, runs in got.items():
        each = ", ".join(f"{x:.2f}" for x in runs)
        print(f"{key}: median {statistics.median(runs):.2f} µs/row ({each})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--parts", action="store_true")
    args = ap.parse_args()
    if args.parts:
        parts()
        return
    wrap()
    seen: dict[str, float] = {}
    stop = threading.Event()
    threading.Thread(target=reader_thread_cpu, args=(stop, seen), daemon=True).start()
    try:
        result = log_rate.writer_rate(args.rows)
    finally:
        log_rate.drop_database()
    stop.set()
    time.sleep(0.3)
    got = json.loads(Path(os.environ["LOG_STAGES_OUT"]).read_text())
    rows = got.pop("rows")
    per_row = {k: round(v / rows * 1e6, 2) for k, v in got.items()}
    per_row["write_batch_beside_packing"] = round(per_row["write_batch"] - per_row["pack"], 2)
    per_row["reader_thread"] = round(seen.get("reader", 0.0) / rows * 1e6, 2)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; rows {rows:,.0f}")
    print("µs per row (whole run):", per_row)
    print("log_rate (10%-90% of rows):", {k: round(v, 2) for k, v in result.items()})


if __name__ == "__main__":
    main()
