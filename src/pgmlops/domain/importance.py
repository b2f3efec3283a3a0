"""Permutation importance on the holdout: how much the primary metric falls when a feature is
shuffled. Computed once at training, at a bounded cost, and kept in the model card."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pgmlops.domain.metrics import improvement

# Bounded cost: features x repeats predictions on at most this many rows.
IMPORTANCE_ROWS = 2_000
IMPORTANCE_REPEATS = 3


class FeatureImportance(BaseModel):
    """Mean fall of ``metric`` per shuffled feature (positive: the model relies on it)."""

    metric: str
    rows: int
    repeats: int
    values: dict[str, float] = Field(description="feature -> mean fall, largest first")


def permutation_importance(
    score: Callable[[pd.DataFrame, np.ndarray], float],
    x: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    *,
    rows: int = IMPORTANCE_ROWS,
    repeats: int = IMPORTANCE_REPEATS,
    seed: int = 0,
) -> FeatureImportance | None:
    """Each column of ``x`` shuffled ``repeats`` times; None when the metric is undefined."""
    rng = np.random.default_rng(seed)
    if len(x) > rows:
        pick = np.sort(rng.choice(len(x), rows, replace=False))
        x, y = x.iloc[pick], y[pick]
    x = x.reset_index(drop=True)
    base = score(x, y)
    if not math.isfinite(base):
        return None
    values: dict[str, float] = {}
    for name in x.columns:
        falls = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[name] = x[name].to_numpy()[rng.permutation(len(x))]
            value = score(shuffled, y)
            if math.isfinite(value):
                # improvement() is signed so that positive is better: the fall is base - shuffled.
                falls.append(improvement(metric, base, value))
        if falls:
            values[str(name)] = round(float(np.mean(falls)), 6)
    ranked = dict(sorted(values.items(), key=lambda kv: -kv[1]))
    return FeatureImportance(metric=metric, rows=len(x), repeats=repeats, values=ranked)
