"""Permutation importance on the holdout: how much the primary metric falls when a feature is
shuffled. Computed once at training, at a bounded cost, and kept in the model card."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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
    score_blocks: Callable[[pd.DataFrame, np.ndarray, int], list[float]],
    x: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    *,
    rows: int = IMPORTANCE_ROWS,
    repeats: int = IMPORTANCE_REPEATS,
    seed: int = 0,
) -> FeatureImportance | None:
    """Each column of ``x`` shuffled ``repeats`` times; None when the metric is undefined.

    ``score_blocks(frame, y, n)`` scores a frame of stacked n-row blocks, one metric value per
    block: every shuffled copy goes through the model in one call, since a call's fixed cost
    dominates at a few hundred rows.
    """
    # Imported here: the model card holds FeatureImportance, and reading cards (registry
    # commands) should not load pandas and scikit-learn (metrics).
    import numpy as np
    import pandas as pd

    from pgmlops.domain.metrics import improvement

    rng = np.random.default_rng(seed)
    if len(x) > rows:
        pick = np.sort(rng.choice(len(x), rows, replace=False))
        x, y = x.iloc[pick], y[pick]
    x = x.reset_index(drop=True)
    n = len(x)
    names = [str(c) for c in x.columns]
    blocks = [x]
    for name in x.columns:
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[name] = x[name].to_numpy()[rng.permutation(n)]
            blocks.append(shuffled)
    scores = score_blocks(pd.concat(blocks, ignore_index=True), y, n)
    base, rest = scores[0], scores[1:]
    if not math.isfinite(base):
        return None
    values: dict[str, float] = {}
    for i, name in enumerate(names):
        # improvement() is signed so that positive is better: the fall is base - shuffled.
        falls = [
            improvement(metric, base, v)
            for v in rest[i * repeats : (i + 1) * repeats]
            if math.isfinite(v)
        ]
        if falls:
            values[name] = round(float(np.mean(falls)), 6)
    ranked = dict(sorted(values.items(), key=lambda kv: -kv[1]))
    return FeatureImportance(metric=metric, rows=n, repeats=repeats, values=ranked)
