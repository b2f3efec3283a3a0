"""Plot data: reference and current shares per bin or category, from rows or from counts."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.profile import category_counts
from pgmlops.domain.monitoring.profile_records import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)

# Categories beyond the most visible ones are summed into one "N others" bar.
PLOT_CATEGORIES = 15


def distributions(
    profile: ReferenceProfile, features: pd.DataFrame, scores: np.ndarray | None
) -> dict[str, Any]:
    """Reference and current shares per bin (numeric) or category, per feature and output.

    Numeric features use the profile's PSI bins plus a missing bin; categorical ones the
    most visible categories. The output, when profiled, is under ``"__output__"``.
    """
    out: dict[str, Any] = {}
    for spec in profile.features:
        if spec.name in features.columns:
            out[spec.name] = _shares(spec, features[spec.name])
    if scores is not None and profile.output is not None:
        out["__output__"] = _shares(profile.output.distribution, pd.Series(scores))
    return out


def _shares(spec: NumericProfile | CategoricalProfile, col: pd.Series) -> dict[str, Any]:
    if isinstance(spec, NumericProfile):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        edges = np.asarray(spec.psi_edges, dtype=np.float64)
        missing = np.isnan(values)
        # Bin i holds (edge[i-1], edge[i]], as the profile's PSI counts do.
        bins = np.bincount(
            np.searchsorted(edges, values[~missing], side="left"), minlength=len(edges) + 1
        )
        return numeric_shares(spec, [*bins.tolist(), int(missing.sum())])
    return categorical_shares(spec, category_counts(col))


def numeric_shares(spec: NumericProfile, current: list[int]) -> dict[str, Any]:
    """Plot data of a numeric column from the window's counts per PSI bin, then missing."""
    ref = [*spec.psi_counts, spec.n_missing]
    return {
        "kind": "numeric",
        "edges": spec.psi_edges,
        "reference": _normalise(ref),
        "current": _normalise(current),
        "labels": [*_bin_labels(spec.psi_edges), "missing"],
    }


def categorical_shares(spec: CategoricalProfile, current: dict[str, int]) -> dict[str, Any]:
    """Plot data of a categorical column from the window's category counts."""
    ref_share = dict(zip(spec.counts, _normalise(list(spec.counts.values())), strict=True))
    cur_share = dict(zip(current, _normalise(list(current.values())), strict=True))
    ranked = sorted(
        set(ref_share) | set(cur_share),
        key=lambda k: (-max(ref_share.get(k, 0.0), cur_share.get(k, 0.0)), k),
    )
    shown, rest = ranked[:PLOT_CATEGORIES], ranked[PLOT_CATEGORIES:]
    labels = list(shown)
    ref = [ref_share.get(k, 0.0) for k in shown]
    cur = [cur_share.get(k, 0.0) for k in shown]
    if rest:
        labels.append(f"{len(rest)} others")
        ref.append(sum(ref_share.get(k, 0.0) for k in rest))
        cur.append(sum(cur_share.get(k, 0.0) for k in rest))
    return {"kind": "categorical", "labels": labels, "reference": ref, "current": cur}


def _normalise(counts: list[int] | list[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    cuts = [f"{e:.4g}" for e in edges]
    inner = [f"{a}–{b}" for a, b in itertools.pairwise(cuts)]
    return [f"≤{cuts[0]}", *inner, f">{cuts[-1]}"]
