"""The reference profile of the training rows, counted over partitions on the cluster.

Moments, missing counts and category counts are exact sums over partitions. The quantile grid
and PSI edges are Dask's approximate quantiles (merged per-partition percentiles, so a grid
value may lie between observed values); the counts at those grid values are then exact, so
KS, Wasserstein and PSI compare against true reference counts. Value samples and reference
rows come from the bounded training sample collected to the driver.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.profile import (
    DEFAULT_REFERENCE_ROWS,
    DEFAULT_SAMPLE_SIZE,
    GRID_POINTS,
    PSI_BINS,
    categorical_profile,
    category_counts,
    profile_output,
    round_to_spread,
    sample_rows,
    sorted_present,
)
from pgmlops.domain.monitoring.profile_records import NumericProfile, ReferenceProfile
from pgmlops.domain.schema import FeatureSchema


def _moments(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(frame)}
    for name in numeric:
        v = frame[name].to_numpy(dtype=np.float64)
        present, missing = sorted_present(v, name)
        lo, hi = (present[0], present[-1]) if len(present) else (np.inf, -np.inf)
        out[name] = np.array(
            [len(present), missing, present.sum(), np.square(present).sum(), lo, hi]
        )
    for name in categorical:
        out[name] = category_counts(frame[name])
    return out


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, dict):
            out[key] = {k: va.get(k, 0) + vb.get(k, 0) for k in va.keys() | vb.keys()}
        elif isinstance(va, np.ndarray):
            out[key] = np.concatenate([va[:4] + vb[:4], [min(va[4], vb[4]), max(va[5], vb[5])]])
        else:
            out[key] = va + vb
    return out


def _counts_at(frame: pd.DataFrame, edges: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    out = {}
    for name, (grid, psi) in edges.items():
        present = np.sort(frame[name].to_numpy(dtype=np.float64))
        present = present[~np.isnan(present)]
        out[name] = (
            np.searchsorted(present, grid, side="right"),
            np.searchsorted(present, psi, side="right"),
        )
    return out


def _add_counts(a: dict, b: dict) -> dict:
    return {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a}


def _tree(parts: list[Any], add: Any) -> Any:
    """Pairwise sums as delayed tasks, so no one task holds every partition's result."""
    while len(parts) > 1:
        parts = [
            dask.delayed(add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def profile_partitions(
    rows: dd.DataFrame,
    sample: pd.DataFrame,
    schema: FeatureSchema,
    scores: np.ndarray | None,
    confidence: np.ndarray | None,
    *,
    seed: int,
) -> ReferenceProfile:
    """The profile monitoring/profile.build_profile gives, from the cluster's partitions."""
    numeric, categorical = schema.numeric, schema.categorical
    chunks = rows[schema.names].to_delayed()
    totals = _tree([dask.delayed(_moments)(c, numeric, categorical) for c in chunks], _add)
    probs = np.linspace(0.0, 1.0, GRID_POINTS)
    inner = np.arange(1, PSI_BINS) / PSI_BINS
    quantiles = [rows[name].dropna().quantile(np.concatenate([probs, inner])) for name in numeric]
    (total,) = dask.compute(totals)
    qs = dask.compute(*quantiles) if quantiles else ()
    edges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, q in zip(numeric, qs, strict=True):
        count, _, _, _, lo, hi = total[name]
        if count == 0:
            continue
        values = np.array(q, dtype=np.float64)
        # The grid's ends are the exact extremes, as a local profile's observed quantiles are.
        values[0], values[GRID_POINTS - 1] = lo, hi
        spread = float(hi - lo)
        grid = np.unique(round_to_spread(values[:GRID_POINTS], spread))
        edges[name] = (grid, np.unique(round_to_spread(values[GRID_POINTS:], spread)))
    at = _tree([dask.delayed(_counts_at)(c, edges) for c in chunks], _add_counts)
    counts = dask.compute(at)[0] if edges else {}
    features = []
    for i, spec in enumerate(schema.features):
        if spec.kind == "categorical":
            features.append(categorical_profile(spec.name, total[spec.name]))
            continue
        rng = np.random.default_rng([seed, i])
        features.append(_numeric(spec.name, total, edges, counts, sample, rng))
    columns = [(spec.name, spec.kind) for spec in schema.features]
    picked = sample_rows([sample[n] for n in schema.names], columns, DEFAULT_REFERENCE_ROWS, seed)
    profile = ReferenceProfile(n_rows=int(total["n"]), seed=seed, features=features, rows=picked)
    if scores is not None:
        output = profile_output(scores, schema, confidence, seed=seed)
        profile = profile.model_copy(update={"output": output})
    return profile


def _numeric(
    name: str,
    total: dict[str, Any],
    edges: dict[str, tuple[np.ndarray, np.ndarray]],
    counts: dict,
    sample: pd.DataFrame,
    rng: np.random.Generator,
) -> NumericProfile:
    count, missing, s, sq, lo, hi = total[name]
    n, count, missing = int(count + missing), int(count), int(missing)
    if name not in edges:
        return NumericProfile(
            name=name, n=n, n_missing=missing, grid=[], grid_counts=[], psi_edges=[],
            psi_counts=[0], sample=[],
        )  # fmt: skip
    grid, psi = edges[name]
    grid_counts, psi_at = counts[name]
    mean = s / count
    present, _ = sorted_present(sample[name].to_numpy(dtype=np.float64), name)
    take = min(DEFAULT_SAMPLE_SIZE, len(present))
    picked = np.sort(present[rng.choice(len(present), size=take, replace=False)]) if take else []
    return NumericProfile(
        name=name,
        n=n,
        n_missing=missing,
        mean=float(mean),
        std=float(np.sqrt(max(sq / count - mean * mean, 0.0))),
        grid=grid.tolist(),
        grid_counts=[int(c) for c in grid_counts],
        psi_edges=psi.tolist(),
        psi_counts=np.diff(psi_at, prepend=0, append=count).astype(int).tolist(),
        sample=round_to_spread(np.asarray(picked, dtype=np.float64), float(hi - lo)).tolist(),
    )
