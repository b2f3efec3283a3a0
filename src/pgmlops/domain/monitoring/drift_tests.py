"""The per-column two-sample tests behind drift.py, and the corrections for testing many."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import kolmogorov, rel_entr
from scipy.stats import chi2

from pgmlops.domain.monitoring.design_effect import pair_rows
from pgmlops.domain.monitoring.profile import (
    OTHER_CATEGORY,
    category_counts,
    float_values,
    population_stability_index,
)
from pgmlops.domain.monitoring.profile_records import CategoricalProfile, NumericProfile
from pgmlops.domain.monitoring.window_counts import NumericCells, cells_distance, numeric_distance
from pgmlops.domain.schema import MISSING_CATEGORY
from pgmlops.errors import DataError

# Chi-square needs expected counts of about 5; rarer categories are pooled for the test.
MIN_EXPECTED = 5.0


# A window column as counted in SQL: cells of a numeric feature, or counts per category.
WindowColumn = NumericCells | dict[str, int]


@dataclass
class ColumnTest:
    """A test result before multiple-testing correction."""

    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    psi: float
    missing_rate_current: float
    wasserstein_norm: float | None = None
    js: float | None = None
    unseen: list[str] = field(default_factory=list)


def benjamini_hochberg(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate), input order."""
    values = p_values(p)
    m = values.size
    if m == 0:
        return values
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    # Step-up: each adjusted value is the smallest scaled value at its rank or above.
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(monotone, 1.0)
    return adjusted


def bonferroni(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Bonferroni adjusted p-values (controls the family-wise error rate)."""
    values = p_values(p)
    return np.minimum(values * values.size, 1.0)


def column_test(
    spec: NumericProfile | CategoricalProfile, col: pd.Series, inflation: float = 1.0
) -> ColumnTest:
    if isinstance(spec, NumericProfile):
        return numeric_test(spec, float_values(col), inflation)
    return categorical_test(spec, category_counts(col), inflation)


def counts_test(
    spec: NumericProfile | CategoricalProfile, counted: WindowColumn, inflation: float = 1.0
) -> ColumnTest:
    if isinstance(spec, NumericProfile) and isinstance(counted, NumericCells):
        return numeric_test(spec, counted, inflation)
    if isinstance(spec, CategoricalProfile) and isinstance(counted, dict):
        return categorical_test(spec, counted, inflation)
    raise DataError(f"feature {spec.name!r} was counted as the wrong kind ({spec.kind} expected)")


def numeric_test(
    ref: NumericProfile, values: np.ndarray | NumericCells, inflation: float = 1.0
) -> ColumnTest:
    """Two-sample KS with the asymptotic Kolmogorov p-value, plus the effect sizes.

    ``inflation`` (design_effect.SampleDesign) shrinks the reference to the independent rows
    it is worth; 1 is the plain two-sample test.
    """
    if isinstance(values, NumericCells):
        dist, n_cur = cells_distance(ref, values), values.n
    else:
        dist, n_cur = numeric_distance(ref, values), len(values)
    n_effective = pair_rows(ref.n, n_cur, inflation) if inflation != 1.0 else dist.n_effective
    return ColumnTest(
        test="ks",
        statistic=dist.ks,
        p_value=float(kolmogorov(math.sqrt(n_effective) * dist.ks)),
        psi=dist.psi,
        missing_rate_current=dist.missing_rate,
        wasserstein_norm=dist.wasserstein_norm,
    )


def categorical_test(
    ref: CategoricalProfile, counts: dict[str, int], inflation: float = 1.0
) -> ColumnTest:
    """Chi-square homogeneity on counts; unseen categories pool into one "other" bucket.

    The reference's counts enter the test divided by ``inflation`` (its effective rows), the
    first-order Rao-Scott correction for a clustered reference against independent rows.
    """
    names = list(ref.counts)
    ref_c = np.array([ref.counts[k] for k in names], dtype=np.float64)
    cur_c = np.array([counts.get(k, 0) for k in names], dtype=np.float64)
    new_missing = float(counts.get(MISSING_CATEGORY, 0)) if MISSING_CATEGORY not in names else 0.0
    unseen = sorted(k for k in counts if k not in ref.counts and k != MISSING_CATEGORY)
    pooled = float(sum(counts[k] for k in unseen))
    if pooled and OTHER_CATEGORY in ref.counts:
        cur_c[names.index(OTHER_CATEGORY)] += pooled
        pooled = 0.0
    # Buckets the reference never filled hold 0 there; the two-sample test is still defined
    # because expected counts come from the pooled column totals.
    extra = [c for c in (pooled, new_missing) if c]
    ref_c = np.append(ref_c, np.zeros(len(extra)))
    cur_c = np.append(cur_c, extra)
    statistic, p_value = chi2_homogeneity(ref_c / max(inflation, 1.0), cur_c)
    ref_p, cur_p = ref_c / ref_c.sum(), cur_c / cur_c.sum()
    return ColumnTest(
        test="chi2",
        statistic=statistic,
        p_value=p_value,
        psi=population_stability_index(ref_p, cur_p),
        missing_rate_current=counts.get(MISSING_CATEGORY, 0) / cur_c.sum(),
        js=js_distance(ref_p, cur_p),
        unseen=unseen,
    )


def chi2_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample chi-square on a 2 x k table; cells expected below 5 are pooled first."""
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    total = a + b
    share_a = a.sum() / total.sum()
    rare = np.minimum(total * share_a, total * (1.0 - share_a)) < MIN_EXPECTED
    if np.count_nonzero(rare) >= 2:
        a = np.append(a[~rare], a[rare].sum())
        b = np.append(b[~rare], b[rare].sum())
        total = a + b
    if len(a) < 2:
        return 0.0, 1.0
    expected_a, expected_b = total * share_a, total * (1.0 - share_a)
    statistic = float(
        np.sum((a - expected_a) ** 2 / expected_a + (b - expected_b) ** 2 / expected_b)
    )
    return statistic, float(chi2.sf(statistic, len(a) - 1))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2: 0 for equal distributions, 1 for disjoint ones."""
    m = 0.5 * (p + q)
    divergence = 0.5 * (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / math.log(2.0)
    return float(math.sqrt(max(divergence, 0.0)))


def p_values(p: np.ndarray | Sequence[float]) -> np.ndarray:
    values = np.asarray(p, dtype=np.float64).ravel()
    if np.any(~np.isfinite(values)) or np.any((values < 0.0) | (values > 1.0)):
        raise DataError("p-values must be numbers between 0 and 1")
    return values
