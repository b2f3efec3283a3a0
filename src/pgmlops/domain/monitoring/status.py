"""One overall status of a monitoring run (ok, warning or degraded) and the reasons for it.

The report's banner, the page, the JSON and `pgmlops monitor --fail-on` all read this one
verdict, so they cannot disagree. Degraded means a signal fell significantly beyond its limit
(the run's ``reasons``, which the retraining triggers read too); warning means something moved
that a person should look at but that does not alarm on its own: a few drifted features
without dataset drift, a labelled metric outside the guards falling significantly, a fall
seen on too few labels to alarm, labels the model cannot use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from pgmlops.domain.intervals import drop_test
from pgmlops.domain.metrics import improvement
from pgmlops.domain.monitoring.drift import DriftReport

Level = Literal["ok", "warning", "degraded"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "degraded")


class Status(BaseModel):
    """The run's verdict: its level, and one line per thing that set it."""

    level: Level
    reasons: list[str] = Field(description="degraded signals (the run's reasons)")
    warnings: list[str] = Field(description="what moved without alarming")

    @property
    def headline(self) -> str:
        """A short title for a banner."""
        if self.level == "degraded":
            return f"Degraded: {len(self.reasons)} signal{'s' if len(self.reasons) != 1 else ''}"
        if self.level == "warning":
            return f"Warning: {len(self.warnings)} thing{'s' if len(self.warnings) != 1 else ''}"
        return "OK: no signal degraded, nothing to watch"

    def fails(self, threshold: Level) -> bool:
        """Whether this status is at or above ``threshold`` (for `--fail-on`)."""
        return LEVELS.index(self.level) >= LEVELS.index(threshold)


def overall_status(
    reasons: list[str],
    drift: DriftReport,
    confidence: Mapping[str, Any],
    estimated: Mapping[str, Any],
    labelled: Mapping[str, Any],
) -> Status:
    """The status of a run from its degraded ``reasons`` and the signals' numbers."""
    warnings: list[str] = []
    if not drift.dataset_drift and drift.drifted_features:
        names = ", ".join(drift.drifted_features[:6])
        warnings.append(
            f"{len(drift.drifted_features)} of {len(drift.features)} features drifted ({names}) "
            f"without dataset drift"
        )
    if drift.multivariate is not None and drift.multivariate.drifted and not drift.dataset_drift:
        warnings.append(f"multivariate drift: {drift.multivariate.reason}")
    for what, block in (("confidence", confidence), ("estimated performance", estimated)):
        drop, limit = block.get("drop"), block.get("limit")
        if not block.get("degraded") and _beyond(drop, limit):
            warnings.append(
                f"{what} {drop:.1%} lower than at training (limit {limit:.0%}), "
                f"not significant or not corroborated"
            )
    judged = [r for r in labelled.get("judged") or [] if r.get("verdict") == "warning"]
    warnings.extend(r["note"] for r in judged if r["role"] != "other")
    others = [r for r in judged if r["role"] == "other"]
    if others:
        # One line for the metrics outside the guards: they usually fall together.
        falls = ", ".join(
            f"{r['metric']} {r['reference']:.3f} → {r['current']:.3f}" for r in others
        )
        n = labelled.get("n_labels") or 0
        warnings.append(
            f"labelled metrics outside the promotion guards fell on {n:,} labels: {falls}"
        )
    bad = (labelled.get("bad_labels") or {}).get("count") or 0
    if bad:
        warnings.append(f"{bad:,} feedback labels are not usable for this model")
    level: Level = "degraded" if reasons else "warning" if warnings else "ok"
    return Status(level=level, reasons=list(reasons), warnings=warnings)


def _beyond(drop: Any, limit: Any) -> bool:
    return (
        isinstance(drop, int | float)
        and isinstance(limit, int | float)
        and math.isfinite(drop)
        and drop > limit
    )


def judge_metrics(
    metrics: Mapping[str, Any],
    reference: Mapping[str, Any],
    *,
    primary: str,
    guards: list[str],
    n_labels: int,
    min_labels: int,
    limit: float,
    alpha: float,
    null_for: Callable[[str], np.ndarray] | None,
) -> list[dict[str, Any]]:
    """Every labelled metric against its reference: the primary, each guard, the others.

    A primary or guard metric is degraded when it falls by more than ``limit`` (relative),
    significantly at ``alpha`` on ``n_labels`` labels, with at least ``min_labels`` labels.
    Any other significant fall beyond the limit (or a primary/guard one on too few labels)
    is a warning. Without reference outputs (``null_for`` None) there is no test, and a fall
    beyond the limit counts as significant, as the primary's legacy rule does.
    """
    rows = []
    for name in sorted(metrics, key=lambda m: (m != primary, m not in guards, m)):
        current, ref = metrics.get(name), reference.get(name)
        role = "primary" if name == primary else "guard" if name in guards else "other"
        row: dict[str, Any] = {
            "metric": name,
            "role": role,
            "current": current,
            "reference": ref,
            "drop": None,
            "p_value": None,
            "verdict": "ok",
            "note": "",
        }
        rows.append(row)
        if not _numbers(current, ref) or not ref:
            continue
        drop = -improvement(name, current, ref) / abs(ref)
        row["drop"] = drop
        if drop <= limit:
            continue
        # Only falls beyond the limit are tested: the null draws cost time per metric.
        if null_for is not None:
            verdict = drop_test(name, current, ref, null_for(name), alpha=alpha, tolerance=limit)
            row["p_value"], significant = verdict.p_value, verdict.significant
        else:
            significant = True
        if not significant:
            continue
        enough = n_labels >= min_labels
        fall = f"labelled {name} {ref:.3f} → {current:.3f} ({drop:.1%} worse, limit {limit:.0%})"
        if role != "other" and enough:
            row["verdict"], row["note"] = "degraded", f"{fall} on {n_labels:,} labels"
        elif role != "other":
            row["verdict"] = "warning"
            row["note"] = f"{fall} on {n_labels:,} labels; needs {min_labels:,} labels to alarm"
        else:
            row["verdict"] = "warning"
            row["note"] = f"{fall} on {n_labels:,} labels (not a promotion guard)"
    return rows


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)
