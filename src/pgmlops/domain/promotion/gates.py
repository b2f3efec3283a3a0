"""Champion/challenger promotion gates: a decision with every gate's numbers and reasons."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgmlops.domain.metrics import (
    LOWER_IS_BETTER,
    THRESHOLD_METRICS,
    Scores,
    alert_rate,
    at_alert_rate,
    evaluate,
    improvement,
    metric_value,
)
from pgmlops.domain.policies import PromotionPolicy as PromotionPolicy
from pgmlops.domain.promotion.paired_bootstrap import paired_bootstrap, require_same_rows

# Comparisons allow this much float noise, so a drop of exactly the tolerance still passes.
_SLACK = 1e-12


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, a human line with the numbers, and the numbers themselves."""

    name: str
    passed: bool
    detail: str
    numbers: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (nan -> None)."""
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "numbers": _json_safe(self.numbers),
        }


@dataclass(frozen=True)
class Decision:
    """Whether the candidate may replace production, and why."""

    approved: bool
    primary_metric: str
    gates: tuple[GateResult, ...]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    baseline: dict[str, float] | None

    def failed(self) -> list[GateResult]:
        """The gates that said no."""
        return [g for g in self.gates if not g.passed]

    def summary(self) -> str:
        """One line: approved, or refused with each failed gate's reason."""
        if self.approved:
            return f"approved: passed {len(self.gates)} gate(s) on {self.primary_metric}"
        return "refused: " + "; ".join(f"{g.name}: {g.detail}" for g in self.failed())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the audit trail and the API (nan -> None)."""
        return {
            "approved": self.approved,
            "primary_metric": self.primary_metric,
            "gates": [g.to_dict() for g in self.gates],
            "failed": [g.name for g in self.failed()],
            "candidate": _json_safe(self.candidate),
            "champion": _json_safe(self.champion),
            "baseline": _json_safe(self.baseline),
        }


def decide(
    candidate: Scores,
    champion: Scores | None,
    baseline: Scores | None,
    policy: PromotionPolicy,
    *,
    clusters: np.ndarray | None = None,
) -> Decision:
    """Run every applicable gate on scores computed on the same holdout rows.

    With a champion: primary, one guard per guarded metric, floors, and (when `bootstrap` is
    on, the default) a paired interval of the gain that must exclude 0. Without one: the
    candidate must beat the dummy baseline by the minimum effect, with an interval of the
    gain that excludes 0 when `bootstrap` is on, and meet the floors. A binary guard on a
    thresholded metric (recall, precision, f1, accuracy) judges the candidate re-cut to flag
    the same share of rows as the champion does (see `_guard_gate`). Any metric that is nan
    on these rows fails its gate: no evidence, no promotion. With no champion, no baseline
    and no floors there is nothing to refuse on. `clusters` labels rows that repeat a
    feature vector; the intervals then resample whole clusters (see `paired_bootstrap`).
    """
    task = candidate.task
    policy.check(task)
    for other, role in ((champion, "champion"), (baseline, "baseline")):
        if other is not None:
            require_same_rows(candidate, other, role)
    primary = policy.primary_for(task)
    cand = evaluate(candidate)
    champ = evaluate(champion) if champion is not None else None
    base = evaluate(baseline) if baseline is not None else None
    gates: list[GateResult] = []
    if champ is not None:
        gates.append(_primary_gate(primary, cand[primary], champ[primary], policy.min_delta))
        assert champion is not None
        for name, tolerance in policy.guards_for(task).items():
            gates.append(_guard_gate(name, candidate, champion, cand, champ, tolerance))
    elif baseline is not None and base is not None:
        gates.append(
            _baseline_gate(
                primary, candidate, baseline, cand[primary], base[primary], policy, clusters
            )
        )
    for name, floor in policy.floors.items():
        gates.append(_floor_gate(name, cand[name], floor))
    if champion is not None and policy.bootstrap:
        gates.append(_bootstrap_gate(primary, candidate, champion, policy, clusters))
    return Decision(
        approved=all(g.passed for g in gates),
        primary_metric=primary,
        gates=tuple(gates),
        candidate=cand,
        champion=champ,
        baseline=base,
    )


def _primary_gate(name: str, cand: float, champ: float, min_delta: float) -> GateResult:
    numbers = {"candidate": cand, "champion": champ, "min_delta": min_delta}
    if _missing(cand, champ):
        return GateResult("primary", False, _undefined(name, numbers), numbers)
    gain = improvement(name, cand, champ)
    # A tie is no improvement: with min_delta 0 an identical retrain must not replace production.
    passed = gain > 0 and gain >= min_delta - _SLACK
    if gain == 0:
        verdict = "a tie is no improvement"
    else:
        verdict = f"{'meets' if passed else 'below'} the required {min_delta:+.4f}"
    detail = f"{name} {cand:.4f} vs champion {champ:.4f}: improvement {gain:+.4f}, {verdict}"
    return GateResult("primary", passed, detail, {**numbers, "improvement": gain})


def _guard_gate(
    name: str,
    candidate: Scores,
    champion: Scores,
    cand_all: Mapping[str, float],
    champ_all: Mapping[str, float],
    tolerance: float,
) -> GateResult:
    """The candidate may not be worse on `name` than the champion by more than `tolerance`.

    A binary thresholded metric at each model's own cut mixes ranking with the threshold
    choice (a champion tuned on few rows may sit at a high-recall, high-workload point), so
    the candidate is re-cut to flag the champion's share of rows and judged there: at the
    same workload it may not catch fewer positives. Its own-threshold figure is reported too.
    Without the candidate's proba the own-threshold figures are compared, as for other tasks.
    """
    own, champ = cand_all[name], champ_all[name]
    cand, head = own, f"{name} {own:.4f} vs champion {champ:.4f}"
    numbers: dict[str, float | None] = {"candidate": own, "champion": champ}
    if candidate.task == "binary" and name in THRESHOLD_METRICS and candidate.proba is not None:
        rate, own_rate = alert_rate(champion), alert_rate(candidate)
        recut = at_alert_rate(candidate, rate)
        cand = metric_value(name, recut)
        numbers |= {
            "candidate_at_champion_rate": cand,
            "champion_alert_rate": rate,
            "candidate_alert_rate": own_rate,
            "matched_alert_rate": alert_rate(recut),
        }
        head = (
            f"{name} {cand:.4f} at the champion's alert rate {rate:.1%} vs champion "
            f"{champ:.4f} (at its own threshold the candidate flags {own_rate:.1%}, "
            f"{name} {own:.4f})"
        )
    numbers["tolerance"] = tolerance
    if _missing(cand, champ):
        return GateResult(f"guard:{name}", False, _undefined(name, numbers), numbers)
    drop = -improvement(name, cand, champ)
    passed = drop <= tolerance + _SLACK
    verdict = "within" if passed else "exceeds"
    detail = f"{head}: worse by {max(0.0, drop):.4f}, {verdict} the allowed {tolerance:.4f}"
    return GateResult(f"guard:{name}", passed, detail, {**numbers, "drop": drop})


def _floor_gate(name: str, cand: float, floor: float) -> GateResult:
    numbers = {"candidate": cand, "floor": floor}
    if _missing(cand):
        return GateResult(f"floor:{name}", False, _undefined(name, numbers), numbers)
    if name in LOWER_IS_BETTER:
        passed, bound = cand <= floor + _SLACK, "at most"
    else:
        passed, bound = cand >= floor - _SLACK, "at least"
    detail = f"{name} {cand:.4f} must be {bound} {floor:.4f}"
    return GateResult(f"floor:{name}", passed, detail, numbers)


def min_effect(name: str, margin: float, base: float) -> float:
    """The smallest gain over the baseline that counts, in the metric's own units.

    Higher-is-better metrics (AUC, F1, accuracy, R²) live on a 0..1 scale, so the margin is
    absolute; error metrics (rmse, mae, log_loss, brier) have the target's scale, so the
    margin is a fraction of the baseline's error (0.01 = 1% less error than the dummy).
    """
    return margin * abs(base) if name in LOWER_IS_BETTER else margin


def _baseline_gate(
    name: str,
    candidate: Scores,
    baseline: Scores,
    cand: float,
    base: float,
    policy: PromotionPolicy,
    clusters: np.ndarray | None,
) -> GateResult:
    needed = min_effect(name, policy.baseline_margin, base) if not _missing(base) else math.nan
    numbers: dict[str, float | None] = {
        "candidate": cand,
        "baseline": base,
        "margin": policy.baseline_margin,
        "min_effect": needed,
    }
    if _missing(cand, base):
        return GateResult("baseline", False, _undefined(name, numbers), numbers)
    gain = improvement(name, cand, base)
    numbers["improvement"] = gain
    big_enough = gain > 0 and gain >= needed - _SLACK
    effect = f"{'at least' if big_enough else 'below'} the minimum effect {needed:+.4f}"
    head = f"{name} {cand:.4f} vs dummy baseline {base:.4f}: gain over baseline {gain:+.4f}"
    if not policy.bootstrap:
        return GateResult("baseline", big_enough, f"{head}, {effect}", numbers)
    low, mean, high = _interval(name, candidate, baseline, policy, clusters=clusters)
    numbers |= {"low": low, "mean": mean, "high": high, "confidence": policy.confidence}
    if _missing(low, high):
        return GateResult("baseline", False, _undefined(name, numbers), numbers)
    significant = low > 0
    where = "excludes 0" if significant else "does not exclude 0"
    numbers["rows"] = float(len(candidate))
    detail = f"{head} on {len(candidate):,} rows ({_ci(policy.confidence, low, high)}) {where}, "
    detail += effect
    passed = significant and big_enough
    if not passed:
        detail += "; " + first_version_remedy(len(candidate), mean, low, needed)
    return GateResult("baseline", passed, detail, numbers)


def first_version_remedy(rows: int, mean: float, low: float, needed: float) -> str:
    """What would change a refused first version: how many rows, or force with a reason.

    The interval's half-width shrinks as 1/sqrt(rows), so if the gain stayed at its mean the
    lower bound would clear max(0, needed) with rows * ((mean - low) / (mean - needed))^2.
    """
    force = "or force the promotion, with a reason"
    bar = max(needed, 0.0)
    if not math.isfinite(mean) or mean <= bar:
        return (
            "the mean gain is not above what is required, so more rows of the same kind "
            f"would not change it: add informative features or labels, {force}"
        )
    if low > bar:  # significant but below the minimum effect: rows do not help
        return f"lower promotion.baseline_margin if this effect is worth having, {force}"
    factor = ((mean - low) / (mean - bar)) ** 2
    more = max(1, math.ceil(rows * factor))
    return (
        f"about {more:,} labelled rows (now {rows:,}) would make this gain significant "
        f"if it held, {force}"
    )


def _bootstrap_gate(
    name: str,
    candidate: Scores,
    champion: Scores,
    policy: PromotionPolicy,
    clusters: np.ndarray | None,
) -> GateResult:
    confidence = policy.challenger_confidence
    low, mean, high = _interval(name, candidate, champion, policy, confidence, clusters)
    numbers = {
        "low": low,
        "mean": mean,
        "high": high,
        "confidence": confidence,
        "rounds": float(policy.bootstrap_rounds),
    }
    if _missing(low, high):
        return GateResult("bootstrap", False, _undefined(name, numbers), numbers)
    # Identical predictions give the interval [0, 0]: not above zero, so refused.
    passed = low > 0
    interval = _ci(confidence, low, high)
    if passed:
        detail = f"{name} improvement {mean:+.4f} ({interval}) excludes 0"
    else:
        where = "is below 0" if high < 0 else "does not exclude 0"
        detail = f"no significant improvement: {name} gain {mean:+.4f} ({interval}) {where}"
    return GateResult("bootstrap", passed, detail, numbers)


def _interval(
    name: str,
    candidate: Scores,
    other: Scores,
    policy: PromotionPolicy,
    confidence: float | None = None,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    return paired_bootstrap(
        name,
        candidate,
        other,
        rounds=policy.bootstrap_rounds,
        confidence=policy.confidence if confidence is None else confidence,
        seed=policy.seed,
        sided=1,
        clusters=clusters,
    )


def _ci(confidence: float, low: float, high: float) -> str:
    return f"one-sided {confidence * 100:g}% CI [{low:+.4f}, {high:+.4f}]"


def _missing(*values: float) -> bool:
    return any(v is None or math.isnan(v) for v in values)


def _undefined(name: str, numbers: Mapping[str, float | None]) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in numbers.items())
    return f"{name} is undefined on these rows ({shown}); cannot judge, so refusing"


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
