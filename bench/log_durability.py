"""What `serving.log_durability: acknowledged` costs against the default (fast), same rounds.

Run: ``.venv/bin/python bench/log_durability.py [--rounds 3] [--duration 10] [--workers 2]``
(needs ``wrk``: ``apt-get install -y wrk``, and PostgreSQL at $PGMLOPS_BENCH_POSTGRES_URL,
default postgres@127.0.0.1:5432). Sets up like bench/serve_bench.py (a fresh database of its
own, 20,000 demo churn rows, ``pgmlops train`` + ``promote``), starts two ``pgmlops serve
--workers N`` servers logging to PostgreSQL, one per durability, and runs ``wrk -t1 -c16``
against them in interleaved rounds (fast, acknowledged, fast, ...), so both see the same
machine. Prints (and writes to --out) requests/s and latency per run, the medians, and the
median of the per-round acknowledged/fast ratios. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb
import serve_setup

# Where set_up, db_url and drop_database read it: never the serving benchmark's database.
serve_setup.DB_NAME = "pgmlops_bench_durability"
CONNECTIONS = 16


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=sb.RESULTS / "log_durability.md")
    args = ap.parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.workers < 1:
        ap.error("--rounds and --workers must be at least 1, --duration above 0")

    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-log-durability-"))
    setup = sb.set_up(workdir)
    targets = {}
    for mode in ("fast", "acknowledged"):
        t = sb.pgmlops_target(setup, workers=args.workers, logging=True)
        t.key, t.label = f"{mode}_{args.workers}w", mode
        if "PROMETHEUS_MULTIPROC_DIR" in t.env:
            # serve_bench names the folder after its own key, the same for both servers.
            prom = Path(t.env["PROMETHEUS_MULTIPROC_DIR"]).rename(workdir / f"prom-{mode}")
            t.env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        t.env["PGMLOPS_SERVING__SPILL_DIR"] = str(workdir / f"spill-{mode}")
        t.env["PGMLOPS_SERVING__LOG_DURABILITY"] = mode
        targets[mode] = t
    runs: dict[str, list[dict]] = {mode: [] for mode in targets}
    try:
        for t in targets.values():
            t.start()
        for t in targets.values():
            t.wait_ready()
            sb.wrk(t, 2, CONNECTIONS)  # warm-up, not counted
        for rnd in range(args.rounds):
            for mode, t in targets.items():
                r = sb.wrk(t, args.duration, CONNECTIONS)
                r.pop("raw", None)
                runs[mode].append(r)
                sb.say(
                    f"round {rnd + 1} {mode:>12}: {r['rps']:8.0f} req/s  p50 {r.get('p50_ms')} ms"
                    f"  p99 {r.get('p99_ms')} ms  non-2xx {r['non_2xx']}"
                    f"  socket errors {r['socket_errors']}"
                )
    finally:
        for t in targets.values():
            t.stop()
        sb.drop_database()

    ratios = [a["rps"] / f["rps"] for f, a in zip(runs["fast"], runs["acknowledged"], strict=True)]
    med = {m: statistics.median(r["rps"] for r in rs) for m, rs in runs.items()}
    p99 = {m: statistics.median(r.get("p99_ms", 0.0) for r in rs) for m, rs in runs.items()}
    lines = [
        "# Prediction-log durability: fast (default) vs acknowledged",
        "",
        f"`bench/log_durability.py --rounds {args.rounds} --duration {args.duration:g} "
        f"--workers {args.workers}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"`wrk -t1 -c{CONNECTIONS}` single-record /predict, PostgreSQL logging, interleaved.",
        "",
        "| round | fast req/s | fast p99 ms | acknowledged req/s | acknowledged p99 ms | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, (f, a) in enumerate(zip(runs["fast"], runs["acknowledged"], strict=True)):
        lines.append(
            f"| {i + 1} | {f['rps']:.0f} | {f.get('p99_ms')} | {a['rps']:.0f} | "
            f"{a.get('p99_ms')} | {ratios[i]:.3f} |"
        )
    lines += [
        "",
        f"Medians: fast **{med['fast']:.0f} req/s** (p99 {p99['fast']} ms), acknowledged "
        f"**{med['acknowledged']:.0f} req/s** (p99 {p99['acknowledged']} ms); median "
        f"same-round ratio acknowledged/fast **{statistics.median(ratios):.3f}** "
        f"({(1 - statistics.median(ratios)) * 100:.1f}% fewer requests/s).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    bad = sum(r["non_2xx"] + r["socket_errors"] for rs in runs.values() for r in rs)
    if bad:
        print(f"WARNING: {bad} requests failed (non-2xx or socket errors)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
