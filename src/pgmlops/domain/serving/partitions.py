"""Time ranges of the prediction log's partitions: which to create ahead, which are old.

Pure arithmetic on UTC datetimes. A partition covers [lo, hi); periods start at midnight
UTC on the first of a month ("month") or on every day ("day"). Partitions never overlap,
so one named after its lower bound has a unique name whatever the period was when it was made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["month", "day"]
PREFIX = "predictions_p"


@dataclass(frozen=True, order=True)
class TimeRange:
    """[lo, hi) in UTC."""

    lo: datetime
    hi: datetime

    @property
    def name(self) -> str:
        """The partition's table name, from its lower bound."""
        fmt = "%Y%m%d" if self.lo.time() == datetime.min.time() else "%Y%m%d%H%M%S"
        return PREFIX + self.lo.astimezone(UTC).strftime(fmt)

    def overlaps(self, other: TimeRange) -> bool:
        return self.lo < other.hi and other.lo < self.hi


def period_start(ts: datetime, period: Period) -> datetime:
    """Start of the period holding ts (naive values are taken as UTC)."""
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if period == "month" else day


def next_start(lo: datetime, period: Period) -> datetime:
    """Start of the period after the one starting at lo."""
    if period == "day":
        return lo + timedelta(days=1)
    if lo.month == 12:
        return lo.replace(year=lo.year + 1, month=1)
    return lo.replace(month=lo.month + 1)


def period_of(ts: datetime, period: Period) -> TimeRange:
    """The whole period holding ts."""
    lo = period_start(ts, period)
    return TimeRange(lo, next_start(lo, period))


def wanted(now: datetime, period: Period, ahead: int) -> list[TimeRange]:
    """The current period and the `ahead` periods after it."""
    out = [period_of(now, period)]
    for _ in range(ahead):
        lo = out[-1].hi
        out.append(TimeRange(lo, next_start(lo, period)))
    return out


def missing(needed: Iterable[TimeRange], existing: Sequence[TimeRange]) -> list[TimeRange]:
    """The parts of `needed` no existing partition covers (clipped around existing ones).

    After a change of period (monthly partitions, then daily) a needed range may be partly
    covered: only the uncovered pieces are returned, so new partitions never overlap old ones.
    """
    pieces: list[TimeRange] = []
    ordered = sorted(existing)
    for want in sorted(set(needed)):
        lo = want.lo
        for have in ordered:
            if have.hi <= lo or not have.overlaps(want):
                continue
            if have.lo > lo:
                pieces.append(TimeRange(lo, have.lo))
            lo = max(lo, have.hi)
            if lo >= want.hi:
                break
        if lo < want.hi:
            pieces.append(TimeRange(lo, want.hi))
    # Two needed ranges may share a gap's pieces; keep each once, in order.
    return sorted(set(pieces))


def wholly_before(existing: Iterable[TimeRange], cutoff: datetime) -> list[TimeRange]:
    """Partitions whose every row is older than cutoff (hi <= cutoff), oldest first."""
    return sorted(r for r in existing if r.hi <= cutoff)
