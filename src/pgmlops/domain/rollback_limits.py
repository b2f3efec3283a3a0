"""The limits of the watch after a promotion: pure verdicts on figures the worker gathered.

Each verdict says whether one signal crossed its limit, with the numbers behind it in one
line (the audit reason) and as a dict (the stored figures). A signal without enough data
never crosses: it says what it is waiting for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SignalVerdict:
    """One signal of the watch: crossed its limit or not, in words and in numbers."""

    signal: str
    crossed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def wilson(hits: int, total: int, alpha: float) -> tuple[float, float]:
    """Two one-sided (1 - alpha) Wilson bounds of a proportion; (0, 1) with no trials."""
    if total <= 0:
        return 0.0, 1.0
    # Imported here: the rollback watch's records are read by `pgmlops models --history`,
    # which should not load SciPy.
    from scipy.stats import norm

    z = float(norm.ppf(1.0 - alpha))
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def error_rate_verdict(
    new_errors: int,
    new_total: int,
    old_errors: int,
    old_total: int,
    *,
    increase: float,
    alpha: float,
    min_requests: int,
    version: int,
    previous: int,
    refused: int = 0,
) -> SignalVerdict:
    """Crossed when the new rate's lower bound beats the previous rate's upper bound + increase.

    Errors are server errors (5xx, failed scoring); ``refused`` client errors (4xx) count in
    the requests and are shown, never alarmed on: a client's bad body is not the model's doing.
    Both bounds are one-sided at ``alpha``; a previous version with no counted requests is
    taken as error-free, so a new version alone must show ``increase`` significantly.
    """
    figures: dict[str, Any] = {
        "requests": new_total,
        "errors": new_errors,
        "refused": refused,
        "previous_requests": old_total,
        "previous_errors": old_errors,
        "increase_limit": increase,
        "alpha": alpha,
    }
    if new_total < min_requests:
        return SignalVerdict(
            "error_rate",
            False,
            f"error rate: {new_total} requests of v{version}, waiting for {min_requests}",
            figures,
        )
    rate = new_errors / new_total
    low, _ = wilson(new_errors, new_total, alpha)
    old_rate = old_errors / old_total if old_total else 0.0
    old_high = wilson(old_errors, old_total, alpha)[1] if old_total else 0.0
    crossed = low > old_high + increase
    figures.update(rate=rate, rate_low=low, previous_rate=old_rate, previous_high=old_high)
    detail = (
        f"server error rate {rate:.1%} of {new_total} requests (lower bound {low:.1%}) vs "
        f"v{previous} {old_rate:.1%} of {old_total} (upper bound {old_high:.1%}); "
        f"limit +{increase:.1%}; {refused} refused as client errors, not counted"
    )
    return SignalVerdict("error_rate", crossed, detail, figures)


def labelled_look(labels: int, first: int, looks: int) -> tuple[int, int] | None:
    """(labels the look judges, its number from 1) at the latest checkpoint reached, or None.

    Checkpoints are ``first`` x 2^k labels, k < ``looks``: the watch checks every minute, but
    the labelled comparison is made only at these few label counts, each on the oldest rows,
    so a check between checkpoints repeats the same test instead of taking a new look.
    """
    if labels < first or looks < 1:
        return None
    k = min((labels // first).bit_length() - 1, looks - 1)
    return first * 2**k, k + 1


def latency_verdict(
    p99: float | None,
    rows: int,
    previous_p99: float | None,
    previous_rows: int,
    *,
    ratio: float,
    margin_ms: float,
    ceiling_ms: float | None,
    min_rows: int,
    version: int,
    previous: int,
) -> SignalVerdict:
    """Crossed when p99 is ``ratio`` times and ``margin_ms`` above the previous p99, or above
    ``ceiling_ms`` (when set); each needs ``min_rows`` rows of the new version."""
    figures: dict[str, Any] = {
        "p99_ms": p99,
        "rows": rows,
        "previous_p99_ms": previous_p99,
        "previous_rows": previous_rows,
        "ratio_limit": ratio,
        "margin_ms": margin_ms,
        "ceiling_ms": ceiling_ms,
    }
    if p99 is None or rows < min_rows:
        return SignalVerdict(
            "latency_p99",
            False,
            f"p99 latency: {rows} rows of v{version}, waiting for {min_rows}",
            figures,
        )
    crossed_ceiling = ceiling_ms is not None and p99 > ceiling_ms
    crossed_ratio = (
        previous_p99 is not None
        and previous_rows >= min_rows
        and p99 > previous_p99 * ratio
        and p99 - previous_p99 > margin_ms
    )
    before = (
        f"v{previous} {previous_p99:.1f} ms on {previous_rows} rows"
        if previous_p99 is not None
        else f"no rows of v{previous}"
    )
    limits = f"limit {ratio:g}x and +{margin_ms:g} ms" + (
        f", or {ceiling_ms:g} ms" if ceiling_ms is not None else ""
    )
    detail = f"p99 latency {p99:.1f} ms on {rows} rows vs {before}; {limits}"
    return SignalVerdict("latency_p99", crossed_ceiling or crossed_ratio, detail, figures)


def reason_text(version: int, target: int, crossed: list[SignalVerdict], watch_hours: float) -> str:
    """The audit reason of an automatic rollback: every crossed signal with its numbers."""
    signals = "; ".join(v.detail for v in crossed)
    return (
        f"automatic rollback v{version} -> v{target} within the {watch_hours:g} h watch "
        f"after its promotion: {signals}"
    )
