"""Multivariate drift: can a classifier tell reference rows from window rows?

Per-feature tests miss many small shifts at once (four features each moved by 0.2 sd stay
under a 50% drifted-share rule) and changes in how features move together. A domain
classifier sees both: a linear discriminant on standardised numbers, their squares (so a
change of spread shows), missing flags and one-hot categories learns "reference or window"
on one half of the rows and is scored by AUC on the other half, and the other way round.

The threshold is analytic, not permuted: with no difference the held-out half's labels are
independent of a model fitted on the other half, so its AUC is a Mann-Whitney statistic
with mean 0.5 and variance (n1 + n2 + 1) / (12 n1 n2) (ties only shrink it). The reported
statistic is the mean of the two halves' AUCs, whose variance is at most that of one half,
so the threshold 0.5 + z(1 - alpha) x sd keeps the false-alarm rate at or below alpha.

Reference rows whose feature vectors repeat are a sample of clusters (the training split
hashes feature values, design_effect.py). Split by rows, copies of one vector would sit on
both sides of the classifier's fit/score split and the halves would share the reference's
own sampling deviation, which the classifier learns and then "finds" again in the held-out
half: on randhie (78% of rows repeat) 37 of 40 in-distribution 5,000-row windows alarmed.
So each distinct row goes, with all its copies on both sides, to one random half, and the
reference's held-out half counts as the independent rows it is worth (rows / inflation,
design_effect.py) in the Mann-Whitney variance. Classes of rows seen in only one half
cannot be learnt from the other: with few distinct rows (a few categories and no numbers)
the detector loses power, and the per-feature tests remain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import norm, rankdata
from threadpoolctl import threadpool_limits

from pgmlops.domain.monitoring.design_effect import cluster_half, cluster_labels, labelled_design
from pgmlops.domain.monitoring.profile_records import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.schema import MISSING_CATEGORY

# Categories past the most frequent ones in the reference rows share one column.
_MAX_LEVELS = 30
# Standardised values are clipped here before squaring, so one outlier cannot dominate.
_CLIP = 8.0
# Ridge added to the pooled covariance, relative to its mean variance.
_RIDGE = 1e-3


class MultivariateDrift(BaseModel):
    """The domain classifier's verdict: held-out AUC against its no-change threshold."""

    method: Literal["domain_classifier"] = "domain_classifier"
    drifted: bool
    statistic: float
    threshold: float
    p_value: float
    alpha: float
    n_reference: int
    n_current: int
    reason: str


# Fewer rows than this on either side and the domain classifier is not run.
_MULTIVARIATE_MIN_ROWS = 50


def multivariate_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    specs: Sequence[NumericProfile | CategoricalProfile],
    policy: DriftPolicy,
) -> tuple[MultivariateDrift | None, str | None]:
    """The domain classifier on the profile's reference rows, or None and why it did not run."""
    if not policy.multivariate:
        return None, "multivariate detector off (drift.multivariate: false)"
    rows = profile.rows
    if rows is None:
        return None, "multivariate detector not run: the profile keeps no reference rows; retrain"
    names = [s.name for s in specs]
    missing = [n for n in names if n not in rows.numeric and n not in rows.categorical]
    if missing:
        return None, f"multivariate detector not run: no reference rows for {', '.join(missing)}"
    if min(rows.n, len(current)) < _MULTIVARIATE_MIN_ROWS:
        return None, (
            f"multivariate detector not run: needs {_MULTIVARIATE_MIN_ROWS} rows on each side"
        )
    numeric = [s.name for s in specs if isinstance(s, NumericProfile)]
    categorical = [s.name for s in specs if isinstance(s, CategoricalProfile)]
    verdict = domain_classifier(
        rows.frame(),
        current,
        numeric,
        categorical,
        alpha=policy.multivariate_alpha,
        max_rows=policy.multivariate_rows,
        seed=profile.seed,
        share=profile.design.share if profile.design is not None else None,
    )
    return verdict, None


def domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    alpha: float = 0.001,
    max_rows: int = 5_000,
    seed: int = 0,
    share: float | None = None,
) -> MultivariateDrift:
    """Fit reference-vs-window on each half, score the other; drifted when the AUC is high.

    Identical reference rows stay on one side of the split; ``share`` is the reference's
    share of the training rows (design_effect.SampleDesign; None counts the full effect).
    """
    rng = np.random.default_rng([seed, len(current), 104_729])
    if len(current) > max_rows:
        current = current.iloc[np.sort(rng.choice(len(current), max_rows, replace=False))]
    if len(reference) > max_rows:
        reference = reference.iloc[np.sort(rng.choice(len(reference), max_rows, replace=False))]
    x_ref, x_cur = _encode(reference, current, numeric, categorical)
    x = np.vstack([x_ref, x_cur])
    y = np.r_[np.zeros(len(x_ref)), np.ones(len(x_cur))]
    # Identical rows, reference or window, always fall in the same half, so no row is
    # scored by a model that saw its copies; a side the clusters cannot halve (one
    # distinct row) is halved by rows.
    labels = cluster_labels(x)
    half = cluster_half(labels, rng)
    for side in (0.0, 1.0):
        idx = np.flatnonzero(y == side)
        if half[idx].all() or not half[idx].any():
            half[idx] = False
            half[rng.permutation(idx)[: len(idx) // 2]] = True
    aucs, variances = [], []
    for train in (half, ~half):
        test = ~train
        # One BLAS thread: the matrices are small, and a multi-threaded BLAS on a busy
        # machine spends 30x longer waiting for its threads than computing.
        with threadpool_limits(limits=1, user_api="blas"):
            aucs.append(_held_out_auc(x[train], y[train], x[test], y[test]))
        held_ref = labels[: len(x_ref)][test[: len(x_ref)]]
        n1 = len(held_ref) / labelled_design(held_ref, share).inflation
        n2 = np.count_nonzero(y[test] == 1)
        variances.append((n1 + n2 + 1) / (12.0 * n1 * n2))
    statistic = float(np.mean(aucs))
    sd = math.sqrt(max(variances))
    threshold = 0.5 + float(norm.ppf(1.0 - alpha)) * sd
    p_value = float(norm.sf((statistic - 0.5) / sd))
    drifted = statistic >= threshold
    verb = "tells them apart" if drifted else "cannot tell them apart"
    reason = (
        f"domain classifier {verb}: held-out AUC {statistic:.3f} "
        f"{'>=' if drifted else '<'} {threshold:.3f} (chance at alpha {alpha:g}, "
        f"{len(reference):,} reference vs {len(current):,} window rows)"
    )
    return MultivariateDrift(
        drifted=drifted,
        statistic=statistic,
        threshold=threshold,
        p_value=p_value,
        alpha=alpha,
        n_reference=len(reference),
        n_current=len(current),
        reason=reason,
    )


def _held_out_auc(
    x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Fisher's linear discriminant (ridge-stabilised) fitted on one half, AUC on the other."""
    if x_fit.shape[1] == 0:
        return 0.5
    a, b = x_fit[y_fit == 0], x_fit[y_fit == 1]
    pooled = (_scatter(a) + _scatter(b)) / len(x_fit)
    # The ridge keeps constant or duplicated columns (a category absent from one half) solvable.
    ridge = _RIDGE * (np.trace(pooled) / len(pooled) + 1e-12)
    shift = b.mean(axis=0) - a.mean(axis=0)
    direction = np.linalg.solve(pooled + ridge * np.eye(len(pooled)), shift)
    score = x_test @ direction
    ranks = rankdata(score)
    n1 = np.count_nonzero(y_test == 1)
    n0 = len(y_test) - n1
    return float((ranks[y_test == 1].sum() - n1 * (n1 + 1) / 2.0) / (n0 * n1))


def _scatter(x: np.ndarray) -> np.ndarray:
    """Sum of outer products of the centred rows."""
    centred = x - x.mean(axis=0)
    return centred.T @ centred


def _encode(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides on the reference's scale: z, z^2, missing flags and one-hot categories."""
    ref_cols: list[np.ndarray] = []
    cur_cols: list[np.ndarray] = []
    for name in numeric:
        r = reference[name].to_numpy(dtype=np.float64, na_value=np.nan)
        c = current[name].to_numpy(dtype=np.float64, na_value=np.nan)
        present = r[~np.isnan(r)]
        mean = float(present.mean()) if len(present) else 0.0
        std = float(present.std()) if len(present) else 0.0
        std = std if std > 0 else 1.0
        for side, out in ((r, ref_cols), (c, cur_cols)):
            z = np.clip(np.nan_to_num((side - mean) / std, nan=0.0), -_CLIP, _CLIP)
            out.extend([z, z * z - 1.0])
        if np.isnan(r).any() or np.isnan(c).any():
            ref_cols.append(np.isnan(r).astype(np.float64))
            cur_cols.append(np.isnan(c).astype(np.float64))
    for name in categorical:
        r_text = _as_text(reference[name])
        c_text = _as_text(current[name])
        levels = list(pd.Series(r_text).value_counts().index[:_MAX_LEVELS])
        # Codes 0..L-1 for the reference's commonest levels, L for anything else.
        for text, out in ((r_text, ref_cols), (c_text, cur_cols)):
            codes = pd.Categorical(text, categories=levels).codes.astype(np.int64)
            codes[codes < 0] = len(levels)
            out.extend(np.eye(len(levels) + 1)[codes].T)
    width = len(ref_cols)
    x_ref = np.column_stack(ref_cols) if width else np.empty((len(reference), 0))
    x_cur = np.column_stack(cur_cols) if width else np.empty((len(current), 0))
    return x_ref, x_cur


def _as_text(col: pd.Series) -> np.ndarray:
    text = col.astype(object).where(col.notna(), MISSING_CATEGORY).astype(str)
    return text.to_numpy(dtype=object)
