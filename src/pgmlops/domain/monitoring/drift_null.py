"""How large each drift effect gets by chance, at the window's size, from the reference profile.

A fixed effect floor is crossed by noise alone in small windows (PSI of two samples of the
same distribution averages about (1/n + 1/N) x (bins - 1)) and blocks real but modest shifts
in large ones. So each effect is compared with the upper quantile of its null distribution
for a window of n rows drawn from the reference (and a reference of its own size N), and a
small practical floor: the bar falls towards the floor as n grows, so a fixed shift is never
flagged less often in a larger window.

- Wasserstein-1 / std: the difference of two ECDFs of the same distribution F is about
  sqrt(1/n + 1/N) x B(F(x)) with B a Brownian bridge, so W1 is that factor times
  the integral of |B(F(x))|; that integral's quantile depends on the reference alone and
  comes from its exact mean and variance on the quantile grid (cached per feature).
- PSI and JS: for close distributions PSI is about the chi-square divergence and JS
  divergence about an eighth of it, and sum (p_cur - p_ref)^2 / p is (1/n + 1/N) times a
  chi-square with (bins - 1) degrees of freedom.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import chi2, norm

from pgmlops.domain.monitoring.profile_records import CategoricalProfile, NumericProfile

# The most grid points the bridge integral is evaluated at (its cost grows as their square).
_BRIDGE_POINTS = 128


def size_factor(n_current: float, n_reference: float) -> float:
    """1/n + 1/N: the variance scale of a difference of two empirical distributions."""
    if n_current <= 0 or n_reference <= 0:
        return math.inf
    return 1.0 / n_current + 1.0 / n_reference


def chi2_divergence_quantile(bins: int, factor: float, q: float) -> float:
    """Quantile ``q`` of sum (p_cur - p_ref)^2 / p under no change, for ``bins`` filled bins."""
    if bins < 2:
        return 0.0
    return float(factor * chi2.ppf(q, bins - 1))


def psi_threshold(p_reference: np.ndarray, factor: float, q: float) -> float:
    """PSI's null quantile: PSI is about the chi-square divergence for close distributions."""
    return chi2_divergence_quantile(int(np.count_nonzero(p_reference > 0)), factor, q)


def js_threshold(p_reference: np.ndarray, factor: float, q: float) -> float:
    """JS distance (base 2) null quantile: JS divergence is about chi-square divergence / 8."""
    divergence = psi_threshold(p_reference, factor, q) / (8.0 * math.log(2.0))
    return math.sqrt(divergence)


def wasserstein_threshold(spec: NumericProfile, factor: float, q: float) -> float:
    """Null quantile of W1 / std between a window and the reference, from the bridge limit."""
    n_present = spec.n - spec.n_missing
    if n_present == 0 or len(spec.grid) < 2:
        return 0.0
    counts = np.asarray(spec.grid_counts, dtype=np.float64)
    grid = np.asarray(spec.grid, dtype=np.float64)
    # F is a step function: F = t_k on [g_k, g_k+1). Coarsen to at most _BRIDGE_POINTS steps,
    # keeping each merged step's width, so the cost does not depend on the grid's size.
    t = counts[:-1] / n_present
    width = np.diff(grid)
    if len(t) > _BRIDGE_POINTS:
        take = np.linspace(0, len(t) - 1, _BRIDGE_POINTS).round().astype(np.int64)
        take = np.unique(take)
        bounds = np.append(take, len(t))
        width = np.add.reduceat(width, take)
        # Each merged step takes the CDF at its middle: the bridge there stands for the step.
        t = t[(bounds[:-1] + bounds[1:] - 1) // 2]
    scale = spec.std if spec.std else 1.0
    unit = _bridge_integral_quantile(tuple(t.round(9)), tuple((width / scale).round(12)), q)
    return math.sqrt(factor) * unit


@lru_cache(maxsize=512)
def _bridge_integral_quantile(t: tuple[float, ...], width: tuple[float, ...], q: float) -> float:
    """Quantile ``q`` of I = sum_k |B(t_k)| width_k for a standard Brownian bridge B.

    Exact mean and variance (B(t) has variance t(1 - t), covariance min(s, t) - st, and for
    centred normals E|X||Y| = 2/pi sd_x sd_y (sqrt(1 - r^2) + r arcsin r)), then a log-normal
    with those moments: against 10,000 simulated bridges its 0.999 quantile is within 3% for
    continuous references and up to 10% high (conservative) for a handful of values.
    """
    times = np.clip(np.asarray(t), 0.0, 1.0)
    w = np.asarray(width)
    sd = np.sqrt(times * (1.0 - times))
    mean = math.sqrt(2.0 / math.pi) * float(np.sum(sd * w))
    if mean <= 0.0:
        return 0.0
    cov = np.minimum.outer(times, times) - np.outer(times, times)
    scale = np.outer(sd, sd)
    r = np.clip(np.divide(cov, scale, out=np.zeros_like(cov), where=scale > 0), -1.0, 1.0)
    second = (2.0 / math.pi) * float(
        np.sum(np.outer(w * sd, w * sd) * (np.sqrt(1.0 - r * r) + r * np.arcsin(r)))
    )
    variance = max(second - mean * mean, 0.0)
    sigma2 = math.log1p(variance / (mean * mean))
    return math.exp(math.log(mean) - sigma2 / 2.0 + float(norm.ppf(q)) * math.sqrt(sigma2))


def reference_shares(spec: NumericProfile | CategoricalProfile) -> np.ndarray:
    """The reference proportions PSI is computed on (numeric: PSI bins plus missing)."""
    if isinstance(spec, NumericProfile):
        counts = np.append(np.asarray(spec.psi_counts, dtype=np.float64), spec.n_missing)
    else:
        counts = np.asarray(list(spec.counts.values()), dtype=np.float64)
    total = counts.sum()
    return counts / total if total else counts
