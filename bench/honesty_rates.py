"""Rates for bench/honesty.py: hits out of total with a Wilson interval, a target and a row."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# -- rates ------------------------------------------------------------------------------


@dataclass
class Rate:
    """hits out of total, with an optional target ("<= 5%") and whether it is met."""

    hits: int
    total: int
    target: str | None = None
    cmp: str | None = None  # "<=" or ">="
    limit: float | None = None

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    @property
    def met(self) -> bool | None:
        if self.limit is None or self.value is None:
            return None
        return self.value <= self.limit if self.cmp == "<=" else self.value >= self.limit

    def cell(self) -> str:
        if not self.total:
            return "n/a"
        text = f"{self.hits}/{self.total} = {self.value:.1%}"
        lo, hi = wilson(self.hits, self.total)
        return f"{text} [{lo:.1%}, {hi:.1%}]"

    def verdict(self) -> str:
        if self.limit is None:
            return ""
        met = self.met
        return "n/a" if met is None else ("met" if met else "**missed**")

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "total": self.total,
            "rate": self.value,
            "wilson95": list(wilson(self.hits, self.total)) if self.total else None,
            "target": self.target,
            "met": self.met,
        }


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if not total:
        return (math.nan, math.nan)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def at_most(limit: float) -> dict[str, Any]:
    return {"target": f"≤ {limit:.1%}", "cmp": "<=", "limit": limit}


def at_least(limit: float) -> dict[str, Any]:
    return {"target": f"≥ {limit:.0%}", "cmp": ">=", "limit": limit}


@dataclass
class Row:
    """One line of the table."""

    section: str
    what: str
    window: str
    rate: Rate | None = None
    text: str | None = None
    target: str | None = None
    verdict: str | None = None
    data: str = ""

    def cells(self) -> list[str]:
        shown = self.text if self.text is not None else (self.rate.cell() if self.rate else "n/a")
        target = self.target if self.target is not None else (self.rate and self.rate.target)
        verdict = (
            self.verdict if self.verdict is not None else (self.rate.verdict() if self.rate else "")
        )
        return [
            self.data,
            self.section,
            self.what,
            self.window,
            shown,
            target or "—",
            verdict or "",
        ]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data": self.data,
            "section": self.section,
            "what": self.what,
            "window": self.window,
        }
        if self.rate is not None:
            out["rate"] = self.rate.to_json()
        if self.text is not None:
            out["text"] = self.text
        if self.target is not None or self.verdict is not None:
            out.update(target=self.target, verdict=self.verdict)
        return out


def table(rows: list[Row]) -> str:
    head = [
        "data",
        "section",
        "signal / case",
        "window",
        "rate (hits/total = %, Wilson 95%)",
        "target",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)
