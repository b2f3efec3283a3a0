"""Datasets for bench/honesty.py: the churn generator and real data, and how windows are drawn."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.demo_data import make_churn

# -- datasets ---------------------------------------------------------------------------


# (rows, seed, window) -> frame with the target; ``window`` splits it into independent windows
Draw = Callable[..., pd.DataFrame]


@dataclass
class Source:
    """A dataset: its training frame and how to draw windows under each scenario."""

    name: str
    target: str
    train: pd.DataFrame
    note: str
    # scenario name -> draw(rows, seed, window=None)
    draw: dict[str, Draw] = field(default_factory=dict)
    # features shifted by the "one feature" / "4 features" scenarios
    shifted_one: str = ""
    shifted_four: list[str] = field(default_factory=list)
    categorical: str | None = None
    mix_note: str = ""
    # covariate-shift scenarios (for CBPE/DLE error and the trigger policies)
    covariate: list[str] = field(default_factory=list)
    # knob -> draw with the concept shifted (alone, and on top of a covariate shift)
    concept: Callable[[float], Draw] | None = None
    concept_shifted: Callable[[float], Draw] | None = None
    # real data: the held-out pool's size (windows larger than it are bootstrap resamples)
    pool_rows: int | None = None


def demo_source(quick: bool) -> Source:
    """The churn generator: training rows as `pgmlops demo` makes them, windows always fresh."""
    train = make_churn(20_000, seed=7)
    sd = train["CreditScore"].std()

    def fresh(**knobs: Any) -> Draw:
        return lambda rows, seed, window=None: make_churn(rows, seed=seed, **knobs)

    def shift_score(k: float) -> Draw:
        def draw(rows: int, seed: int, window: int | None = None) -> pd.DataFrame:
            frame = make_churn(rows, seed=seed)
            frame["CreditScore"] = np.rint(frame["CreditScore"] + k * sd).astype(np.int64)
            return frame

        return draw

    mix = {"France": 0.4, "Germany": 0.35, "Spain": 0.25}
    src = Source(
        name="demo",
        target="Exited",
        train=train,
        note=(
            "demo churn generator: reference model trained on make_churn(20,000, seed=7) as "
            "`pgmlops demo` does; every window is fresh rows from the generator (seeds ≥ 1000)"
        ),
        shifted_one="CreditScore",
        shifted_four=["Age", "CreditScore", "Balance", "EstimatedSalary"],
        categorical="Geography",
    )
    src.draw = {
        "none": fresh(),
        "one_0.2": shift_score(0.2),
        "one_0.5": shift_score(0.5),
        "four_0.2": fresh(numeric_shift=0.2),
        "catmix": fresh(category_mix=mix),
    }
    src.mix_note = "Geography mix France/Germany/Spain 0.50/0.25/0.25 → 0.40/0.35/0.25"
    for k in (-1.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0):
        src.draw[f"cov_numeric_{k}"] = fresh(numeric_shift=k)
    src.draw["cov_mix_germany"] = fresh(category_mix={"France": 0.3, "Germany": 0.5, "Spain": 0.2})
    src.draw["cov_missing_0.3"] = fresh(missing_rate=0.3)
    src.covariate = [k for k in src.draw if k.startswith("cov_")]
    src.concept = lambda c: fresh(concept_shift=c)
    src.concept_shifted = lambda c: fresh(numeric_shift=0.5, concept_shift=c)
    return src


def _statsmodels(name: str) -> pd.DataFrame:
    try:
        import statsmodels.datasets as datasets
    except ImportError:
        sys.exit("--dataset fair/randhie needs statsmodels: pip install -e '.[bench]'")
    return getattr(datasets, name).load_pandas().data


def _plotnine_diamonds() -> pd.DataFrame:
    try:
        from plotnine.data import diamonds
    except ImportError:
        sys.exit("--dataset diamonds needs plotnine: pip install -e '.[bench]'")
    return diamonds.copy()


def real_frame(name: str) -> tuple[pd.DataFrame, str, str, str]:
    """A real dataset as the benches use it: (frame, target, categorical column, note)."""
    if name == "fair":
        raw = _statsmodels("fair")
        frame = raw.drop(columns=["affairs"]).assign(
            occupation=raw["occupation"].map(lambda v: f"occ{int(v)}"),
            had_affair=(raw["affairs"] > 0).astype(np.int64),
        )
        target, categorical = "had_affair", "occupation"
        note = "statsmodels fair (6,366 rows; target affairs > 0; occupation as a category)"
    elif name == "randhie":
        raw = _statsmodels("randhie")
        health = np.select(
            [raw["hlthp"] == 1, raw["hlthf"] == 1, raw["hlthg"] == 1],
            ["poor", "fair", "good"],
            "excellent",
        )
        frame = raw.drop(columns=["hlthg", "hlthf", "hlthp"]).assign(health=health)
        frame["mdvis"] = frame.pop("mdvis").astype(np.float64)
        target, categorical = "mdvis", "health"
        note = (
            "statsmodels randhie (20,190 rows; regression on mdvis; health dummies as a category)"
        )
    elif name == "diamonds":
        raw = _plotnine_diamonds()
        frame = raw.drop(columns=["cut"]).assign(
            color=raw["color"].astype(str),
            clarity=raw["clarity"].astype(str),
            ideal=(raw["cut"].astype(str) == "Ideal").astype(np.int64),
        )
        target, categorical = "ideal", "clarity"
        note = (
            "plotnine diamonds (53,940 rows, inside the plotnine wheel; target cut == Ideal; "
            "color and clarity as categories)"
        )
    else:
        raise SystemExit(f"unknown dataset {name!r}: use demo, fair, randhie or diamonds")
    return frame, target, categorical, note


def real_source(name: str) -> Source:
    """A statsmodels dataset: 60% trains the model, windows resample the other 40%."""
    frame, target, categorical, note = real_frame(name)
    rng = np.random.default_rng(11)
    held = rng.random(len(frame)) < 0.4
    train, pool = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    numeric = [
        c
        for c in pool.columns
        if c not in (target, categorical) and pd.api.types.is_numeric_dtype(pool[c])
    ]
    by_levels = sorted(numeric, key=lambda c: -pool[c].nunique())
    sds = train[numeric].std()

    def tilt(columns: list[str], k: float) -> np.ndarray:
        """Resampling weights moving each column's mean by k sd (exponential tilting)."""
        logw = np.zeros(len(pool))
        for col in columns:
            z = ((pool[col] - pool[col].mean()) / sds[col]).to_numpy()
            beta = _solve_tilt(z, k)
            logw += beta * z
        w = np.exp(logw - logw.max())
        return w / w.sum()

    def resample(weights: np.ndarray | None) -> Draw:
        def draw(rows: int, seed: int, window: int | None = None) -> pd.DataFrame:
            rng = np.random.default_rng(seed)
            if weights is None and window and window <= len(pool):
                # In-distribution windows: each an independent subsample WITHOUT replacement,
                # so a window is an i.i.d. sample (duplicates would overpower the tests).
                count = rows // window
                picks = [rng.choice(len(pool), size=window, replace=False) for _ in range(count)]
                return pool.iloc[np.concatenate(picks)].reset_index(drop=True)
            pick = rng.choice(len(pool), size=rows, p=weights)
            return pool.iloc[pick].reset_index(drop=True)

        return draw

    counts = pool[categorical].value_counts(normalize=True)
    top, second = counts.index[0], counts.index[1]
    # Category mix: the most common category loses 10 points of share to the second.
    share = pool[categorical].map(counts)
    goal = counts.copy()
    goal[top] -= 0.10
    goal[second] += 0.10
    mix = (pool[categorical].map(goal) / share).to_numpy()
    src = Source(
        name=name,
        target=target,
        train=train,
        note=(
            f"{note}: {len(train):,} rows train the model, {len(pool):,} held-out rows are the "
            "pool windows come from: in-distribution windows are subsamples without "
            "replacement (bootstrap when larger than the pool), shifted ones tilted bootstrap "
            "resamples"
        ),
        shifted_one=by_levels[0],
        shifted_four=by_levels[:4],
        categorical=categorical,
        pool_rows=len(pool),
    )
    src.draw = {
        "none": resample(None),
        "one_0.2": resample(tilt(by_levels[:1], 0.2)),
        "one_0.5": resample(tilt(by_levels[:1], 0.5)),
        "four_0.2": resample(tilt(by_levels[:4], 0.2)),
        "catmix": resample(mix / mix.sum()),
    }
    src.mix_note = f"{categorical}: {top} {counts[top]:.2f} → {goal[top]:.2f}, {second} +0.10"
    for col in by_levels[:3]:
        for k in (-2.0, -1.0, 1.0, 2.0):
            src.draw[f"cov_{col}_{k:+.0f}sd"] = resample(tilt([col], k))
    src.covariate = [k for k in src.draw if k.startswith("cov_")]
    y = pool[target].to_numpy()

    def noisy(q: float, weights: np.ndarray | None = None) -> Draw:
        def draw(rows: int, seed: int, window: int | None = None) -> pd.DataFrame:
            frame = resample(weights)(rows, seed, window)
            rng = np.random.default_rng(seed + 1)
            swap = rng.random(rows) < q
            frame.loc[swap, target] = rng.choice(y, size=int(swap.sum()))
            return frame

        return draw

    src.concept = noisy
    src.concept_shifted = lambda q: noisy(q, tilt(by_levels[:1], 1.0))
    return src


def _solve_tilt(z: np.ndarray, k: float) -> float:
    """beta such that the exp(beta z)-weighted mean of z is k (bisection)."""
    lo, hi = -10.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        w = np.exp(mid * z - (mid * z).max())
        if (w * z).sum() / w.sum() < k:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
