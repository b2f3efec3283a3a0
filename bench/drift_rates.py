"""False-alarm and detection rates of drift detection on the demo churn generator.

Run: ``python bench/drift_rates.py [--windows 200] [--sizes 200,500,5000] [--ref 12000]``.
The reference profile is built from ``make_churn(ref, seed=0)`` as training does; every
window is fresh rows from the same generator (seeds never reused), optionally shifted:

- ``null``: no change;
- ``one_0.2`` / ``one_0.5``: Age moved by 0.2 / 0.5 of its own sd;
- ``balance_0.2``: the non-zero Balance moved by 0.2 of the generator's sd (30,100), as
  ``make_churn(numeric_shift=...)`` does: W1/sd about 0.07 over the whole column;
- ``four_0.2``: Age, CreditScore, Balance and EstimatedSalary each moved by 0.2 of its sd;
- ``mix``: Geography drawn 40/30/30 instead of 50/25/25.

Prints, per case and window size, the share of windows with dataset drift, drifted by the
multivariate detector, and (null case) the per-feature false-positive rate; for the
one-feature cases the share of windows where the shifted feature was flagged.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.drift import DriftPolicy, build_profile, compare
from pgmlops.domain.schema import as_float32_grid
from pgmlops.domain.training.frame import prepare_training_frame

FOUR = ["Age", "CreditScore", "Balance", "EstimatedSalary"]
CASES = ("null", "one_0.2", "one_0.5", "balance_0.2", "four_0.2", "mix")
TARGET = {"one_0.2": "Age", "one_0.5": "Age", "balance_0.2": "Balance", "mix": "Geography"}
HEADER = (
    "| case | n | dataset drift | multivariate | per-feature flags | target flagged | s/window |"
)


def shifted(window: pd.DataFrame, case: str, sds: dict[str, float]) -> pd.DataFrame:
    """The window with the case's change applied (shifts in units of the reference sd)."""
    out = window.copy()
    if case.startswith("one_"):
        out["Age"] = out["Age"] + float(case[4:]) * sds["Age"]
    elif case == "balance_0.2":
        funded = out["Balance"] > 0
        out.loc[funded, "Balance"] = out.loc[funded, "Balance"] + 0.2 * 30_100.0
    elif case == "four_0.2":
        for name in FOUR:
            out[name] = out[name] + 0.2 * sds[name]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--sizes", default="200,500,5000")
    parser.add_argument("--ref", type=int, default=12_000)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    x, _, schema = prepare_training_frame(
        make_churn(args.ref, seed=0), "Exited", drop=["CustomerId"]
    )
    profile = build_profile(x, schema)
    sds = {name: float(x[name].std()) for name in FOUR}
    policy = DriftPolicy()
    print(f"reference {args.ref:,} rows, {args.windows} windows per cell, policy {policy}")
    print(HEADER)
    print("|---|---:|---:|---:|---:|---:|---:|")
    seed = 10_000
    for case in args.cases.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            drift = multi = flags = target = 0
            started = time.perf_counter()
            for _ in range(args.windows):
                seed += 1
                mix = {"France": 0.4, "Germany": 0.3, "Spain": 0.3} if case == "mix" else None
                window = shifted(make_churn(n, seed=seed, category_mix=mix), case, sds)
                for name in schema.numeric:
                    window[name] = as_float32_grid(window[name])
                report = compare(profile, window, policy, schema=schema)
                drift += report.dataset_drift
                multi += bool(report.multivariate and report.multivariate.drifted)
                flags += len(report.drifted_features)
                if case in TARGET:
                    target += report.feature(TARGET[case]).drifted
            seconds = (time.perf_counter() - started) / args.windows
            w = args.windows
            tgt = f"{target / w:.1%}" if case in TARGET else "-"
            print(
                f"| {case} | {n:,} | {drift / w:.1%} | {multi / w:.1%} | "
                f"{flags / (w * len(schema.features)):.2%} | {tgt} | {seconds:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
