"""Drift verdicts: one feature's test judged against alpha and its effect bars, and the report.

A feature counts as drifted only when its corrected p-value is below ``alpha`` AND an effect
passes its bar (the larger of a practical floor and the effect's chance level at the
window's size, drift_null.py); drift.py runs the tests and assembles the report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pgmlops.domain.monitoring.drift_null import (
    js_threshold,
    psi_threshold,
    reference_shares,
    size_factor,
    wasserstein_threshold,
)
from pgmlops.domain.monitoring.drift_tests import ColumnTest
from pgmlops.domain.monitoring.multivariate import MultivariateDrift
from pgmlops.domain.monitoring.profile import OutputKind
from pgmlops.domain.monitoring.profile_records import CategoricalProfile, NumericProfile
from pgmlops.domain.policies import DriftPolicy
from pgmlops.domain.schema import Kind


class FeatureDrift(BaseModel):
    """One column's test, effect sizes and verdict."""

    name: str
    kind: Kind
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    p_adjusted: float
    wasserstein_norm: float | None = Field(None, description="numeric: W1 / reference std (or W1)")
    js: float | None = Field(None, description="categorical: Jensen-Shannon distance, base 2")
    psi: float
    effect_thresholds: dict[str, float] = Field(
        default_factory=dict, description="bar per effect: max(floor, null quantile at n)"
    )
    missing_rate_reference: float
    missing_rate_current: float
    unseen_categories: list[str] = Field(default_factory=list)
    drifted: bool
    reason: str


class OutputDrift(FeatureDrift):
    """Drift of the model's outputs (scores, classes or predictions) and of its confidence."""

    output: OutputKind
    mean_confidence_reference: float | None = None
    mean_confidence_current: float | None = None


class DriftReport(BaseModel):
    """Every feature's verdict and the dataset-level one."""

    n_reference: int
    n_current: int
    features: list[FeatureDrift]
    drifted_features: list[str]
    share_drifted: float
    dataset_drift: bool
    reason: str
    output: OutputDrift | None = None
    multivariate: MultivariateDrift | None = None
    multivariate_note: str | None = Field(None, description="why the detector did not run")
    policy: DriftPolicy

    def feature(self, name: str) -> FeatureDrift:
        """The result for one feature; KeyError when it was not tested."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def feature_verdict(
    spec: NumericProfile | CategoricalProfile,
    raw: ColumnTest,
    p_adjusted: float,
    policy: DriftPolicy,
    n_current: int,
) -> FeatureDrift:
    """One feature judged: significant after correction and an effect past its bar."""
    significant = p_adjusted < policy.alpha
    effects = _effects(spec, raw, policy, n_current)
    passed = [f"{name} {value:.3g} >= {bar:.3g}" for name, value, bar in effects if value >= bar]
    if significant and passed:
        reason = f"p_adj {p_adjusted:.2g} < {policy.alpha:g} and {' or '.join(passed)}"
    elif significant:
        small = ", ".join(f"{name} {value:.3g} < {bar:.3g}" for name, value, bar in effects)
        reason = (
            f"p_adj {p_adjusted:.2g} < {policy.alpha:g} but the effect is small ({small}; "
            f"each bar is the larger of its floor and chance at {n_current:,} rows)"
        )
    else:
        reason = f"no significant difference (p_adj {p_adjusted:.2g} >= {policy.alpha:g})"
    if raw.unseen:
        shown = ", ".join(raw.unseen[:5]) + (", ..." if len(raw.unseen) > 5 else "")
        reason += f"; {len(raw.unseen)} unseen categories pooled as other ({shown})"
    return FeatureDrift(
        name=spec.name,
        kind=spec.kind,
        test=raw.test,
        statistic=raw.statistic,
        p_value=raw.p_value,
        p_adjusted=p_adjusted,
        wasserstein_norm=raw.wasserstein_norm,
        js=raw.js,
        psi=raw.psi,
        effect_thresholds={name: bar for name, _, bar in effects},
        missing_rate_reference=spec.missing_rate,
        missing_rate_current=raw.missing_rate_current,
        unseen_categories=raw.unseen,
        drifted=significant and bool(passed),
        reason=reason,
    )


def _effects(
    spec: NumericProfile | CategoricalProfile, raw: ColumnTest, policy: DriftPolicy, n_current: int
) -> list[tuple[str, float, float]]:
    """(name, value, bar) of each effect that can make a significant test count.

    The bar is the larger of the practical floor and the effect's ``null_quantile`` under no
    change at this window's size, so noise in small windows does not cross it and it never
    rises as the window grows.
    """
    q = policy.null_quantile
    shares = reference_shares(spec)
    factor = size_factor(n_current, spec.n)
    effects = [("psi", raw.psi, max(policy.psi_floor, psi_threshold(shares, factor, q)))]
    if raw.wasserstein_norm is not None and isinstance(spec, NumericProfile):
        n_present = n_current * (1.0 - raw.missing_rate_current)
        w_factor = size_factor(n_present, spec.n - spec.n_missing)
        bar = max(policy.wasserstein_floor, wasserstein_threshold(spec, w_factor, q))
        effects.insert(0, ("wasserstein_norm", raw.wasserstein_norm, bar))
    if raw.js is not None:
        bar = max(policy.js_floor, js_threshold(shares, factor, q))
        effects.insert(0, ("js", raw.js, bar))
    return effects
