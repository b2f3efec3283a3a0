"""Is a window worse than the reference beyond chance, and by more than the tolerance?

A window of n rows scores differently from the reference by chance alone, the more so the
smaller n, and the reference figure itself came from a finite set of held-out rows. The
null distribution of (window metric - reference metric) is drawn by resampling the stored
reference outputs: n rows stand for the window and, independently, as many rows as the
reference holds stand for the reference, so both sources of noise are in it. A signal
alarms only when its shortfall is significant (one-sided, at ``alpha``) AND larger than the
configured relative tolerance: significance alone fires on harmless wobbles of huge
windows, a tolerance alone fires on the noise of small ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import norm

from pgmlops.domain.kinds import Task
from pgmlops.domain.metrics import Scores, improvement, resampled_metric
from pgmlops.domain.policies import LOWER_IS_BETTER

# Rows of reference outputs kept with a version: enough for a reference AUC within ~0.003
# (the demo's 12,000 cross-fitted + 8,000 held-out rows all fit), small enough (~300 kB of
# JSON, read once per version and cached) for every monitoring run.
REFERENCE_ROWS = 20_000
# Window draws per null distribution for windows up to an eighth of the reference (where
# significance, not the tolerance, decides). The alarm reads the null's alpha quantile; with
# 400 draws that quantile's own error is +-0.85 points of false-alarm rate at alpha 0.03,
# and as every window of a size shares one seeded null, an unlucky null stays unlucky for
# all of them. 2,000 draws make it +-0.4 points. Small windows are resampled from the rows
# they drew, so the extra draws cost about as much as the 400 reference-sized ones.
NULL_DRAWS = 2_000
# Draws of reference-sized resamples (and of windows larger than an eighth of the
# reference): 400, as before; each window draw is paired with one of them in turn.
REFERENCE_DRAWS = 400
# Below this many rows per draw (times the draws in a chunk) a window is resampled from the
# rows it drew rather than as counts over the whole reference: O(n) instead of O(m) a draw.
_SUBSET_ROWS = 4_096


class ReferenceOutputs(BaseModel):
    """Model outputs and truth on held-out rows, kept at training time (bounded sample)."""

    task: Task
    classes: list[str] | None = None
    n_source: int = Field(description="held-out rows these were sampled from")
    y_true: list[Any]
    predicted: list[Any]
    proba: list[Any] | None = Field(None, description="binary P(positive); multiclass rows")

    def scores(self) -> Scores:
        """The outputs as metrics read them."""
        return Scores(
            task=self.task,
            y_true=np.asarray(self.y_true),
            predicted=np.asarray(self.predicted),
            proba=None if self.proba is None else np.asarray(self.proba, dtype=np.float64),
            classes=tuple(self.classes) if self.classes else None,
        )


def reference_outputs(
    scores: Scores, *, seed: int = 0, limit: int = REFERENCE_ROWS
) -> ReferenceOutputs:
    """A seeded sample of at most ``limit`` scored held-out rows, JSON-ready."""
    n = len(scores)
    rows = np.arange(n)
    if n > limit:
        rows = np.sort(np.random.default_rng([seed, 7]).choice(n, limit, replace=False))
    kept = scores.take(rows)
    regression = scores.task == "regression"
    return ReferenceOutputs(
        task=scores.task,
        classes=list(scores.classes) if scores.classes else None,
        n_source=n,
        y_true=[float(v) for v in kept.y_true] if regression else [str(v) for v in kept.y_true],
        predicted=[float(v) for v in kept.predicted]
        if regression
        else [str(v) for v in kept.predicted],
        proba=None if kept.proba is None else np.round(kept.proba, 6).tolist(),
    )


def concat_scores(first: Scores, second: Scores) -> Scores:
    """Two sets of scores of the same model as one."""
    proba = None
    if first.proba is not None and second.proba is not None:
        proba = np.concatenate([first.proba, second.proba])
    return Scores(
        task=first.task,
        y_true=np.concatenate([first.y_true, second.y_true]),
        predicted=np.concatenate([first.predicted, second.predicted]),
        proba=proba,
        classes=first.classes,
    )


@dataclass(frozen=True)
class DropVerdict:
    """One signal's comparison: the numbers, the reference interval at n and the verdict."""

    metric: str
    current: float | None
    reference: float | None
    interval: tuple[float, float] | None
    p_value: float | None
    drop: float | None
    significant: bool
    degraded: bool

    def block(self) -> dict[str, Any]:
        """The verdict's fields as a monitoring block holds them."""
        return {
            "reference_interval": None if self.interval is None else list(self.interval),
            "p_value": self.p_value,
            "drop": self.drop,
            "significant": self.significant,
            "degraded": self.degraded,
        }


def null_differences(
    scores: Scores,
    metric: str,
    n: int,
    *,
    draws: int | None = None,
    seed: int = 0,
    class_counts: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draws of (metric on n resampled rows - metric on a reference-sized resample).

    ``class_counts`` (labels per class of ``scores.classes``, summing to n): each window
    draw takes exactly that many reference rows of each class. A window's labelled metric
    varies with its class counts far more than with anything else (one positive in 200
    makes AUC the rank of one row), so the null is drawn at the window's own counts: a
    window with few positives is compared with windows like it (issue 24: 19% false alarms
    with one positive against an unconditional null of about 40).
    """
    m = len(scores)
    if draws is None:
        draws = NULL_DRAWS if _small(n, m) else REFERENCE_DRAWS
    rng = np.random.default_rng([seed, n, *(class_counts or ())])
    strata = _strata(scores, class_counts, n)
    if strata is not None:
        window = _stratified_draws(scores, metric, strata, draws, rng)
    else:
        window = _window_draws(scores, metric, n, draws, rng)
    ref = _resampled(scores, metric, m, min(draws, REFERENCE_DRAWS), rng)
    # Independent draws of both: pairing each window draw with the reference draws in turn
    # keeps every difference a draw of (window - reference).
    return window - ref[np.arange(draws) % ref.size]


def _resampled(
    scores: Scores, metric: str, n: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``metric`` on ``draws`` bootstrap resamples of n rows, as counts over every row."""
    m = len(scores)
    # Chunks keep the count matrices near 8 MB whatever the reference size.
    chunk = max(1, min(draws, 1_000_000 // max(m, 1)))
    out = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        out.append(resampled_metric(metric, scores, _counts(rng, m, n, size)))
    return np.concatenate(out)


def _on_picked(scores: Scores, metric: str, picked: np.ndarray) -> np.ndarray:
    """``metric`` on each row of ``picked`` (draws x n reference rows), scoring only those rows."""
    size, n = picked.shape
    rows, inverse = np.unique(picked, return_inverse=True)
    k = rows.size
    flat = np.arange(size)[:, None] * k + inverse.reshape(size, n)
    counts = np.bincount(flat.ravel(), minlength=size * k).reshape(size, k)
    return resampled_metric(metric, scores.take(rows), counts.astype(np.float64))


def _window_draws(
    scores: Scores, metric: str, n: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``metric`` on ``draws`` bootstrap resamples of n rows out of the reference."""
    m = len(scores)
    chunk = _SUBSET_ROWS // max(n, 1)
    if chunk < 1 or not _small(n, m):
        return _resampled(scores, metric, n, draws, rng)
    # Small windows: only the rows a chunk of draws picked are scored (the same distribution:
    # every row is still drawn uniformly from the whole reference).
    out = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        picked = rng.integers(0, m, size=(size, n))
        out.append(_on_picked(scores, metric, picked))
    return np.concatenate(out)


def _strata(
    scores: Scores, class_counts: tuple[int, ...] | None, n: int
) -> list[tuple[np.ndarray, int]] | None:
    """(reference rows of a class, rows to draw from them) per class; None: unconditional."""
    if class_counts is None or scores.classes is None or scores.task == "regression":
        return None
    if len(class_counts) != len(scores.classes) or sum(class_counts) != n:
        return None
    truth = np.asarray(scores.y_true).astype(str)
    strata = []
    for label, count in zip(scores.classes, class_counts, strict=True):
        rows = np.flatnonzero(truth == str(label))
        if count and rows.size == 0:
            return None  # the reference never saw this class: no conditional null
        strata.append((rows, int(count)))
    return strata


def _stratified_draws(
    scores: Scores,
    metric: str,
    strata: list[tuple[np.ndarray, int]],
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``metric`` on ``draws`` windows with each class's rows drawn from that class's rows."""
    n = sum(count for _, count in strata)
    chunk = max(1, _SUBSET_ROWS // max(n, 1))
    out = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        picked = np.concatenate(
            [
                rows[rng.integers(0, rows.size, size=(size, count))]
                for rows, count in strata
                if count
            ],
            axis=1,
        )
        out.append(_on_picked(scores, metric, picked))
    return np.concatenate(out)


def _small(n: int, m: int) -> bool:
    """Whether a window of n rows is resampled from the rows it drew (see NULL_DRAWS)."""
    return 0 < n <= _SUBSET_ROWS and n * 8 <= m


def _counts(rng: np.random.Generator, m: int, n: int, size: int) -> np.ndarray:
    """``size`` bootstrap draws of n rows out of m, as (size, m) counts."""
    if n > m:
        # The same distribution in O(size * m) time and memory, whatever the window's size
        # (binning n drawn indices per draw held 8 n bytes each: 800 MB for 100 draws at 1M).
        return rng.multinomial(n, np.full(m, 1.0 / m), size=size).astype(np.float64)
    # Binning drawn indices is O(size * (n + m)); rng.multinomial walks all m rows per draw.
    flat = (np.arange(size)[:, None] * m + rng.integers(0, m, size=(size, n))).ravel()
    return np.bincount(flat, minlength=size * m).reshape(size, m).astype(np.float64)


def drop_test(
    metric: str,
    current: float | None,
    reference: float | None,
    null: np.ndarray,
    *,
    alpha: float,
    tolerance: float,
) -> DropVerdict:
    """One-sided test of a shortfall against draws of its null distribution."""
    if current is None or reference is None or not _finite(current, reference) or not reference:
        return DropVerdict(metric, current, reference, None, None, None, False, False)
    null = null[np.isfinite(null)]
    drop = -improvement(metric, current, reference) / abs(reference)
    if null.size == 0:
        return DropVerdict(metric, current, reference, None, None, drop, False, False)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * (current - reference)
    # The +1s make the smallest reachable p-value 1/(draws+1), never 0.
    p_value = float((1 + np.count_nonzero(sign * null <= gain)) / (1 + null.size))
    lo, hi = np.quantile(null, [alpha, 1.0 - alpha])
    interval = (float(reference + lo), float(reference + hi))
    significant = p_value <= alpha
    return DropVerdict(
        metric,
        current,
        reference,
        interval,
        p_value,
        drop,
        significant,
        significant and drop > tolerance,
    )


def mean_drop_test(
    current: np.ndarray, reference: np.ndarray, *, alpha: float, tolerance: float
) -> DropVerdict:
    """The same test for a mean (confidence, estimated loss), with the normal approximation."""
    current = current[np.isfinite(current)]
    mean = float(current.mean()) if current.size else None
    return mean_drop_from(mean, current.size, reference, alpha=alpha, tolerance=tolerance)


def mean_drop_from(
    current: float | None, n: int, reference: np.ndarray, *, alpha: float, tolerance: float
) -> DropVerdict:
    """``mean_drop_test`` from the window's mean of its n finite values (None when n is 0)."""
    reference = reference[np.isfinite(reference)]
    if current is None or n == 0 or reference.size < 2:
        ref = float(reference.mean()) if reference.size else None
        cur = current if n else None
        return DropVerdict("mean", cur, ref, None, None, None, False, False)
    cur, ref = float(current), float(reference.mean())
    sd = float(reference.std(ddof=1))
    spread = sd * math.sqrt(1.0 / n + 1.0 / reference.size)
    z = norm.ppf(1.0 - alpha)
    drop = (ref - cur) / abs(ref) if ref else None
    if spread == 0.0:
        p_value = 0.0 if cur < ref else 1.0
    else:
        p_value = float(norm.cdf((cur - ref) / spread))
    significant = p_value <= alpha
    degraded = significant and drop is not None and drop > tolerance
    return DropVerdict(
        "mean",
        cur,
        ref,
        (float(ref - z * spread), float(ref + z * spread)),
        p_value,
        drop,
        significant,
        degraded,
    )


def delong(y_true: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance (structural components over positives and negatives)."""
    truth = np.asarray(y_true, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[truth], score[~truth]
    m, n = pos.size, neg.size
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    # Placement of each positive among the negatives (and back), ties counting half.
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(neg_sorted, pos, "left") + np.searchsorted(neg_sorted, pos, "right")) / (
        2.0 * n
    )
    v01 = 1.0 - (
        np.searchsorted(pos_sorted, neg, "left") + np.searchsorted(pos_sorted, neg, "right")
    ) / (2.0 * m)
    auc = float(v10.mean())
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
