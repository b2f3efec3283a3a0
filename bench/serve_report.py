"""serve_bench.py's report: medians of the runs, the Markdown table and the targets met."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from serve_targets import Target

# -- report -------------------------------------------------------------------------------------


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(t: Target) -> dict[str, Any]:
    return {
        "label": t.label,
        "writer": t.env.get("PGMLOPS_SERVING__LOG_WRITER", "default"),
        "rps_runs": [round(r["rps"], 1) for r in t.runs],
        "rps": round(_med(t.runs, "rps"), 1),
        "p50_ms": round(_med(t.runs, "p50_ms"), 3),
        "p99_ms": round(_med(t.runs, "p99_ms"), 3),
        "requests": sum(r["requests"] for r in t.runs),
        "non_2xx": sum(r["non_2xx"] + r["socket_errors"] for r in t.runs),
        "rows_logged": sum(r.get("rows", 0) for r in t.runs) if t.logging is not None else None,
        "server_cores": round(_med(t.runs, "server_cores"), 2),
        "server_cpu_us": round(_med(t.runs, "server_cpu_us"), 1),
        "serving_cpu_us_runs": [r.get("serving_cpu_us") for r in t.runs],
        "log_process_cpu_us": round(_med(t.runs, "log_process_cpu_us"), 1),
        "p99_ms_runs": [r.get("p99_ms") for r in t.runs],
        "loadgen_cores": round(_med(t.runs, "loadgen_cores"), 2),
        "postgres_cores": round(_med(t.runs, "postgres_cores"), 2),
        "other_cores": round(_med(t.runs, "other_cores"), 2),
    }


FLOOR_ROWS = (
    ("server_path", "**server path**: pydantic record model + `predict_records` (ONNX)"),
    ("validate", "├ pydantic validation of one record"),
    ("predict_records", "├ `predict_records` (feeds, session.run, response item, log record)"),
    ("engine_predict_one", "└ `OnnxEngine.predict_one` alone (feeds, session.run, outputs)"),
    ("onnx_session_run", "**raw onnxruntime** `session.run` on one row (feeds prebuilt)"),
    ("sklearn_predict_proba", "**scikit-learn** `pipeline.predict_proba` on a one-row DataFrame"),
    ("sklearn_predict_proba_1t", "└ the same with OpenMP limited to 1 thread (threadpoolctl)"),
    ("pipeline_engine_predict_one", "`PipelineEngine.predict_one` (DataFrame + coerce + predict)"),
)


def markdown(res: dict[str, Any]) -> str:
    m, fl, s = res["machine"], res["floor"], res["servers"]
    lines = [
        "# Serving benchmark",
        "",
        f"Run {res['started']} with `{res['command']}` "
        f"({res['duration_s']:g} s per wrk run, {res['runs']} runs each, "
        f"`wrk -t1 -c{res['connections']} --latency`, configurations interleaved per round).",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; pgmlops {m['pgmlops']}, scikit-learn {m['scikit-learn']}, "
        f"onnxruntime {m['onnxruntime']}, {m['wrk']}. Load generator, servers and PostgreSQL 15 "
        "share the same cores. Load average at start: "
        f"{' '.join(m['loadavg_at_start'])}; idle check before measuring: "
        f"{res['quiet_cores']} cores busy.",
        "",
        f"Model: demo churn, 20,000 rows (seed 7), {res['estimator']}, v{res['version']}, "
        f"served with onnxruntime (ONNX copy validated at training).",
        "",
        "## Floor: in-process predict time of one record (median of many calls)",
        "",
        "Wall time and this thread's CPU time per call, medians over chunks of calls. CPU time "
        "is the steadier figure when other work shares the cores.",
        "",
        "| path | wall µs per record | CPU µs per record |",
        "| --- | ---: | ---: |",
        *[f"| {label} | {fl[key + '_us']} | {fl[key + '_cpu_us']} |" for key, label in FLOOR_ROWS],
        "",
        f"ONNX vs scikit-learn probability on that record: |diff| = "
        f"{fl['onnx_vs_sklearn_abs_diff']:.2g}.",
        "",
        "## Single-record throughput and latency (wrk, closed loop, 16 connections)",
        "",
        "| server | req/s (median) | runs | p50 ms | p99 ms | errors | rows logged / "
        "requests | server CPU µs/req | server cores | wrk cores | postgres cores | other cores |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in s.values():
        logged = "—"
        if v["rows_logged"] is not None:
            logged = f"{v['rows_logged']:,} / {v['requests']:,}"
        runs = ", ".join(f"{x:,.0f}" for x in v["rps_runs"])
        lines.append(
            f"| {v['label']} | **{v['rps']:,.0f}** | {runs} | {v['p50_ms']:.2f} | "
            f"{v['p99_ms']:.2f} | {v['non_2xx']} | {logged} | {v['server_cpu_us']:,.0f} | "
            f"{v['server_cores']} | {v['loadgen_cores']} | {v['postgres_cores']} | "
            f"{v['other_cores']} |"
        )
    lines += [
        "",
        "`rows logged`: growth of the `predictions` table during the measured runs (after the "
        "writer's last flush) against the requests wrk completed. `server CPU µs/req`: CPU "
        "time of the server's processes divided by requests served (median of runs) -- the "
        "figure least disturbed by other work. `other cores`: CPU used on this machine by "
        "processes that are neither the server, wrk nor PostgreSQL (background noise on a "
        "shared machine); medians of runs.",
        "",
    ]
    nz = res.get("noise")
    if nz:
        lines += [
            f"Shared machine: a run during which other processes used more than "
            f"{nz['max_other_cores']} cores was repeated (quietest attempt kept); "
            f"{nz['repeated_runs']} repeats were needed; runs still above the limit: "
            f"{', '.join(nz['still_noisy']) or 'none'}.",
            "",
        ]
    if res.get("logging_note"):
        lines += [res["logging_note"], ""]
    hp = res.get("half_peak")
    if hp:
        lines += [
            "## Latency at half of the 2-worker peak (open loop, constant rate)",
            "",
            "Load generator: `serve_bench.py`'s own asyncio (uvloop) client, 16 keep-alive "
            "connections, each sending on a fixed schedule (wrk2 style), "
            f"{res['duration_s']:g} s per run, {len(hp['runs'])} runs; latency measured from the "
            "send, and from the scheduled time (corrects coordinated omission; includes the ~1 ms "
            "timer granularity of the event loop).",
            "",
            "| target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | p99 from schedule ms "
            "| errors | generator cores |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in hp["runs"]:
            lines.append(
                f"| {r['target_rps']:,.0f} | {r['achieved_rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['p99_sched_ms']:.2f} | "
                f"{r['errors']} | {r['loadgen_cores']} |"
            )
        lines += [
            f"| **median** | | **{hp['p50_ms']:.2f}** | **{hp['p99_ms']:.2f}** | | "
            f"**{hp['p99_sched_ms']:.2f}** | | |",
            "",
        ]
    hw = res.get("half_peak_wrk")
    if hw:
        lines += [
            "The same load from `wrk` (C, epoll; bench/wrk_rate.lua): one shared schedule for "
            "the 16 connections, request k due at start + k/rate, a free connection waiting for "
            "the next due time (wrk's millisecond timer); latency measured by wrk from the send.",
            "",
            "| target req/s | achieved req/s | p50 ms | p75 ms | p90 ms | p99 ms | errors | "
            "wrk cores |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in hw["runs"]:
            lines.append(
                f"| {r['target_rps']:,.0f} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p75_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['non_2xx'] + r['socket_errors']} | {r['loadgen_cores']} |"
            )
        lines += [
            f"| **median** | **{hw['rps']:,.0f}** | **{hw['p50_ms']:.2f}** | | | "
            f"**{hw['p99_ms']:.2f}** | | |",
            "",
        ]
    hx = res.get("half_peak_writer")
    if hx:
        lines += [
            f"The same two loads against the 2-worker server with `log_writer: {hx['writer']}`, "
            "each run right after the default server's run of the same round: p99 ms, open "
            "loop "
            + ", ".join(f"{r['p99_ms']:.2f}" for r in hx["open_runs"])
            + f" (**median {hx['p99_ms']:.2f}**); wrk "
            + ", ".join(f"{r['p99_ms']:.2f}" for r in hx["wrk_runs"])
            + f" (**median {hx['p99_wrk_ms']:.2f}**).",
            "",
        ]
    b = res.get("batch")
    if b:
        lines += [
            "## 10,000-record batch, POST /predict, 2 workers, logging on",
            "",
            f"Client-side wall time with httpx (body {b['body_bytes'] / 1e6:.2f} MB pre-encoded, "
            "response parsed, 10,000 predictions checked), each batch after the previous one's "
            f"log rows were written: runs {', '.join(str(t) for t in b['times_ms'])} ms; "
            f"**median {b['median_ms']} ms**.",
            "",
        ]
    lines += ["## Targets (issue 3)", "", "| target | measured | met |", "| --- | --- | --- |"]
    for name, measured, ok in res["targets"]:
        met = "—" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {name} | {measured} | {met} |")
    lines.append("")
    return "\n".join(lines)


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    s = res["servers"]
    out: list[tuple[str, str, bool | None]] = []
    on2 = s.get("pgmlops_on_2w")
    if on2:
        out.append(
            (
                ">= 4,000 req/s, 2 workers, logging on",
                f"{on2['rps']:,.0f} req/s",
                on2["rps"] >= 4000,
            )
        )
    hp, hw = res.get("half_peak"), res.get("half_peak_wrk")
    if hp:
        out.append(
            (
                "p99 < 10 ms at half of peak (asyncio open-loop generator)",
                f"p99 {hp['p99_ms']:.2f} ms at {hp['achieved_rps']:,.0f} req/s "
                f"({hp['p99_sched_ms']:.2f} ms from schedule)",
                hp["p99_ms"] < 10,
            )
        )
    if hw:
        out.append(
            (
                "p99 < 10 ms at half of peak (wrk at a constant rate)",
                f"p99 {hw['p99_ms']:.2f} ms at {hw['rps']:,.0f} req/s",
                hw["p99_ms"] < 10,
            )
        )
    hx = res.get("half_peak_writer")
    if hx:
        out.append(
            (
                f"(context) p99 at half of peak, log_writer: {hx['writer']}, same rounds",
                f"p99 {hx['p99_ms']:.2f} ms (asyncio open loop), {hx['p99_wrk_ms']:.2f} ms (wrk)",
                None,
            )
        )
    for w, prefix in itertools.product((1, 2), ("pgmlops", "writer")):
        on, off = s.get(f"{prefix}_on_{w}w"), s.get(f"pgmlops_off_{w}w")
        if on and off:
            # Issue 11 §4: the on/off ratio of the runs made back to back in the same round
            # (a fast or slow spell of the machine hits both), its median and its worst
            # round; and the serving processes' CPU per request (the logging processes'
            # CPU is counted apart), same-round differences.
            ratios = [a / b for a, b in zip(on["rps_runs"], off["rps_runs"], strict=False)]
            paired, worst = 1 - statistics.median(ratios), 1 - min(ratios)
            cpu_on = [x or 0.0 for x in on["serving_cpu_us_runs"]]
            cpu_off = [x or 0.0 for x in off["serving_cpu_us_runs"]]
            extra = [a - b for a, b in zip(cpu_on, cpu_off, strict=False)]
            name = f"{w} worker{'s' if w > 1 else ''}"
            if prefix != "pgmlops":
                name += f", log_writer: {on['writer']}"
            out.append(
                (
                    f"logging costs <= 8% of throughput ({name}, same-round on/off ratio)",
                    f"{paired:.1%} by the median of same-round ratios (rounds: "
                    + ", ".join(f"{1 - r:.1%}" for r in ratios)
                    + f"; worst {worst:.1%}); medians {on['rps']:,.0f} on vs "
                    f"{off['rps']:,.0f} off req/s",
                    paired <= 0.08,
                )
            )
            out.append(
                (
                    f"logging costs <= 20 µs of serving-process CPU per request ({name})",
                    f"{statistics.median(extra):+.1f} µs by the median of same-round "
                    "differences (rounds: "
                    + ", ".join(f"{x:+.1f}" for x in extra)
                    + f"); the logging process{'es' if w > 1 else ''} "
                    f"{on['log_process_cpu_us']:.1f} µs/req on top",
                    statistics.median(extra) <= 20,
                )
            )
    for w in (1, 2):
        ours, base = s.get(f"pgmlops_on_{w}w"), s.get(f"baseline_on_{w}w")
        if ours and base:
            paired = statistics.median(
                a / b for a, b in zip(ours["rps_runs"], base["rps_runs"], strict=False)
            )
            out.append(
                (
                    f"(context) this code vs the baseline code, {w} worker{'s' if w > 1 else ''}",
                    f"{ours['rps']:,.0f} vs {base['rps']:,.0f} req/s ({paired - 1:+.1%} by "
                    f"same-round ratios), p99 {ours['p99_ms']:.2f} vs {base['p99_ms']:.2f} ms, "
                    f"CPU {ours['server_cpu_us']:,.0f} vs {base['server_cpu_us']:,.0f} µs/req",
                    None,
                )
            )
    bare = s.get("bare_2w")
    if on2 and bare:
        out.append(
            (
                "(context) share of the bare FastAPI + onnxruntime ceiling, 2 workers",
                f"{on2['rps'] / bare['rps']:.0%} ({on2['rps']:,.0f} vs {bare['rps']:,.0f} req/s; "
                f"CPU {on2['server_cpu_us']:,.0f} vs {bare['server_cpu_us']:,.0f} µs/req)",
                None,
            )
        )
    ml = s.get("mlflow_2w")
    if on2 and ml:
        ratio = on2["rps"] / ml["rps"]
        out.append(
            (
                ">= 20x MLflow scoring server (2 workers each)",
                f"{ratio:.1f}x ({on2['rps']:,.0f} vs {ml['rps']:,.0f} req/s)",
                ratio >= 20,
            )
        )
    b = res.get("batch")
    if b:
        out.append(("10,000-record batch < 150 ms", f"{b['median_ms']} ms", b["median_ms"] < 150))
    return out
