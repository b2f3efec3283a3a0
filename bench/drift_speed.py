"""Time and memory of drift detection on 1M reference x 1M current rows x 20 features.

Run: ``python bench/drift_speed.py [--rows N] [--repeats R] [--object]``. Prints each run's
seconds for building the reference profile and comparing the current window, the median,
and the peak RSS growth of the process over the frames themselves.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.drift import DriftPolicy, detect_drift

N_NUMERIC = 10
N_CATEGORICAL = 10


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux and bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _reset_peak_rss() -> bool:
    """Forget the peak reached while building the frames (Linux only); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def make_frames(rows: int, as_object: bool, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames; the current one shifts num_0, num_1 and cat_0."""
    rng = np.random.default_rng(seed)
    frames = []
    for part in ("reference", "current"):
        cols: dict[str, object] = {}
        for i in range(N_NUMERIC):
            shift = 0.5 if part == "current" and i < 2 else 0.0
            cols[f"num_{i}"] = rng.normal(shift, 1.0 + 0.1 * i, rows)
        for i in range(N_CATEGORICAL):
            k = 5 + (15 * i) // (N_CATEGORICAL - 1)
            labels = np.array([f"c{i}_{j}" for j in range(k)], dtype=object)
            weights = np.arange(1, k + 1, dtype=float)
            if part == "current" and i == 0:
                weights = weights[::-1]
            codes = rng.choice(k, size=rows, p=weights / weights.sum())
            cols[f"cat_{i}"] = pd.Series(labels[codes], dtype=object if as_object else "str")
        frames.append(pd.DataFrame(cols))
    return frames[0], frames[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--object", action="store_true", help="object instead of str columns")
    args = parser.parse_args()

    reference, current = make_frames(args.rows, args.object)
    numeric = [f"num_{i}" for i in range(N_NUMERIC)]
    categorical = [f"cat_{i}" for i in range(N_CATEGORICAL)]
    dtype = "object" if args.object else "str"
    print(f"{args.rows:,} x {args.rows:,} rows, {N_NUMERIC} numeric + {N_CATEGORICAL} {dtype}")
    reset = _reset_peak_rss()
    baseline = _peak_rss_mb()
    times = []
    report = None
    for run in range(args.repeats):
        started = time.perf_counter()
        report = detect_drift(
            reference, current, numeric=numeric, categorical=categorical, policy=DriftPolicy()
        )
        times.append(time.perf_counter() - started)
        print(f"run {run + 1}: {times[-1]:.3f} s")
    assert report is not None
    print(f"median: {statistics.median(times):.3f} s")
    peak = _peak_rss_mb()
    extra = f"{peak - baseline:.0f} MB over the frames" if reset else "peak not resettable here"
    print(f"peak RSS: {peak:.0f} MB ({extra}, which took {baseline:.0f} MB)")
    print(f"drifted: {', '.join(report.drifted_features)}")
    # The multivariate detector is a fixed cost on top of the per-column tests: say if it ran.
    mv = report.multivariate
    print(f"multivariate detector: {mv.model_dump() if mv else report.multivariate_note}")


if __name__ == "__main__":
    main()
