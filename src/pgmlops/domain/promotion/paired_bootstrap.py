"""The paired bootstrap of a gain: both models scored on the same resampled rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pgmlops.domain.metrics import LOWER_IS_BETTER, Scores, check_metric, resampled_metric

# Bootstrap resamples are drawn in blocks of about this many cells to bound memory.
_BLOCK_CELLS = 2_000_000
# Above this many rows the interval comes from a seeded subsample of them: the cost stays
# near 10 s of CPU per pair (it grows as rows x rounds), and a subsample only widens the
# interval, so it can refuse a tiny real gain but never approve a spurious one.
BOOTSTRAP_MAX_ROWS = 100_000
# A bound at level c is the (1 - c) quantile of the resampled gains: at least this many
# resamples should lie beyond it, or the bound is mostly Monte Carlo noise (at 0.999 a
# thousand rounds leave one). Rounds are raised for that within _TAIL_CELLS rows x rounds,
# about 5 s of CPU on a 2-core VM for an AUC.
TAIL_DRAWS = 5
_TAIL_CELLS = 50_000_000


def paired_bootstrap(
    metric: str,
    candidate: Scores,
    champion: Scores,
    *,
    rounds: int,
    confidence: float,
    seed: int,
    sided: int = 2,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(low, mean, high) of the improvement on `metric` (positive = better) over resamples.

    `sided=2`: low and high bound a central interval at `confidence`; `sided=1`: each is a
    one-sided bound at `confidence` (the gates ask only "is the gain above 0?").

    Both models are scored on the same resampled rows in each round, so the interval
    reflects the difference between them rather than the noise of the holdout itself.
    Resamples where the metric is undefined (e.g. one class drawn) are skipped; all nan
    when none is left. Holdouts above BOOTSTRAP_MAX_ROWS rows are subsampled first. `rounds`
    is raised where the tail beyond a bound would hold fewer than TAIL_DRAWS resamples.

    `clusters` (one integer label per row, as `row_clusters` gives) makes each resample
    draw whole clusters: rows that repeat a feature vector get the same answer from each
    model and, on panel data, related truths, so they are one observation of the gain,
    not many; drawing them one by one makes the interval too narrow. With every row its
    own cluster the resamples are the row bootstrap's, draw for draw.
    """
    check_metric(metric, candidate.task)
    require_same_rows(candidate, champion, "champion")
    if rounds < 1 or not 0 < confidence < 1 or sided not in (1, 2):
        raise ValueError(f"need rounds >= 1 and 0 < confidence < 1, got {rounds}, {confidence}")
    if clusters is not None and len(clusters) != len(candidate):
        raise ValueError(f"clusters has {len(clusters)} labels for {len(candidate)} rows")
    rng = np.random.default_rng(seed)
    if len(candidate) > BOOTSTRAP_MAX_ROWS:
        rows = np.sort(rng.choice(len(candidate), BOOTSTRAP_MAX_ROWS, replace=False))
        candidate, champion = candidate.take(rows), champion.take(rows)
        clusters = None if clusters is None else clusters[rows]
    n = len(candidate)
    tail = (1 - confidence) / sided
    rounds = max(rounds, min(math.ceil(TAIL_DRAWS / tail), _TAIL_CELLS // n))
    if clusters is not None:
        # Labels in order of first appearance, so that all-distinct rows draw as above.
        clusters = pd.factorize(np.asarray(clusters))[0]
    k = n if clusters is None else int(clusters.max()) + 1
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    block = max(1, _BLOCK_CELLS // n)
    diffs: list[np.ndarray] = []
    for start in range(0, rounds, block):
        size = min(block, rounds - start)
        drawn = rng.integers(0, k, size=(size, k))
        # Counts per resample: offsetting each round's indices lets one bincount do all.
        drawn += (np.arange(size) * k)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * k).reshape(size, k).astype(float)
        if clusters is not None:
            counts = counts[:, clusters]  # a row is drawn as often as its cluster
        cand = resampled_metric(metric, candidate, counts)
        champ = resampled_metric(metric, champion, counts)
        diffs.append(sign * (cand - champ))
    values = np.concatenate(diffs)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan, math.nan)
    low, high = np.quantile(values, [tail, 1 - tail])
    return (float(low), float(values.mean()), float(high))


def row_clusters(x: pd.DataFrame) -> np.ndarray:
    """One label per row of ``x``, shared by the rows that repeat a feature vector."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    hashed = pd.util.hash_pandas_object(x, index=False).to_numpy(dtype=np.uint64)
    return pd.factorize(hashed)[0].astype(np.int64)


def require_same_rows(candidate: Scores, other: Scores, role: str) -> None:
    """Raise ValueError unless both hold the same task, classes and true values per row."""
    if other.task != candidate.task:
        raise ValueError(f"{role} is a {other.task} model but the candidate is {candidate.task}")
    if len(other) != len(candidate):
        raise ValueError(
            f"{role} was scored on {len(other)} rows and the candidate on {len(candidate)}; "
            "both must be scored on the same holdout rows"
        )
    if other.classes != candidate.classes:
        raise ValueError(
            f"{role} classes {other.classes} differ from the candidate's {candidate.classes}"
        )
    if candidate.task == "regression":
        same = np.allclose(other.y_true, candidate.y_true, equal_nan=True)
    else:
        same = np.array_equal(other.y_true, candidate.y_true)
    if not same:
        raise ValueError(f"{role} and candidate scores hold different true values for the rows")
