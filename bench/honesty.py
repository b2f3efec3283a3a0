"""Are pgmlops' monitoring alarms and promotion gates statistically honest? One table.

Run: ``python bench/honesty.py [--dataset demo|fair|randhie|diamonds|all] [--windows N] [--quick]``.

A reference model is trained once with the real training service on a temporary SQLite
registry and promoted. Windows of "logged predictions" are then built in-process: rows are
scored by the version's serving engine through ``services.prediction.predict_records`` (the
same code ``POST /predict`` runs, ONNX when present), turned into the ``PredictionWindow``
the store's ``read_window`` returns (labels on every row), and judged by
``services.monitoring.assess_window`` — the code path of ``pgmlops monitor`` minus the SQL
read. Promotion rates go through the real train + promote services.

Data: ``demo`` draws every window as FRESH rows from the churn generator (never the
reference rows). ``fair`` (binary: affairs > 0, 6,366 rows) and ``randhie`` (regression:
mdvis, 20,190 rows) are real datasets bundled in statsmodels (``pip install -e .[bench]``,
no download); ``diamonds`` (binary: cut == Ideal, 53,940 rows) is bundled in plotnine.
40% of the rows are held out before training and windows come from that pool:
in-distribution ones as subsamples without replacement (never a bootstrap: a window larger
than the pool is not measured), covariate shifts as exponentially tilted
resamples (P(y|x) unchanged), a concept shift by replacing a share of the labels with
labels drawn from the pool. randhie is panel data (2,760 distinct feature rows in 20,190),
which the per-row tests do not expect.

Options: ``--dataset all`` runs the three in turn into one table; ``--quick`` uses 25
windows per cell and 3 cases per promotion kind (full: 100 and 20); ``--windows N`` and
``--promotions N`` set them. Writes bench/results/honesty.md and .json (``honesty-fair``,
``honesty-randhie`` for a single real dataset; ``--out STEM`` to choose).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from honesty_alarms import (
    calibrate_concept,
    concept_detection,
    detections,
    false_alarms,
    small_positives,
)
from honesty_bench import Bench, designs
from honesty_data import demo_source, real_source
from honesty_estimation import estimation
from honesty_promotions import promotions
from honesty_rates import Row, table

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (200, 500, 5_000)


# -- main -------------------------------------------------------------------------------

SECTIONS = (
    "false_alarms",
    "detections",
    "concept",
    "estimation",
    "promotions",
    "small_positives",
)


def run_dataset(
    name: str,
    windows: int,
    cases: int,
    quick: bool,
    log: Callable,
    sections: tuple[str, ...] = SECTIONS,
    concept_windows: int | None = None,
) -> list[Row]:
    """Every section (or the chosen ones) on one dataset, with its own temporary registry."""
    concept_windows = concept_windows or windows
    source = demo_source(quick) if name == "demo" else real_source(name)
    # One OpenMP thread: on a shared machine HistGradientBoosting's thread pool thrashes
    # (5x slower); the numbers are the same.
    with threadpool_limits(1), tempfile.TemporaryDirectory(prefix="pgmlops-honesty-") as tmp:
        bench = Bench(source, Path(tmp), promotion_rows=10_000 if quick else 20_000)
        estimator = bench.card.estimator.rsplit(".", 1)[-1]
        log(f"{name}: reference model trained ({estimator}, engine {bench.model.engine.name})")
        for what, design in designs(bench.profile):
            log(f"{name}: {what} reference {design}, worth 1/{design.inflation:.1f} of its rows")
        try:
            if set(sections) - {"small_positives", "promotions"}:
                bench.concept_knob = calibrate_concept(bench, quick)
                log(f"{name}: concept shift {bench.concept_text}")
            rows = false_alarms(bench, windows, SIZES, log) if "false_alarms" in sections else []
            if "detections" in sections:
                rows += detections(bench, windows, bench.concept_knob, log)
            elif "concept" in sections:
                rows += concept_detection(bench, concept_windows, bench.concept_knob, log)
            truths: dict[str, Any] = {}
            if "estimation" in sections:
                est_rows, truths = estimation(bench, windows, log)
                rows += est_rows
            if "promotions" in sections:
                rows += promotions(bench, cases, log)
            if "small_positives" in sections:
                rows += small_positives(bench, windows, log)
        finally:
            bench.close()
    for row in rows:
        row.data = name
    RUNS.append(
        {
            "dataset": name,
            "note": source.note,
            "engine": bench.model.engine.name,
            "estimator": estimator,
            "concept": bench.concept_text,
            "scenario_truth": truths,
            "promotion_reasons": bench.promotion_reasons,
        }
    )
    return rows


RUNS: list[dict[str, Any]] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=("demo", "fair", "randhie", "diamonds", "all"), default="demo"
    )
    parser.add_argument("--windows", type=int, default=None, help="windows per cell (default 100)")
    parser.add_argument("--promotions", type=int, default=None, help="cases per promotion kind")
    parser.add_argument("--quick", action="store_true", help="25 windows, 3 cases (~3 min)")
    parser.add_argument("--out", default=None, help="results file stem (default: honesty)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset of " + ", ".join(SECTIONS) + " (concept: only the "
        "concept-shift cell of detections)",
    )
    parser.add_argument(
        "--concept-windows",
        type=int,
        default=None,
        help="windows of the concept cell when run as section `concept` (default --windows)",
    )
    args = parser.parse_args()
    sections = tuple(args.sections.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    windows = args.windows or (25 if args.quick else 100)
    cases = args.promotions or (3 if args.quick else 20)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    names = ["demo", "fair", "randhie", "diamonds"] if args.dataset == "all" else [args.dataset]
    rows = [
        row
        for name in names
        for row in run_dataset(
            name, windows, cases, args.quick, log, sections, args.concept_windows
        )
    ]
    seconds = time.perf_counter() - started
    text = (
        f"# Statistical honesty\n\n"
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/honesty.py "
        f"{' '.join(sys.argv[1:])}` in {seconds / 60:.1f} min on {os.cpu_count()} cores "
        f"(load {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end), Python "
        f"{platform.python_version()}. Windows are scored by the serving engine through "
        "`predict_records` and judged by `services.monitoring.assess_window` with the default "
        "`monitoring` settings; every row of a window is labelled. A rate is hits/total = share "
        "[Wilson 95% interval]; a target is the issue's (10, 'Statistically honest "
        "decisions').\n\n"
        + "".join(f"- **{r['dataset']}**: {r['note']}; {r['concept']}.\n" for r in RUNS)
        + "\n"
        + table(rows)
        + "\n"
    )
    for run in RUNS:
        if run["promotion_reasons"]:
            text += f"\nFirst refusal (or error) per promotion kind, {run['dataset']}:\n\n"
            text += "".join(f"- {k}: {v}\n" for k, v in run["promotion_reasons"].items())
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = args.out or ("honesty" if args.dataset in ("demo", "all") else f"honesty-{args.dataset}")
    payload = {
        "argv": sys.argv[1:],
        "seconds": round(seconds, 1),
        "windows": windows,
        "promotion_cases": cases,
        "runs": RUNS,
        "rows": [r.to_json() for r in rows],
    }
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
