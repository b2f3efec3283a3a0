"""Performance of a window from counts: binary scores binned, regression errors summed.

A database returns a binary model's rows grouped by (label, prediction, score bin) with the
sums of p and p² per group; the labelled metrics and CBPE follow from those numbers:

- threshold metrics (accuracy, precision, recall, F1) from the confusion counts: exact;
- log loss and Brier score from sums of the clipped log-probabilities and of p, p²: exact;
- ROC AUC and average precision from per-label histograms, rows of one bin counting as
  tied: exact up to pairs within a bin (bins on reference-score quantiles hold ~0.1% each);
- CBPE: the calibration map is linear between its breakpoints, and every breakpoint and the
  threshold are bin edges, so the expected confusion counts are exact; its AUC counts rows
  of one bin as tied.

Regression metrics (RMSE, MAE, R²) follow from sums of errors and the labels' variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pgmlops.domain.monitoring.performance import Calibration, calibrate, grouped_expected_auc

# Fine bins on the reference scores' quantiles: within-bin ties move an AUC by < 0.001.
SCORE_BINS = 1000


def score_edges(
    reference: np.ndarray | None,
    calibration: Calibration | None,
    threshold: float | None,
    bins: int = SCORE_BINS,
) -> np.ndarray:
    """Ascending bin edges for P(positive): reference quantiles, calibration knots, threshold."""
    parts = [np.array([0.5 if threshold is None else float(threshold)])]
    ref = np.asarray(reference, dtype=np.float64) if reference is not None else np.empty(0)
    ref = np.sort(ref[np.isfinite(ref)])
    if ref.size:
        idx = np.clip(np.ceil(np.arange(1, bins) / bins * ref.size).astype(np.int64) - 1, 0, None)
        parts.append(ref[idx])
    else:
        parts.append(np.linspace(0.0, 1.0, bins + 1))
    if calibration is not None and calibration.kind == "binary":
        parts.append(np.asarray(calibration.x[0], dtype=np.float64))
    return np.unique(np.concatenate(parts))


@dataclass(frozen=True)
class ScoreBins:
    """Rows per bin of P(positive): bin b holds [edges[b-1], edges[b]), as width_bucket counts."""

    edges: np.ndarray
    n: np.ndarray
    total: np.ndarray  # sum of P(positive)
    squares: np.ndarray  # sum of P(positive)²

    @classmethod
    def collect(
        cls,
        edges: np.ndarray,
        bins: np.ndarray,
        n: np.ndarray,
        total: np.ndarray,
        squares: np.ndarray,
    ) -> ScoreBins:
        """Add up (bin, n, sum, sum of squares) rows, any number per bin."""
        size = len(edges) + 1
        b = np.asarray(bins, dtype=np.int64)
        return cls(
            edges=np.asarray(edges, dtype=np.float64),
            n=np.bincount(b, weights=n, minlength=size),
            total=np.bincount(b, weights=total, minlength=size),
            squares=np.bincount(b, weights=squares, minlength=size),
        )


def cbpe_from_bins(cal: Calibration, bins: ScoreBins, threshold: float | None) -> dict[str, float]:
    """``estimate_performance`` (binary) from binned raw scores; see the module docstring."""
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc")
    n_rows = float(bins.n.sum())
    if n_rows == 0:
        return dict.fromkeys(keys, float("nan"))
    edges = bins.edges
    lo = np.concatenate(([edges[0]], edges))
    hi = np.concatenate((edges, [edges[-1]]))
    # The calibrated probability is a + b * raw inside each bin (constant in the end bins).
    f_lo, f_hi = calibrate(cal, lo), calibrate(cal, hi)
    width = hi - lo
    slope = np.divide(f_hi - f_lo, width, out=np.zeros_like(width), where=width > 0)
    base = f_lo - slope * lo
    sum_p = base * bins.n + slope * bins.total
    sum_p2 = base**2 * bins.n + 2 * base * slope * bins.total + slope**2 * bins.squares
    cut = 0.5 if threshold is None else threshold
    positive = lo >= cut
    positive[0] = False
    tp, fn = float(sum_p[positive].sum()), float(sum_p[~positive].sum())
    fp = float(bins.n[positive].sum()) - tp
    tn = float(bins.n[~positive].sum()) - fn
    filled = bins.n > 0
    auc = grouped_expected_auc(
        sum_p[filled], bins.n[filled] - sum_p[filled], float(np.sum(sum_p - sum_p2))
    )
    return {
        "accuracy": (tp + tn) / n_rows,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": auc,
    }


def binary_metrics(
    truth: np.ndarray,
    predicted: np.ndarray,
    bins: np.ndarray,
    n: np.ndarray,
    sums: Sequence[np.ndarray] | None,
) -> dict[str, float]:
    """The labelled binary metrics from groups (truth, predicted, score bin, rows).

    ``truth`` and ``predicted`` are booleans (positive class); ``sums`` holds, per group,
    sum of p, sum of p², sum of ln(clipped p) and of ln(clipped 1 - p); None when some rows
    have no probability (the probability metrics are then nan, as on rows).
    """
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    n = np.asarray(n, dtype=np.float64)
    total = float(n.sum())
    tp, fp = float(n[truth & predicted].sum()), float(n[~truth & predicted].sum())
    fn, tn = float(n[truth & ~predicted].sum()), float(n[~truth & ~predicted].sum())
    out = {
        "roc_auc": float("nan"),
        "pr_auc": float("nan"),
        "recall": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": (tp + tn) / total if total else float("nan"),
        "log_loss": float("nan"),
        "brier": float("nan"),
    }
    if sums is None or not total:
        return out
    sum_p, sum_p2, ln_p, ln_q = (np.asarray(s, dtype=np.float64) for s in sums)
    positives = float(n[truth].sum())
    out["log_loss"] = -(float(ln_p[truth].sum()) + float(ln_q[~truth].sum())) / total
    out["brier"] = (float(sum_p2.sum()) - 2 * float(sum_p[truth].sum()) + positives) / total
    if 0 < positives < total:
        size = int(np.max(bins)) + 1 if len(bins) else 1
        pos = np.bincount(bins[truth], weights=n[truth], minlength=size)
        neg = np.bincount(bins[~truth], weights=n[~truth], minlength=size)
        out["roc_auc"] = _binned_auc(pos, neg)
        out["pr_auc"] = _binned_average_precision(pos, neg)
    return out


def _binned_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of per-bin positive and negative counts (bins ascending, ties half)."""
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def _binned_average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision with each bin one threshold, highest first (as scikit-learn's)."""
    filled = (pos + neg) > 0
    tps, fps = np.cumsum(pos[filled][::-1]), np.cumsum(neg[filled][::-1])
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def regression_metrics(n: int, sse: float, sae: float, variance: float | None) -> dict[str, float]:
    """RMSE, MAE and R² from the count, the sums of squared and absolute errors, var(y)."""
    if n == 0:
        return dict.fromkeys(("rmse", "mae", "r2"), float("nan"))
    r2 = float("nan")
    if n >= 2 and variance is not None:
        sst = variance * n
        # scikit-learn's r2_score on constant labels: 1 for a perfect fit, else 0.
        r2 = (1.0 if sse == 0 else 0.0) if sst == 0 else 1.0 - sse / sst
    return {"rmse": math.sqrt(sse / n), "mae": sae / n, "r2": r2}


def _ratio(numerator: float, denominator: float) -> float:
    # Matches the labelled metrics' zero_division=0.
    return numerator / denominator if denominator > 0 else 0.0
