"""A numeric column of a window as counts on the reference's points, and its distances.

Every numeric drift statistic (KS at the profile's grid, PSI on its bins, Wasserstein-1)
reads a window only through how many values fall at and between the reference's grid
points and PSI edges, and the sum of the values between them. ``NumericCells`` holds exactly
that: for points p_1 < ... < p_K, the count at each point and the count and sum in each
open interval (-inf, p_1), (p_1, p_2), ..., (p_K, inf). A database can compute them with
``width_bucket`` and return O(points) numbers; rows read into memory give the same cells
through ``cells_from_values``, so both paths share one formula and agree to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgmlops.domain.monitoring.profile import population_stability_index, sorted_present
from pgmlops.domain.monitoring.profile_records import NumericProfile


@dataclass(frozen=True)
class NumericCells:
    """Counts of a column's values at and between ascending ``points``, plus missing ones."""

    points: np.ndarray  # (K,) ascending distinct
    at: np.ndarray  # (K,) values equal to each point
    inside: np.ndarray  # (K + 1,) values strictly between consecutive points (and beyond)
    inside_sum: np.ndarray  # (K + 1,) their sums
    n_missing: int

    @property
    def n_present(self) -> int:
        return int(self.at.sum() + self.inside.sum())

    @property
    def n(self) -> int:
        return self.n_present + self.n_missing

    @property
    def total(self) -> float:
        return float(self.inside_sum.sum() + (self.at * self.points).sum())

    @classmethod
    def from_codes(
        cls,
        points: np.ndarray,
        codes: np.ndarray,
        counts: np.ndarray,
        sums: np.ndarray,
        n_missing: int,
    ) -> NumericCells:
        """From (code, count, sum) rows: code 2i is open cell i, code 2i + 1 is point i."""
        k = len(points)
        codes = np.asarray(codes, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.float64)
        sums = np.asarray(sums, dtype=np.float64)
        if codes.size and (codes.min() < 0 or codes.max() > 2 * k):
            raise ValueError(f"cell codes must lie in 0..{2 * k}")
        full = np.bincount(codes, weights=counts, minlength=2 * k + 1)
        full_sum = np.bincount(codes, weights=sums, minlength=2 * k + 1)
        return cls(
            points=np.asarray(points, dtype=np.float64),
            at=full[1::2],
            inside=full[0::2],
            inside_sum=full_sum[0::2],
            n_missing=int(n_missing),
        )


def cell_points(ref: NumericProfile) -> np.ndarray:
    """The points a window is counted at: the profile's grid and its PSI edges."""
    return np.unique(
        np.concatenate([np.asarray(ref.grid, float), np.asarray(ref.psi_edges, float)])
    )


def cells_from_values(values: np.ndarray, points: np.ndarray, name: str) -> NumericCells:
    """Count float values (NaN missing) on ``points``; DataError for infinite values."""
    present, n_missing = sorted_present(values, name)
    below = np.searchsorted(present, points, side="left")
    upto = np.searchsorted(present, points, side="right")
    starts = np.concatenate(([0], upto))
    ends = np.concatenate((below, [len(present)]))
    cumulative = np.concatenate(([0.0], np.cumsum(present)))
    return NumericCells(
        points=np.asarray(points, dtype=np.float64),
        at=(upto - below).astype(np.float64),
        inside=(ends - starts).astype(np.float64),
        inside_sum=cumulative[ends] - cumulative[starts],
        n_missing=n_missing,
    )


def bin_counts(cells: NumericCells, edges: np.ndarray) -> np.ndarray:
    """Values per bin (edge[i-1], edge[i]], plus above the last; ``edges`` among the points."""
    le = np.cumsum(cells.inside)[: len(cells.points)] + np.cumsum(cells.at)
    at_edges = np.searchsorted(cells.points, edges)
    return np.diff(le[at_edges], prepend=0, append=cells.n_present)


@dataclass(frozen=True)
class NumericDistance:
    """How a window's numeric column differs from its reference profile."""

    ks: float  # sup |F_ref - F_cur| at the grid points, missing counted above every number
    n_effective: float  # n_ref * n_cur / (n_ref + n_cur), for the KS p-value
    psi: float  # over the reference quantile bins plus a missing bin
    wasserstein_norm: float | None  # W1 / reference std; None when a side has no values
    missing_rate: float


def numeric_distance(ref: NumericProfile, values: np.ndarray) -> NumericDistance:
    """Compare window values with a profile: ECDF distance, PSI and Wasserstein-1."""
    return cells_distance(ref, cells_from_values(values, cell_points(ref), ref.name))


def cells_distance(ref: NumericProfile, cells: NumericCells) -> NumericDistance:
    """``numeric_distance`` from a window's cells on ``cell_points(ref)``."""
    points = cells.points
    n_cur, n_ref, n_present = cells.n, ref.n, cells.n_present
    grid = np.asarray(ref.grid, dtype=np.float64)
    at_grid = np.searchsorted(points, grid)
    # Counts and sums of the window's values <= (le) and < (lt) each point.
    le = np.cumsum(cells.inside)[: len(points)] + np.cumsum(cells.at)
    lt = le - cells.at
    at_sum = cells.at * points
    sum_le = np.cumsum(cells.inside_sum)[: len(points)] + np.cumsum(at_sum)
    sum_lt = sum_le - at_sum
    ref_le = np.asarray(ref.grid_counts, dtype=np.float64)
    cur_le = le[at_grid]
    cur_below = float(lt[at_grid[0]]) if len(grid) else 0.0
    # ECDFs over all rows with missing as a value above every number: the last point compares
    # the shares of present values, so a jump in missingness moves the statistic too.
    f_ref = np.concatenate(([0.0], ref_le, [n_ref - ref.n_missing])) / n_ref
    f_cur = np.concatenate(([cur_below], cur_le, [n_present])) / n_cur
    cur_bins = bin_counts(cells, np.asarray(ref.psi_edges, dtype=np.float64))
    psi = population_stability_index(
        np.append(np.asarray(ref.psi_counts, dtype=np.float64), ref.n_missing) / n_ref,
        np.append(cur_bins.astype(np.float64), cells.n_missing) / n_cur,
    )
    wasserstein = None
    if n_present and len(grid) and ref.n - ref.n_missing:
        wasserstein = _wasserstein_norm(
            ref, grid, ref_le, cur_le, lt[at_grid], sum_le[at_grid], sum_lt[at_grid], cells
        )
    return NumericDistance(
        ks=float(np.max(np.abs(f_ref - f_cur))),
        n_effective=n_ref * n_cur / (n_ref + n_cur),
        psi=psi,
        wasserstein_norm=wasserstein,
        missing_rate=cells.n_missing / n_cur,
    )


def _wasserstein_norm(
    ref: NumericProfile,
    grid: np.ndarray,
    ref_le: np.ndarray,
    cur_le: np.ndarray,
    below: np.ndarray,
    sum_le: np.ndarray,
    sum_lt: np.ndarray,
    cells: NumericCells,
) -> float:
    """W1 = integral of |F_ref - F_cur|, over the reference std.

    The reference is a step function on its grid; the window is used exactly, through the
    sums of its values between grid points, so the wide tail intervals stay accurate.
    """
    n_ref_present, n_cur = ref.n - ref.n_missing, cells.n_present
    width = np.diff(grid)
    f_ref = ref_le[:-1] / n_ref_present
    start, end = cur_le[:-1] / n_cur, below[1:] / n_cur  # F_cur at g_k and just before g_k+1
    inner_sum = sum_lt[1:] - sum_le[:-1]
    area_cur = start * width + ((below[1:] - cur_le[:-1]) * grid[1:] - inner_sum) / n_cur
    one_sided = np.where(f_ref >= end, f_ref * width - area_cur, area_cur - f_ref * width)
    # Where the window's ECDF crosses the reference step, take it as linear in the interval.
    crossing = (start < f_ref) & (f_ref < end)
    t = np.divide(f_ref - start, end - start, out=np.zeros_like(f_ref), where=crossing)
    crossed = width * ((f_ref - start) * t + (end - f_ref) * (1.0 - t)) / 2.0
    inside = float(np.sum(np.where(crossing, crossed, one_sided)))
    # Beyond the reference range F_ref is 0 (below) or 1 (above): integrate the window exactly.
    low = grid[0] * below[0] - sum_lt[0]
    high = (cells.total - sum_le[-1]) - grid[-1] * (n_cur - cur_le[-1])
    w1 = inside + (low + high) / n_cur
    return w1 / ref.std if ref.std else w1
