"""Where prediction logging costs the serving process: CPU per request, per thread.

Run: ``.venv/bin/python bench/log_threads.py [--rounds 3] [--duration 8] [--src PATH ...]``.
Sets up like bench/serve_bench.py (fresh PostgreSQL database, 20,000 demo churn rows,
``pgmlops train`` + ``promote``), then starts one-worker ``pgmlops serve`` processes with
prediction logging to PostgreSQL on, and one with it off, and measures them in interleaved
rounds of ``wrk -t1 -c16``. For each server it reads every thread's CPU time from /proc
before and after the run and prints, per request served: the event-loop (main) thread, the
busiest other thread (the log writer when logging is on) and the rest.

``--src PATH`` (repeatable) adds a logging-on server run from another source tree, e.g. an
older commit checked out with ``git worktree add /tmp/old <commit>`` -> ``--src /tmp/old/src``,
to compare two implementations of the writer on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb

SRC = Path(__file__).resolve().parent.parent / "src"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / sb.CLK
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--src", action="append", default=[], type=Path)
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-log-threads-"))
    setup = sb.set_up(workdir)
    servers = []
    for label, src, logging in [
        ("logging on", SRC, True),
        ("logging off", SRC, False),
        *((f"logging on, {p}", p, True) for p in args.src),
    ]:
        t = sb.pgmlops_target(setup, workers=1, logging=logging)
        t.key, t.label = f"s{len(servers)}", label
        t.env["PYTHONPATH"] = str(src)
        t.env["PGMLOPS_SERVING__SPILL_DIR"] = str(workdir / f"spill-{t.key}")
        servers.append(t)
    results: dict[str, list[tuple[float, float, float, float]]] = {t.key: [] for t in servers}
    try:
        for t in servers:
            t.start()
        for t in servers:
            t.wait_ready()
            sb.wrk(t, 2, 16)
        for rnd in range(args.rounds):
            for t in servers:
                pid = t.process.pid  # type: ignore[union-attr]
                before = thread_cpu(pid)
                w = sb.wrk(t, args.duration, 16)
                after = thread_cpu(pid)
                n = max(1, w["requests"])
                per = {tid: (after[tid] - before.get(tid, 0.0)) / n * 1e6 for tid in after}
                main_us = per.pop(pid, 0.0)
                others = sorted(per.values(), reverse=True)
                busiest = others[0] if others else 0.0
                rest = sum(others[1:])
                results[t.key].append((w["rps"], main_us, busiest, rest))
                sb.say(
                    f"round {rnd + 1} {t.label}: {w['rps']:,.0f} req/s; CPU µs/request: main "
                    f"{main_us:.1f}, busiest other thread {busiest:.1f}, rest {rest:.1f}"
                )
    finally:
        for t in servers:
            t.stop()
        sb.drop_database()
    print(
        "\n| server (1 worker) | req/s | main thread µs/req | busiest other thread µs/req |"
        " other threads µs/req |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for t in servers:
        runs = results[t.key]
        med = [statistics.median(r[i] for r in runs) for i in range(4)]
        print(f"| {t.label} | {med[0]:,.0f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} |")
    print(f"\nmedians of {args.rounds} rounds of wrk -t1 -c16 -d{args.duration:g}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
