"""What a shadow challenger costs production: /predict throughput with and without one.

Run: ``.venv/bin/python bench/shadow_overhead.py [--rounds 9] [--duration 5] [--workers 2]``.

Set-up as bench/serve_bench.py (its own database, ``pgmlops_bench_shadow``): 20,000 demo churn
rows, ``pgmlops train`` + ``pgmlops promote`` (v1, ONNX), then ``pgmlops train`` again with
other parameters (v2, ONNX), the challenger. One ``pgmlops serve --workers 2`` with prediction
logging to PostgreSQL on. Each round measures the same server twice, in alternating order
(ABBA): production only (``pgmlops deploy --stop``) and production + shadow challenger
(``pgmlops deploy --version 2 --shadow``), each with ``wrk -t1 -c16 -dNs`` after every worker
reported the move (/health) and the previous run's log rows were written. The same-round
ratio (shadow / production-only req/s) is the figure: background load on a shared machine hits
both runs of a round alike; so is the same-round ratio of CPU per request (server processes
and PostgreSQL), which is the throughput ratio wherever serving is CPU-bound and which other
people's load on the machine disturbs least. Also counted: shadow rows logged against requests
answered (a shadow that drops its work would look free), and the outcomes in
``pgmlops_live_rows_total``.
Writes bench/results/shadow-overhead.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Before serve_machine reads it: a database of our own, so serve_bench.py may run beside us.
os.environ.setdefault("PGMLOPS_BENCH_DB", "pgmlops_bench_shadow")

import httpx

from serve_load import RowCounter, wrk
from serve_machine import RESULTS, CpuWindow, machine, say
from serve_setup import DB_NAME, MODEL, drop_database, run_cli, set_up
from serve_targets import Target, pgmlops_target

MODES = ("production only", "production + shadow")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def deploy(target: Target, shadow_version: int | None) -> None:
    """Move the challenger as a user would, then wait until every worker serves the move."""
    args = ["deploy", "--model-name", MODEL, "--json", "--reason", "shadow overhead bench"]
    args += ["--version", str(shadow_version), "--shadow"] if shadow_version else ["--stop"]
    run_cli(args, target.env, target.cwd)
    want = shadow_version
    seen: dict[int, int | None] = {}
    agree = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # A new connection each time: the kernel hands connections, not requests, to workers.
        health = httpx.get(target.url + "/health", timeout=5).json()
        challenger = health["model"]["challenger"]
        seen[health["worker_pid"]] = challenger["version"] if challenger else None
        ok = len(seen) >= target.workers and all(v == want for v in seen.values())
        agree = agree + 1 if ok else 0
        if agree >= 20:  # each worker answered /health several times since the move
            return
        time.sleep(0.02)
    raise RuntimeError(f"workers did not follow deploy {args}: {seen}")


def shadow_rows(counter: RowCounter) -> int:
    from sqlalchemy import text

    with counter.engine.connect() as conn:
        sql = "SELECT count(*) FROM predictions WHERE role = 'shadow'"
        return int(conn.execute(text(sql)).scalar_one())


def live_outcomes(target: Target) -> dict[str, float]:
    """pgmlops_live_rows_total by role and outcome, summed over versions (all workers)."""
    text = httpx.get(target.url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for m in re.finditer(r"^pgmlops_live_rows_total\{([^}]*)\} ([\d.e+]+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = f"{labels['role']}/{labels['outcome']}"
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def one_run(target: Target, counter: RowCounter, args: argparse.Namespace) -> dict[str, Any]:
    before = counter.stable()
    shadow_before = shadow_rows(counter)
    win = CpuWindow(target.pids())
    r = wrk(target, args.duration, args.connections)
    r.update(win.close())
    r.pop("raw", None)
    n = max(1, r["requests"])
    r["server_cpu_us"] = round(r["server_cores"] * r["wall_s"] / n * 1e6, 1)
    r["rows"] = counter.stable() - before
    r["shadow_rows"] = shadow_rows(counter) - shadow_before
    return r


def _cpu_us(r: dict[str, Any]) -> float:
    """CPU of the serving system per request: server processes (log process too) + PostgreSQL."""
    return (r["server_cores"] + r["postgres_cores"]) * r["wall_s"] / max(1, r["requests"]) * 1e6


def summarize(detail: list[dict[str, Any]]) -> dict[str, Any]:
    off = [d[MODES[0]] for d in detail]
    on = [d[MODES[1]] for d in detail]
    ratios = [b["rps"] / a["rps"] for a, b in zip(off, on, strict=True)]
    # Where the serving system is CPU-bound, throughput is cores / CPU per request: the CPU
    # ratio is what the shadow costs, and other people's load disturbs it least.
    cpu_ratios = [_cpu_us(a) / _cpu_us(b) for a, b in zip(off, on, strict=True)]
    per_mode = {
        mode: {
            "rps_median": round(statistics.median(r["rps"] for r in rs), 1),
            "rps_worst": round(min(r["rps"] for r in rs), 1),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in rs),
            "cpu_us_median": round(statistics.median(_cpu_us(r) for r in rs), 1),
            "server_cores_median": statistics.median(r["server_cores"] for r in rs),
            "other_cores_median": statistics.median(r["other_cores"] for r in rs),
            "requests": sum(r["requests"] for r in rs),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in rs),
            "rows": sum(r["rows"] for r in rs),
            "shadow_rows": sum(r["shadow_rows"] for r in rs),
        }
        for mode, rs in ((MODES[0], off), (MODES[1], on))
    }

    def pct(x: float) -> float:
        return round(100 * (1 - x), 1)

    return {
        "modes": per_mode,
        "ratios": [round(x, 4) for x in ratios],
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_worst": round(min(ratios), 4),
        "overhead_median_pct": pct(statistics.median(ratios)),
        "overhead_worst_pct": pct(min(ratios)),
        "cpu_ratios": [round(x, 4) for x in cpu_ratios],
        "cpu_ratio_median": round(statistics.median(cpu_ratios), 4),
        "cpu_ratio_worst": round(min(cpu_ratios), 4),
        "cpu_overhead_median_pct": pct(statistics.median(cpu_ratios)),
        "cpu_overhead_worst_pct": pct(min(cpu_ratios)),
    }


def markdown(res: dict[str, Any]) -> str:
    m, s = res["machine"], summarize(res["rounds_detail"])
    lines = [
        "# Shadow overhead: production only vs production + shadow challenger",
        "",
        f"Run {res['started']} with `{res['command']}`: one `pgmlops serve --workers "
        f"{res['workers']}` (ONNX, prediction logging to PostgreSQL on), {res['rounds']} rounds; "
        "in each round the same server is measured without a challenger (`pgmlops deploy "
        "--stop`) and with one in shadow (`pgmlops deploy --version "
        f"{res['challenger']} --shadow`), in alternating order, `wrk -t1 -c{res['connections']} "
        f"-d{res['duration']:g}s --latency` each, after every worker reported the move.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, onnxruntime {m['onnxruntime']}; wrk, the server and PostgreSQL "
        "15 share the cores, and so do other people's jobs: load average (`uptime`) "
        f"{res['loadavg_start']} at the start, {res['loadavg_end']} at the end.",
        "",
        f"Model: demo churn, 20,000 rows, {res['estimator']}, production v{res['version']}, "
        f"challenger v{res['challenger']} (other parameters), both served with onnxruntime.",
        "",
        "`CPU µs/request`: CPU time of the server's processes (workers and log process) and of "
        "PostgreSQL, divided by the requests answered. `other cores`: CPU used during the run by "
        "processes that are neither the server, wrk nor PostgreSQL.",
        "",
        "| round | order | req/s off | req/s shadow | ratio | CPU µs/req off | CPU µs/req "
        "shadow | CPU ratio | other cores (off / shadow) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for i, rnd in enumerate(res["rounds_detail"]):
        a, b = rnd[MODES[0]], rnd[MODES[1]]
        lines.append(
            f"| {i + 1} | {rnd['order'].replace('production + shadow', 'shadow')} | "
            f"{a['rps']:,.0f} | {b['rps']:,.0f} | {b['rps'] / a['rps']:.3f} | "
            f"{_cpu_us(a):.0f} | {_cpu_us(b):.0f} | {_cpu_us(a) / _cpu_us(b):.3f} | "
            f"{a['other_cores']} / {b['other_cores']} |"
        )
    lines += [
        "",
        "| | production only | production + shadow |",
        "| --- | ---: | ---: |",
    ]
    off, on = (s["modes"][k] for k in MODES)
    for key, label, fmt in (
        ("rps_median", "req/s, median of rounds", "{:,.0f}"),
        ("rps_worst", "req/s, worst run", "{:,.0f}"),
        ("p50_ms_median", "p50 ms (median)", "{:.2f}"),
        ("p99_ms_median", "p99 ms (median)", "{:.2f}"),
        ("cpu_us_median", "CPU µs per request (median)", "{:.0f}"),
        ("server_cores_median", "server cores (median)", "{:.2f}"),
        ("other_cores_median", "other processes' cores (median)", "{:.2f}"),
        ("requests", "requests answered", "{:,}"),
        ("errors", "errors (non-2xx, socket)", "{:,}"),
        ("rows", "prediction-log rows written", "{:,}"),
        ("shadow_rows", "of which shadow rows", "{:,}"),
    ):
        lines.append(f"| {label} | {fmt.format(off[key])} | {fmt.format(on[key])} |")
    lines += [
        "",
        f"**Same-round throughput ratio (shadow / production only): median "
        f"{s['ratio_median']:.3f}, worst round {s['ratio_worst']:.3f} (overhead "
        f"{s['overhead_median_pct']}%, worst {s['overhead_worst_pct']}%). Same-round CPU ratio "
        f"(CPU per request without / with the shadow, the throughput ratio where the serving "
        f"system is CPU-bound): median {s['cpu_ratio_median']:.3f}, worst round "
        f"{s['cpu_ratio_worst']:.3f} (overhead {s['cpu_overhead_median_pct']}%, worst "
        f"{s['cpu_overhead_worst_pct']}%).** Target: at most 15%.",
        "",
        f"Shadow coverage: {on['shadow_rows']:,} shadow rows logged for {on['requests']:,} "
        f"requests answered with a challenger in shadow "
        f"({100 * on['shadow_rows'] / max(1, on['requests']):.1f}%). `pgmlops_live_rows_total` "
        f"at the end (role/outcome, all workers): {res['live_outcomes']}.",
        "",
    ]
    if res.get("note"):
        lines += [res["note"], ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "shadow-overhead.md")
    ap.add_argument("--keep", action="store_true", help="keep the database and temp dir")
    ap.add_argument("--render", type=Path, help="only write the report of this results .json")
    ap.add_argument("--note", help="a paragraph added to the report (what this run changed)")
    args = ap.parse_args()
    if args.render:
        res = json.loads(args.render.read_text())
        res["summary"] = summarize(res["rounds_detail"])
        if args.note:
            res["note"] = args.note
        args.render.write_text(json.dumps(res, indent=2, default=str))
        args.render.with_suffix(".md").write_text(markdown(res))
        return 0
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    res: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/shadow_overhead.py " + " ".join(sys.argv[1:]),
        "rounds": args.rounds,
        "duration": args.duration,
        "connections": args.connections,
        "workers": args.workers,
        "machine": machine(),
        "loadavg_start": _loadavg(),
        "note": args.note,
    }
    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-shadow-bench-"))
    target: Target | None = None
    counter: RowCounter | None = None
    setup = None
    try:
        setup = set_up(workdir)
        res["version"] = setup.version
        res["estimator"] = setup.model_version.card.estimator.rsplit(".", 1)[-1]
        train = ["train", "--data", "churn.csv", "--target", "Exited", "--json"]
        challenger = run_cli([*train, "--param", "max_iter=150"], setup.env, workdir)
        res["challenger"] = challenger["version"]
        say(f"challenger v{challenger['version']} trained")
        target = pgmlops_target(setup, workers=args.workers, logging=True)
        target.start()
        target.wait_ready()
        counter = RowCounter(setup.env["PGMLOPS_DATABASE_URL"])
        say("warm-up: 3 s of wrk with and without the shadow")
        for version in (res["challenger"], None):
            deploy(target, version)
            w = wrk(target, 3, args.connections)
            if w["non_2xx"] or w["socket_errors"]:
                raise RuntimeError(f"warm-up errors:\n{w['raw']}")
        deployed: int | None = None
        detail: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            order = MODES if rnd % 2 == 0 else MODES[::-1]
            this: dict[str, Any] = {"order": " then ".join(order)}
            for mode in order:
                want = res["challenger"] if mode == MODES[1] else None
                if want != deployed:  # ABBA: the second run of a round keeps the first's state
                    deploy(target, want)
                    deployed = want
                r = one_run(target, counter, args)
                this[mode] = r
                say(
                    f"round {rnd + 1} {mode}: {r['rps']:,.0f} req/s p99 {r['p99_ms']} ms, "
                    f"rows +{r['rows']} (shadow +{r['shadow_rows']}); cores: server "
                    f"{r['server_cores']} pg {r['postgres_cores']} other {r['other_cores']}"
                )
            detail.append(this)
            a, b = this[MODES[0]]["rps"], this[MODES[1]]["rps"]
            say(f"round {rnd + 1}: ratio {b / a:.3f}")
        res["rounds_detail"] = detail
        res["live_outcomes"] = live_outcomes(target)
        res["summary"] = summarize(detail)
        res["loadavg_end"] = _loadavg()
    finally:
        if target is not None:
            target.stop()
        if counter is not None:
            counter.close()
        if setup is not None and setup.ctx is not None:
            setup.ctx.close()
        if not args.keep:
            drop_database()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir} and database {DB_NAME}")
    md = markdown(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
