"""What the live figures (store/live/figures.py) hand back: plain frozen records per version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RoleTraffic:
    """One (version, role)'s rows in a window: how many, how many requests, how fast."""

    version: int
    role: str
    rows: int
    # Distinct request ids among the rows that carry one; None when none carries one.
    requests: int | None
    p50_latency_ms: float | None
    p99_latency_ms: float | None
    first_at: datetime | None
    last_at: datetime | None


@dataclass(frozen=True)
class ShadowCoverage:
    """Production rows logged while a shadow challenger ran, and how many it scored.

    The span is from the challenger's first to its last shadow row in the window; a
    production row of that span without a shadow partner is a miss (failed, dropped or
    not logged because the log was busy).
    """

    challenger_version: int
    production_rows: int
    paired_rows: int

    @property
    def missed(self) -> int:
        return max(self.production_rows - self.paired_rows, 0)

    @property
    def miss_rate(self) -> float | None:
        return self.missed / self.production_rows if self.production_rows else None


@dataclass(frozen=True)
class LoggedOutputs:
    """Logged outputs column-wise: ids, predicted label or value, P(positive) for binary
    models, the output document (multiclass probabilities), the current label or None."""

    ids: list[str]
    prediction: list[str]
    probability: list[float | None]
    output: list[dict[str, Any] | None]
    label: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labelled(self) -> int:
        return sum(1 for v in self.label if v is not None)


@dataclass(frozen=True)
class ShadowPairs:
    """Records both versions scored: production's row k and the shadow's row k are one record.

    ``label`` is the record's current label, sent for either row's id (labels by key may
    land on either).
    """

    production: LoggedOutputs
    challenger: LoggedOutputs

    def __len__(self) -> int:
        return len(self.production)
