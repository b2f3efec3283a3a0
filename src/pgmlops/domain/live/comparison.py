"""Production against its challenger on live traffic: pure statistics, no I/O.

Shadow traffic scores the same records with both versions, so their outputs are compared
row by row (agreement, mean absolute difference) and a labelled metric's difference is
bootstrapped PAIRED: one resample of records, both versions scored on it, which cancels the
records' own difficulty. Canary traffic sends each record to one version only, so the two
sides are resampled independently (UNPAIRED), which is wider for the same labels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import ks_2samp

from pgmlops.domain.metrics import Scores, improvement, metric_value, resampled_metric
from pgmlops.domain.monitoring.drift_tests import js_distance

# Defined with the other policy sections, which settings read without SciPy; still importable here.
from pgmlops.domain.policies import LivePolicy

Pairing = Literal["paired", "unpaired"]
# Resamples drawn at once: rounds x rows counts, bounded to ~40 MB at 100,000 rows.
_CHUNK = 50
# Bins of a score distribution: probabilities on tenths, regression values on pooled deciles.
_BINS = 10


@dataclass(frozen=True)
class ScoreDistance:
    """How far apart two versions' score distributions are (0: the same)."""

    basis: str
    js_distance: float
    ks_statistic: float | None
    ks_p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GainInterval:
    """The challenger's gain over production on one metric (positive: challenger better)."""

    metric: str
    pairing: Pairing
    production_n: int
    challenger_n: int
    production_value: float | None
    challenger_value: float | None
    gain: float | None
    low: float | None
    high: float | None
    confidence: float
    min_labels: int
    note: str | None = None

    @property
    def enough(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def favours_challenger(self) -> bool:
        """The interval excludes 0 on the challenger's side."""
        return self.enough and self.low > 0  # type: ignore[operator]

    @property
    def favours_production(self) -> bool:
        return self.enough and self.high < 0  # type: ignore[operator]

    def describe(self) -> str:
        """One line: 'roc_auc gain +0.081 [+0.052, +0.110] (95%, paired, n=400)'."""
        if not self.enough:
            return f"{self.metric}: {self.note}"
        n = (
            f"n={self.production_n}"
            if self.pairing == "paired"
            else f"n={self.production_n}/{self.challenger_n}"
        )
        return (
            f"{self.metric} gain {self.gain:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"({self.confidence * 100:g}%, {self.pairing}, {n})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = [self.low, self.high] if self.enough else None
        out["favours"] = (
            "challenger"
            if self.favours_challenger
            else "production"
            if self.favours_production
            else None
        )
        return out


def agreement(first: np.ndarray | list[Any], second: np.ndarray | list[Any]) -> float | None:
    """Share of records both versions gave the same class (None without records)."""
    a, b = np.asarray(first, dtype=object), np.asarray(second, dtype=object)
    if len(a) != len(b):
        raise ValueError("agreement needs the same records from both versions")
    return float(np.mean(a == b)) if len(a) else None


def mean_abs_difference(
    first: np.ndarray | list[float], second: np.ndarray | list[float]
) -> float | None:
    """Mean |first - second| over records both versions scored (regression)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) != len(b):
        raise ValueError("mean_abs_difference needs the same records from both versions")
    keep = np.isfinite(a) & np.isfinite(b)
    return float(np.mean(np.abs(a[keep] - b[keep]))) if keep.any() else None


def score_distance(
    first: np.ndarray | list[Any], second: np.ndarray | list[Any], *, kind: str
) -> ScoreDistance | None:
    """Jensen-Shannon distance (and KS for numbers) between two versions' outputs.

    ``kind``: "probability" (binary P(positive), tenths of [0, 1]), "value" (regression,
    deciles of both pooled) or "class" (multiclass predicted classes, their shares).
    """
    if kind == "class":
        a, b = np.asarray(first, dtype=str), np.asarray(second, dtype=str)
        if not len(a) or not len(b):
            return None
        labels = sorted(set(a.tolist()) | set(b.tolist()))
        p = np.array([np.sum(a == c) for c in labels], dtype=float) / len(a)
        q = np.array([np.sum(b == c) for c in labels], dtype=float) / len(b)
        return ScoreDistance("predicted class shares", js_distance(p, q), None, None)
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return None
    if kind == "probability":
        edges = np.linspace(0.0, 1.0, _BINS + 1)
        basis = "P(positive), tenths of [0, 1]"
    else:
        edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, _BINS + 1)))
        basis = "predicted value, deciles of both versions pooled"
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(a, edges)[0] / len(a)
    q = np.histogram(b, edges)[0] / len(b)
    ks = ks_2samp(a, b)
    return ScoreDistance(basis, js_distance(p, q), float(ks.statistic), float(ks.pvalue))


def _not_enough(
    metric: str,
    pairing: Pairing,
    production: Scores | None,
    challenger: Scores | None,
    confidence: float,
    min_labels: int,
    note: str,
) -> GainInterval:
    n_p = len(production) if production is not None else 0
    n_c = len(challenger) if challenger is not None else 0
    value_p = _finite(metric_value(metric, production)) if production is not None else None
    value_c = _finite(metric_value(metric, challenger)) if challenger is not None else None
    gain = (
        improvement(metric, value_c, value_p)
        if value_p is not None and value_c is not None
        else None
    )
    return GainInterval(
        metric, pairing, n_p, n_c, value_p, value_c, gain, None, None, confidence, min_labels, note
    )


def gain_interval(
    metric: str,
    production: Scores | None,
    challenger: Scores | None,
    *,
    paired: bool,
    policy: LivePolicy,
) -> GainInterval:
    """Bootstrap interval of the challenger's gain (percentile method).

    Paired: ``production`` and ``challenger`` hold the same records in the same order, and
    each resample draws records once for both. Unpaired: each side is drawn on its own.
    Fewer than ``policy.min_labels`` labelled records on a side: no interval, a note says why.
    """
    pairing: Pairing = "paired" if paired else "unpaired"
    args = (metric, pairing, production, challenger, policy.confidence, policy.min_labels)
    n_p = len(production) if production is not None else 0
    n_c = len(challenger) if challenger is not None else 0
    least = min(n_p, n_c)
    if least < policy.min_labels:
        return _not_enough(*args, f"not enough labels (n={least} < {policy.min_labels})")
    assert production is not None and challenger is not None
    if paired and n_p != n_c:
        raise ValueError("a paired interval needs the same records from both versions")
    rng = np.random.default_rng([policy.seed, 25])
    gains: list[np.ndarray] = []
    left = policy.bootstrap_rounds
    while left > 0:
        size = min(_CHUNK, left)
        left -= size
        counts_p = rng.multinomial(n_p, np.full(n_p, 1.0 / n_p), size=size)
        counts_c = counts_p if paired else rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=size)
        value_p = resampled_metric(metric, production, counts_p)
        value_c = resampled_metric(metric, challenger, counts_c)
        gains.append(improvement(metric, value_c, value_p))  # type: ignore[arg-type]
    drawn = np.concatenate(gains)
    drawn = drawn[np.isfinite(drawn)]
    # A metric undefined on most resamples (one class only) has no trustworthy interval.
    if len(drawn) < 0.9 * policy.bootstrap_rounds:
        return _not_enough(*args, f"{metric} is undefined on these labels (one class only?)")
    tail = (1.0 - policy.confidence) / 2.0
    low, high = np.quantile(drawn, [tail, 1.0 - tail])
    point = _not_enough(*args, "")
    return GainInterval(
        metric,
        pairing,
        n_p,
        n_c,
        point.production_value,
        point.challenger_value,
        point.gain,
        float(low),
        float(high),
        policy.confidence,
        policy.min_labels,
        None,
    )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
