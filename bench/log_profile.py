"""Where prediction logging costs the serving process: a `perf` profile, logging on vs off.

Run: ``.venv/bin/python bench/log_profile.py [--rounds 3] [--duration 8] [--src PATH ...]``
(needs Linux ``perf`` and permission to attach to the server's process).
Sets up like bench/serve_bench.py (fresh PostgreSQL database, demo churn model, onnxruntime),
starts one-worker ``pgmlops serve`` processes -- logging to PostgreSQL on, logging off, and a
logging-on server per ``--src`` tree -- and in interleaved rounds of ``wrk -t1 -c16`` samples
the server process with ``perf record -F 499`` for the whole run. Each sample's symbol is put
in a bucket (cyclic GC, kernel, onnxruntime, interpreter, ...); a bucket's share of samples
times the process's CPU per request (utime+stime from /proc over the run / requests) gives its
µs per request. The difference on - off is where logging's cost goes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb

SRC = Path(__file__).resolve().parent.parent / "src"
PY_SPY_RATE = 250
_GC = re.compile(
    r"^(gc_|visit_|_PyObject_GC|PyObject_GC|move_unreachable|deduce_unreachable|subtract_refs|"
    r"update_refs|move_legacy|handle_legacy|finalize_garbage|.*_traverse$|.*traverse$)"
)
BUCKETS = (
    "cyclic GC",
    "interpreter",
    "malloc/free (libc)",
    "kernel (syscalls, scheduling)",
    "onnxruntime",
    "pydantic_core",
    "orjson",
    "psycopg/libpq",
    "numpy",
    "other",
)


def bucket(dso: str, sym: str) -> str:
    """The bucket of one sample from its shared object and symbol."""
    if "kernel" in dso:
        return "kernel (syscalls, scheduling)"
    if _GC.match(sym):
        return "cyclic GC"
    for key, name in (
        ("onnxruntime", "onnxruntime"),
        ("pydantic_core", "pydantic_core"),
        ("orjson", "orjson"),
        ("libpq", "psycopg/libpq"),
        ("psycopg", "psycopg/libpq"),
        ("numpy", "numpy"),
        ("multiarray", "numpy"),
        ("libc", "malloc/free (libc)"),
    ):
        if key in dso:
            return name
    if "python" in dso:
        return "interpreter"
    return "other"


def profile(pid: int, duration: float, out: Path) -> subprocess.Popen:
    """perf record of pid (all its threads) for about `duration` seconds."""
    return subprocess.Popen(
        ["perf", "record", "-q", "-F", "499", "-p", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def py_spy(pid: int, duration: float, out: Path) -> subprocess.Popen:
    """py-spy record (Python stacks of every thread, idle ones left out) for `duration` s."""
    exe = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [
            *(str(exe), "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE), "--format"),
            *("raw", "--threads", "--nonblocking", "--duration", str(int(duration)), "-o"),
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def functions(data: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Samples per function (inclusive: once per stack it is in) and per thread."""
    incl: dict[str, float] = defaultdict(float)
    threads: dict[str, float] = defaultdict(float)
    for line in data.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        threads[frames[0] if frames else "?"] += n
        # A function once per stack, so recursion and repeats do not count twice.
        seen = {re.sub(r":\d+\)$", ")", f) for f in frames[1:]}
        for f in seen:
            incl[f] += n
    return dict(incl), dict(threads)


def shares(data: Path) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    """Share of samples per bucket, and the top symbols."""
    out = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-q", "--sort", "dso,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    per: dict[str, float] = defaultdict(float)
    top = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[^\]]+\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        per[bucket(dso, sym)] += pct / 100.0
        top.append((pct, dso, sym))
    return dict(per), top[:25]


def report_functions(
    servers: list[sb.Target],
    fn_us: dict[str, list[dict[str, float]]],
    rps: dict[str, list[float]],
    args: argparse.Namespace,
) -> None:
    """The functions whose time per request differs most between logging on and off."""
    on, off = servers[0].key, servers[1].key
    names = set().union(*(r.keys() for runs in fn_us.values() for r in runs))
    med = {
        k: {f: statistics.median(r.get(f, 0.0) for r in runs) for f in names}
        for k, runs in fn_us.items()
    }
    diff = sorted(names, key=lambda f: abs(med[on][f] - med[off][f]), reverse=True)[:30]
    head = " | ".join(t.label for t in servers)
    print(f"\n| CPU µs/request in the function and its callees (py-spy) | {head} | on - off |")
    print("| --- |" + " ---: |" * (len(servers) + 1))
    for f in diff:
        cells = " | ".join(f"{med[t.key][f]:.1f}" for t in servers)
        print(f"| `{f[:110]}` | {cells} | {med[on][f] - med[off][f]:+.1f} |")
    cells = " | ".join(f"{statistics.median(rps[t.key]):,.0f}" for t in servers)
    print(f"| req/s | {cells} | |")
    print(
        f"\nmedians of {args.rounds} interleaved rounds of wrk -t1 -c16 -d{args.duration:g}s; "
        f"py-spy record --rate {PY_SPY_RATE} --nonblocking --threads (idle threads left out); "
        "a function's share of the samples times the process's CPU µs per request"
    )


def reuse_record() -> dict:
    """The record serve_bench.py's set-up sends (the first demo row)."""
    from pgmlops.domain.demo_data import make_churn

    row = make_churn(20_000, seed=7)[list(sb.FEATURES)].to_dict("records")[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--src", action="append", default=[], type=Path)
    ap.add_argument("--top", action="store_true", help="print each server's top symbols")
    ap.add_argument("--py-spy", action="store_true", help="Python functions (py-spy) instead")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="a work folder whose database already holds the trained, promoted model (left "
        "by an interrupted serve_bench.py or log_profile.py run): skip the training",
    )
    args = ap.parse_args()
    if not shutil.which("perf"):
        print("perf is missing (linux-perf)", file=sys.stderr)
        return 2

    if args.reuse:
        workdir = args.reuse
        setup = sb.Setup(workdir, sb.base_env(workdir, sb.db_url()), 1, 0.0, [reuse_record()])
    else:
        workdir = Path(tempfile.mkdtemp(prefix="pgmlops-log-profile-"))
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
    us: dict[str, list[dict[str, float]]] = {t.key: [] for t in servers}
    fn_us: dict[str, list[dict[str, float]]] = {t.key: [] for t in servers}
    rps: dict[str, list[float]] = {t.key: [] for t in servers}
    tops: dict[str, list] = {}
    try:
        for t in servers:
            t.start()
        for t in servers:
            t.wait_ready()
            sb.wrk(t, 2, 16)
        for rnd in range(args.rounds):
            for t in servers:
                pid = t.process.pid  # type: ignore[union-attr]
                kids = [p for p in t.pids() if p != pid]  # the logging process, if any
                cpu0, kids0 = sb.cpu_of([pid]), sb.cpu_of(kids)
                data = workdir / f"{t.key}-{rnd}.data"
                start = py_spy if args.py_spy else profile
                rec = start(t.process.pid, args.duration, data)  # type: ignore[union-attr]
                w = sb.wrk(t, args.duration, 16)
                if not args.py_spy:
                    rec.send_signal(2)
                rec.wait(60)
                cpu = sb.cpu_of([pid]) - cpu0
                n = max(1, w["requests"])
                per_req = cpu / n * 1e6
                kids_us = (sb.cpu_of(kids) - kids0) / n * 1e6
                rps[t.key].append(w["rps"])
                if args.py_spy:
                    incl, threads = functions(data)
                    # Samples of a busy thread are wall time, stretched when the cores are
                    # shared: spread the process's measured CPU over them by share instead.
                    per = per_req / max(1.0, sum(threads.values()))
                    fn_us[t.key].append({f: v * per for f, v in {**incl, **threads}.items()})
                    busy = sorted(((v * per, k) for k, v in threads.items()), reverse=True)
                    sb.say(
                        f"round {rnd + 1} {t.label}: {w['rps']:,.0f} req/s, {per_req:.1f} CPU "
                        f"µs/req; py-spy µs/req by thread: "
                        + ", ".join(f"{k} {v:.1f}" for v, k in busy)
                    )
                    continue
                part, top = shares(data)
                row = {b: part.get(b, 0.0) * per_req for b in BUCKETS}
                row["total"] = per_req
                row["child processes"] = kids_us
                us[t.key].append(row)
                tops[t.key] = top
                sb.say(
                    f"round {rnd + 1} {t.label}: {w['rps']:,.0f} req/s, {per_req:.1f} CPU µs/req "
                    f"(+{kids_us:.1f} in child processes); "
                    + ", ".join(f"{b} {row[b]:.1f}" for b in BUCKETS if row[b] >= 1)
                )
    finally:
        for t in servers:
            t.stop()
        if not args.reuse:
            sb.drop_database()
            shutil.rmtree(workdir, ignore_errors=True)
    if args.py_spy:
        report_functions(servers, fn_us, rps, args)
        return 0
    med = {
        k: {
            b: statistics.median(r[b] for r in runs) for b in (*BUCKETS, "total", "child processes")
        }
        for k, runs in us.items()
    }
    on, off = servers[0].key, servers[1].key
    head = " | ".join(t.label for t in servers)
    print(f"\n| CPU µs per request (median of rounds) | {head} | on - off |")
    print("| --- |" + " ---: |" * (len(servers) + 1))
    for b in (*BUCKETS, "total", "child processes"):
        cells = " | ".join(f"{med[t.key][b]:.1f}" for t in servers)
        print(f"| {b} | {cells} | {med[on][b] - med[off][b]:+.1f} |")
    cells = " | ".join(f"{statistics.median(rps[t.key]):,.0f}" for t in servers)
    print(f"| req/s | {cells} | |")
    print(
        f"\nmedians of {args.rounds} interleaved rounds of wrk -t1 -c16 -d{args.duration:g}s; "
        "perf record -F 499 of the server process"
    )
    if args.top:
        for t in servers:
            print(f"\ntop symbols, {t.label} (last round):")
            for pct, dso, sym in tops[t.key]:
                print(f"  {pct:5.2f}%  {dso}  {sym}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
