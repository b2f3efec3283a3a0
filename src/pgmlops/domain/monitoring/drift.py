"""Drift detection: a current window against a reference profile, never the raw reference.

Per feature a two-sample test gives a p-value (KS for numbers, chi-square for categories),
p-values are corrected for testing many features at once (Benjamini-Hochberg or Bonferroni),
and a feature only counts as drifted when its corrected p-value is below ``alpha`` AND an
effect size passes its bar: the larger of a small practical floor and the effect's chance
level at the window's size (drift_null.py). With a million rows every harmless wobble is
"significant", and the floors keep those quiet; in small windows noise alone makes PSI and
W1 large, and the chance level keeps those quiet, without ever flagging a fixed shift less
often in a larger window. Missing values take part in the tests as a value of their own,
so a column that suddenly goes blank is drift too.

Dataset drift is a share of drifted features, a drifted critical feature, or the verdict
of the multivariate detector (multivariate.py: a domain classifier on reference rows kept
in the profile), which sees many small shifts at once and changes in how features co-vary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.design_effect import output_reference_note
from pgmlops.domain.monitoring.drift_tests import (
    ColumnTest,
    WindowColumn,
    benjamini_hochberg,
    bonferroni,
    categorical_test,
    column_test,
    counts_test,
    numeric_test,
)
from pgmlops.domain.monitoring.drift_verdict import (
    DriftReport,
    FeatureDrift,
    OutputDrift,
    feature_verdict,
)
from pgmlops.domain.monitoring.multivariate import MultivariateDrift, multivariate_drift
from pgmlops.domain.monitoring.profile import (
    build_profile,
    map_columns,
    output_values,
    profile_frame,
    select_columns,
)
from pgmlops.domain.monitoring.profile_records import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)
from pgmlops.domain.monitoring.window_counts import NumericCells
from pgmlops.domain.policies import DriftPolicy as DriftPolicy
from pgmlops.domain.schema import FeatureSchema, Kind
from pgmlops.errors import DataError

__all__ = [
    "DriftPolicy",
    "DriftReport",
    "FeatureDrift",
    "MultivariateDrift",
    "OutputDrift",
    "ReferenceProfile",
    "benjamini_hochberg",
    "bonferroni",
    "build_profile",
    "compare",
    "detect_drift",
]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    policy: DriftPolicy | None = None,
) -> DriftReport:
    """Compare two frames directly: profile ``reference`` once, then test ``current`` on it."""
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise DataError(f"columns listed as both numeric and categorical: {', '.join(overlap)}")
    if not numeric and not categorical:
        raise DataError("detect_drift needs at least one numeric or categorical column")
    columns: list[tuple[str, Kind]] = [(n, "numeric") for n in numeric]
    columns += [(c, "categorical") for c in categorical]
    profile = profile_frame(reference, columns)
    return compare(profile, current, policy)


def compare(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    policy: DriftPolicy | None = None,
    *,
    scores: np.ndarray | None = None,
    schema: FeatureSchema | None = None,
) -> DriftReport:
    """Test a current window against a reference profile.

    Numeric features: two-sample KS between the window's ECDF and the reference's, read at
    the profile's quantile grid (so exact to about 1/1000), p-value from the asymptotic
    Kolmogorov distribution with n = n_ref * n_cur / (n_ref + n_cur), n_ref the reference's
    effective rows when its rows repeat (``design_effect``; chi-square alike); effects are
    Wasserstein-1 over the reference std and PSI. Categorical features: chi-square on the
    2 x k table of counts, categories the reference never saw pooled into one bucket (and
    listed); effects are Jensen-Shannon distance (base 2) and PSI. A feature drifts when its
    corrected p-value is below ``policy.alpha`` and one of its effects reaches its floor.

    ``scores`` are the model's outputs on the window (conventions of ``build_profile``) and
    add output drift, tested alone. With ``schema``, every schema feature must be in the
    profile and only those are tested. Raises DataError for a window or reference with fewer
    than ``policy.min_rows`` rows and for features the window lacks.
    """
    policy = policy or DriftPolicy()
    specs = _features_to_test(profile, schema)
    _check_sizes(profile, len(current), policy)
    _check_critical(specs, policy)
    cols = select_columns(current, [s.name for s in specs], "the current window")
    raws = map_columns(
        lambda i: column_test(specs[i], cols[i], profile.inflation), range(len(specs)), len(current)
    )
    output = _output_drift(profile, scores, policy) if scores is not None else None
    multivariate, note = multivariate_drift(profile, current, specs, policy)
    return _report(profile, specs, raws, len(current), policy, output, multivariate, note)


def compare_counts(
    profile: ReferenceProfile,
    counts: Mapping[str, WindowColumn],
    n_current: int,
    policy: DriftPolicy | None = None,
    *,
    output: WindowColumn | None = None,
    mean_confidence: float | None = None,
    sample: pd.DataFrame | None = None,
    schema: FeatureSchema | None = None,
) -> DriftReport:
    """``compare`` on a window already counted: cells per numeric feature, category counts.

    Numeric cells must be on ``cell_points`` of the feature's profile (the output's too);
    the tests and verdicts are those of ``compare``. ``sample`` is a bounded random sample
    of the window's rows for the multivariate detector (None: it does not run).
    """
    policy = policy or DriftPolicy()
    specs = _features_to_test(profile, schema)
    _check_sizes(profile, n_current, policy)
    _check_critical(specs, policy)
    absent = [s.name for s in specs if s.name not in counts]
    if absent:
        raise DataError(f"the current window has no column for feature(s): {', '.join(absent)}")
    raws = [counts_test(spec, counts[spec.name], profile.inflation) for spec in specs]
    drift_out = None
    if output is not None:
        drift_out = _output_counts_drift(profile, output, mean_confidence, n_current, policy)
    if sample is None:
        multivariate, note = None, "multivariate detector not run: no sample of the window"
    else:
        multivariate, note = multivariate_drift(profile, sample, specs, policy)
    return _report(profile, specs, raws, n_current, policy, drift_out, multivariate, note)


def _check_critical(
    specs: Sequence[NumericProfile | CategoricalProfile], policy: DriftPolicy
) -> None:
    unknown = sorted(set(policy.critical_features) - {s.name for s in specs})
    if unknown:
        raise DataError(f"critical_features names feature(s) not monitored: {', '.join(unknown)}")


def _report(
    profile: ReferenceProfile,
    specs: Sequence[NumericProfile | CategoricalProfile],
    raws: Sequence[ColumnTest],
    n_current: int,
    policy: DriftPolicy,
    output: OutputDrift | None,
    multivariate: MultivariateDrift | None,
    note: str | None,
) -> DriftReport:
    """Correct the features' p-values, judge each and the dataset as a whole."""
    p = np.array([r.p_value for r in raws])
    adjusted = benjamini_hochberg(p) if policy.correction == "bh" else bonferroni(p)
    results = [
        feature_verdict(spec, raw, float(p_adj), policy, n_current)
        for spec, raw, p_adj in zip(specs, raws, adjusted, strict=True)
    ]
    drifted = [r.name for r in results if r.drifted]
    share = len(drifted) / len(results) if results else 0.0
    critical = [name for name in policy.critical_features if name in drifted]
    dataset_drift = share >= policy.drift_share or bool(critical)
    reason = (
        f"{len(drifted)} of {len(results)} features drifted ({share:.0%}); "
        f"dataset drift needs {policy.drift_share:.0%}"
    )
    if critical:
        reason += f" or a critical feature, and {', '.join(critical)} drifted"
    if multivariate is not None and multivariate.drifted:
        dataset_drift = True
        reason += f"; {multivariate.reason}"
    return DriftReport(
        n_reference=profile.n_rows,
        n_current=n_current,
        features=results,
        drifted_features=drifted,
        share_drifted=share,
        dataset_drift=dataset_drift,
        reason=reason,
        output=output,
        multivariate=multivariate,
        multivariate_note=note,
        policy=policy,
    )


def _features_to_test(
    profile: ReferenceProfile, schema: FeatureSchema | None
) -> list[NumericProfile | CategoricalProfile]:
    if schema is None:
        return list(profile.features)
    absent = [name for name in schema.names if name not in profile.names]
    if absent:
        raise DataError(
            f"the reference profile has no feature {', '.join(map(repr, absent))} from the schema"
        )
    return [profile.feature(name) for name in schema.names]


def _check_sizes(profile: ReferenceProfile, n_current: int, policy: DriftPolicy) -> None:
    if n_current < policy.min_rows:
        raise DataError(
            f"the current window has {n_current} rows; drift tests need at least "
            f"{policy.min_rows} (min_rows)"
        )
    if profile.n_rows < policy.min_rows:
        raise DataError(
            f"the reference profile has {profile.n_rows} rows; drift tests need at least "
            f"{policy.min_rows} (min_rows)"
        )


def _output_drift(
    profile: ReferenceProfile, scores: np.ndarray, policy: DriftPolicy
) -> OutputDrift:
    """Test the model's outputs on the window against the reference outputs (one test)."""
    output = profile.output
    if output is None:
        raise DataError("scores were given but the reference profile has no output profile")
    if len(scores) < policy.min_rows:
        raise DataError(
            f"scores cover {len(scores)} rows; drift tests need at least {policy.min_rows}"
        )
    values, confidence = output_values(scores, output.kind, output.classes)
    current_conf = float(np.nanmean(confidence)) if confidence is not None else None
    return _output_counts_drift(profile, values, current_conf, len(scores), policy)


def _output_counts_drift(
    profile: ReferenceProfile,
    values: np.ndarray | WindowColumn,
    mean_confidence: float | None,
    n_current: int,
    policy: DriftPolicy,
) -> OutputDrift:
    """The output test on values, cells or class counts (one test, no correction)."""
    output = profile.output
    if output is None:
        raise DataError("scores were given but the reference profile has no output profile")
    spec = output.distribution
    if isinstance(spec, NumericProfile) and isinstance(values, np.ndarray | NumericCells):
        raw = numeric_test(spec, values, output.inflation)
    elif isinstance(spec, CategoricalProfile) and isinstance(values, dict):
        raw = categorical_test(spec, values, output.inflation)
    else:
        raise DataError(f"scores do not match the reference output profile ({output.kind})")
    verdict = feature_verdict(spec, raw, raw.p_value, policy, n_current)
    note = output_reference_note(output.design)
    return OutputDrift(
        **verdict.model_dump(exclude={"reason"}),
        reason=f"{verdict.reason}; {note}" if note else verdict.reason,
        output=output.kind,
        mean_confidence_reference=output.mean_confidence,
        mean_confidence_current=mean_confidence,
    )
