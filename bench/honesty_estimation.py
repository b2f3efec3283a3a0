"""Section `estimation` of bench/honesty.py: estimated performance and the retraining triggers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from honesty_bench import Bench, drift_trigger, signals
from honesty_rates import Rate, Row


def estimation(bench: Bench, windows: int, log: Callable) -> tuple[list[Row], dict[str, Any]]:
    """CBPE / DLE error on covariate-shift windows, and the trigger policies."""
    src, trig = bench.source, drift_trigger()
    per = max(4, windows // len(src.covariate))
    baseline = bench.true_metric(src.draw["none"](100_000, 80))
    scenarios: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    errors: dict[str, list[float]] = {}
    covered: list[bool] = []
    concept = src.concept_shifted(bench.concept_knob)
    draws = {**{k: src.draw[k] for k in src.covariate}, "shift+concept": concept}
    for key, draw in draws.items():
        started = time.perf_counter()
        pooled = bench.true_metric(draw(100_000, 81))
        results = [signals(r, trig) for r in bench.assess(draw, 5_000, per, 8000)]
        log(f"{key}: true {bench.primary} {pooled:.3f}, {time.perf_counter() - started:.1f}s")
        loss = (
            (pooled - baseline) / baseline if bench.card.task == "regression" else baseline - pooled
        )
        scenarios[key] = {"true_metric": pooled, "loss": loss, "windows": results}
        if key == "shift+concept":
            continue
        for r in results:
            for metric, value in r["estimated_metrics"].items():
                truth = r["labelled_metrics"].get(metric)
                if value is not None and truth is not None:
                    errors.setdefault(metric, []).append(abs(value - truth))
            interval = r["estimated_interval"]
            if isinstance(interval, dict):  # one interval per metric
                interval = interval.get(bench.primary)
            truth = r["labelled_metrics"].get(bench.primary)
            if interval and truth is not None:
                covered.append(interval[0] <= truth <= interval[1])
    kind = "DLE" if bench.card.task == "regression" else "CBPE"
    n_windows = sum(len(s["windows"]) for k, s in scenarios.items() if k != "shift+concept")
    if not errors:
        rows.append(
            Row(
                "estimation",
                f"{kind} error",
                f"{n_windows} covariate-shift windows",
                text="n/a (estimated_performance gives no estimate)",
            )
        )
    for metric in sorted(errors, key=lambda m: m != bench.primary):
        errs = errors[metric]
        target = "≤ 0.0141 (NannyML 0.13.1)" if metric == "roc_auc" else None
        mae = float(np.mean(errs))
        rows.append(
            Row(
                "estimation",
                f"{kind} mean absolute error of {metric}",
                f"{len(errs)} windows of 5,000",
                text=f"{mae:.4f} (max {max(errs):.4f})",
                target=target,
                verdict=("met" if mae <= 0.0141 else "**missed**") if target else None,
            )
        )
    if covered:
        rows.append(
            Row(
                "estimation",
                f"{kind} interval covers the true {bench.primary}",
                f"{len(covered)} windows",
                Rate(sum(covered), len(covered)),
            )
        )
    rows += _trigger_rows(bench, scenarios)
    return rows, {
        k: {"true_metric": v["true_metric"], "loss": v["loss"]} for k, v in scenarios.items()
    }


def _trigger_rows(bench: Bench, scenarios: dict[str, dict[str, Any]]) -> list[Row]:
    """Drift retrain trigger: windows firing on harmless vs harmful shifts."""
    regression = bench.card.task == "regression"
    harm = 0.05 if regression else 0.02  # relative loss for regression, AUC points otherwise
    harmless_cut = 0.01 if regression else 0.005
    groups: dict[str, list[dict[str, Any]]] = {"harmless": [], "harmful": []}
    names: dict[str, list[str]] = {"harmless": [], "harmful": []}
    for key, s in scenarios.items():
        group = (
            "harmful" if s["loss"] >= harm else ("harmless" if s["loss"] < harmless_cut else None)
        )
        if group:
            groups[group] += s["windows"]
            names[group].append(f"{key} ({s['loss']:+.3f})")
    unit = "relative loss" if regression else f"{bench.primary} loss"
    rows = []
    policies = ("any", "harmful") if drift_trigger() else ("today",)
    for group, wins in groups.items():
        what = (
            f"{group} shifts ({unit} {'<' if group == 'harmless' else '≥'} "
            f"{harmless_cut if group == 'harmless' else harm}): {', '.join(names[group]) or 'none'}"
        )
        for policy in policies:
            hits = sum(w[f"trigger_{policy}"] for w in wins)
            label = "today's (dataset drift)" if policy == "today" else f"policy `{policy}`"
            rows.append(
                Row(
                    "drift trigger",
                    f"{label} on {what}",
                    "5,000 rows",
                    Rate(hits, len(wins)) if wins else None,
                )
            )
        if policies == ("today",):
            rows.append(
                Row(
                    "drift trigger",
                    f"policy `harmful` on {group} shifts",
                    "5,000 rows",
                    text="n/a (no services.triggers.drift_trigger)",
                )
            )
    return rows
