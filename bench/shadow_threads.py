"""Where a shadow challenger's CPU goes: CPU per request of every serving thread, with and without.

Run: ``.venv/bin/python bench/shadow_threads.py [--duration 6] [--repeats 2]``. The set-up of
bench/shadow_overhead.py (its own database, ``pgmlops_bench_shadow_threads``; ONNX v1 in
production, v2 the challenger; ``serve --workers 2``, logging to PostgreSQL on). Around each
``wrk -t1 -c16`` run it reads every thread's CPU time from /proc: a worker's main thread (the
event loop), its other threads (the shadow thread is the one that appears with the shadow on)
and the logging processes (``pgmlops-log``), divided by the requests answered. Prints only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PGMLOPS_BENCH_DB", "pgmlops_bench_shadow_threads")

from serve_load import wrk
from serve_machine import CLK
from serve_setup import drop_database, run_cli, set_up
from serve_targets import pgmlops_target
from shadow_overhead import deploy


def thread_cpu(pids: list[int]) -> dict[tuple[int, int, str], float]:
    """CPU seconds of each (process, thread, process name) among pids."""
    out = {}
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            for tid in os.listdir(f"/proc/{pid}/task"):
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                st = raw[raw.rfind(")") + 2 :].split()
                out[(pid, int(tid), comm)] = (int(st[11]) + int(st[12])) / CLK
        except OSError:
            pass  # gone between the listing and the read
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-shadow-threads-"))
    target = setup = None
    try:
        setup = set_up(workdir)
        train = ["train", "--data", "churn.csv", "--target", "Exited", "--json"]
        challenger = run_cli([*train, "--param", "max_iter=150"], setup.env, workdir)["version"]
        target = pgmlops_target(setup, workers=2, logging=True)
        target.start()
        target.wait_ready()
        for version in (challenger, None):  # warm-up
            deploy(target, version)
            wrk(target, 2, 16)
        deployed = None
        for rep in range(args.repeats):
            for version in (None, challenger) if rep % 2 == 0 else (challenger, None):
                if version != deployed:
                    deploy(target, version)
                    deployed = version
                time.sleep(1)  # the previous run's log rows
                pids = target.pids()
                before = thread_cpu(pids)
                r = wrk(target, args.duration, 16)
                after = thread_cpu(pids)
                n = max(1, r["requests"])
                mode = "on" if version else "off"
                print(f"--- shadow {mode}: {r['rps']:.0f} req/s, {n} requests")
                total = 0.0
                for key in sorted(after):
                    used = after[key] - before.get(key, 0.0)
                    total += used
                    pid, tid, comm = key
                    if used > 0.005:
                        what = "main" if pid == tid else "thread"
                        cost = used / n * 1e6
                        print(f"  {comm:14s} {pid}/{tid} {what:6s} {cost:7.1f} µs/request")
                print(f"  all server threads {total / n * 1e6:.1f} µs/request")
        print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    finally:
        if target is not None:
            target.stop()
        if setup is not None and setup.ctx is not None:
            setup.ctx.close()
        drop_database()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
