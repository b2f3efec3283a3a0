"""Summarise a window in PostgreSQL and judge it: the aggregate path of ``run_monitor``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from pgmlops.config import MonitoringConfig
from pgmlops.domain.monitoring.binned_metrics import (
    ScoreBins,
    binary_metrics,
    cbpe_from_bins,
    regression_metrics,
    score_edges,
)
from pgmlops.domain.monitoring.defined_metrics import undefined_metrics
from pgmlops.domain.monitoring.distributions import categorical_shares, numeric_shares
from pgmlops.domain.monitoring.drift import compare_counts
from pgmlops.domain.monitoring.labelled_views import confusion_view
from pgmlops.domain.monitoring.performance import Calibration
from pgmlops.domain.monitoring.profile_records import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)
from pgmlops.domain.monitoring.window_counts import NumericCells, bin_counts, cell_points
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.errors import DataError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.labelled_performance import (
    class_counts,
    judge_labelled,
    valid_labels,
)
from pgmlops.services.monitoring.result import MonitoringResult, model_inputs, reasons
from pgmlops.services.monitoring.signals import (
    direct_loss_estimate,
    estimate_unavailable,
    finite,
    judge_confidence,
    judge_estimate,
    reference_outputs,
)
from pgmlops.store.monitoring.window_cells import NumericSpec
from pgmlops.store.monitoring.window_summary import WindowSummary, WindowSummaryStore

# Rows sampled for a regression model's direct loss estimate: its interval is drawn at this
# size, where a window's mean loss is already known to about 1%.
SAMPLE_ROWS = 20_000


def reads_aggregates(ctx: Context, mv: ModelVersion) -> bool:
    """Whether ``run_monitor`` summarises ``mv``'s windows in the database."""
    return ctx.db.is_postgres and mv.card.task in ("binary", "regression")


def cell_specs(
    mv: ModelVersion, profile: ReferenceProfile
) -> tuple[dict[str, NumericSpec], list[str], NumericSpec | None]:
    """What a window's cells count: numeric features on their points, categories, output."""
    numeric: dict[str, NumericSpec] = {}
    categorical: list[str] = []
    for name in mv.card.feature_schema.names:
        spec = profile.feature(name)
        if isinstance(spec, NumericProfile):
            numeric[name] = NumericSpec(cell_points(spec))
        else:
            categorical.append(name)
    output = None
    if profile.output is not None and isinstance(profile.output.distribution, NumericProfile):
        column = "probability" if mv.card.task == "binary" else "prediction"
        output = NumericSpec(cell_points(profile.output.distribution), False, column)
    return numeric, categorical, output


def window_score_edges(ctx: Context, mv: ModelVersion) -> np.ndarray | None:
    """A binary model's score bins (reference quantiles, calibration knots, threshold)."""
    card = mv.card
    if card.task != "binary":
        return None
    ref = reference_outputs(ctx, mv)
    cal = Calibration.model_validate(card.calibration) if card.calibration else None
    return score_edges(ref.proba if ref is not None else None, cal, card.threshold)


def summarise_window(
    ctx: Context,
    mv: ModelVersion,
    profile: ReferenceProfile,
    settings: MonitoringConfig,
    *,
    last: int | None = None,
    since: datetime | None = None,
) -> WindowSummary:
    """Everything ``assess_summary`` needs of the window, computed by PostgreSQL."""
    card, schema = mv.card, mv.card.feature_schema
    numeric, categorical, output = cell_specs(mv, profile)
    edges = window_score_edges(ctx, mv)
    policy = settings.drift
    sample = policy.multivariate_rows if policy.multivariate and profile.rows else 0
    if card.task == "regression" and estimate_unavailable(ctx, mv, settings) is None:
        sample = max(sample, SAMPLE_ROWS)
    return WindowSummaryStore(ctx.db).summarise(
        mv.model_name,
        mv.version,
        numeric,
        categorical,
        output=output,
        score_edges=edges,
        regression=card.task == "regression",
        sample_columns=[(f.name, f.kind) for f in schema.features],
        sample_rows=sample,
        last=last,
        since=since,
    )


def assess_summary(
    ctx: Context,
    mv: ModelVersion,
    summary: WindowSummary,
    settings: MonitoringConfig,
    *,
    profile: ReferenceProfile,
) -> MonitoringResult:
    """Every signal of a summarised window, as ``assess_window`` gives them for its rows."""
    card, schema = mv.card, mv.card.feature_schema
    if summary.infinite:
        raise DataError(
            f"column {summary.infinite[0]!r} has infinite values; drift statistics need finite ones"
        )
    low, high = summary.output_range
    if card.task == "binary" and (
        (low is not None and low < 0.0) or (high is not None and high > 1.0)
    ):
        raise DataError("binary scores must be probabilities between 0 and 1")
    sample = summary.sample
    features = model_inputs(sample.features, schema.numeric) if sample is not None else None
    output = summary.output if profile.output is not None else None
    drift = compare_counts(
        profile,
        summary.features,
        summary.rows,
        settings.drift,
        output=output,
        mean_confidence=summary.score_confidence if card.task == "binary" else None,
        sample=features,
        schema=schema,
    )
    estimated = _estimated(ctx, mv, summary, settings)
    n_conf, conf_sum = summary.confidence
    labelled, n_labelled = _labelled(ctx, mv, summary, settings)
    result = MonitoringResult(
        model_name=mv.model_name,
        version=mv.version,
        task=card.task,
        created_at=datetime.now(UTC),
        window={
            "rows": summary.rows,
            "first_at": summary.first_at,
            "last_at": summary.last_at,
            "last": None,
            "since": None,
            "labelled": n_labelled,
            "read": "aggregates",
            "sample_rows": len(sample) if sample is not None else 0,
        },
        drift=drift,
        dataset_drift=drift.dataset_drift,
        prediction_drift=drift.output.drifted if drift.output is not None else None,
        confidence=judge_confidence(
            ctx, mv, conf_sum / n_conf if n_conf else None, n_conf, settings, estimated
        ),
        estimated_performance=estimated,
        labelled_performance=labelled,
        distributions=_distributions(profile, summary.features, output),
        reasons=[],
    )
    result.reasons = reasons(result)
    return result


def _estimated(
    ctx: Context, mv: ModelVersion, summary: WindowSummary, settings: MonitoringConfig
) -> dict[str, Any]:
    card = mv.card
    unavailable = estimate_unavailable(ctx, mv, settings)
    if unavailable is not None:
        return unavailable
    if card.task == "regression":
        sample = summary.sample
        if sample is None or len(sample) == 0:
            raise DataError(f"{mv.model_name} v{mv.version}: no rows sampled for the estimate")
        metrics = direct_loss_estimate(ctx, mv, sample)
        block = judge_estimate(ctx, mv, metrics, len(sample), settings)
        block["note"] = f"estimated on a random sample of {len(sample):,} window rows"
        return block
    cal = Calibration.model_validate(card.calibration)
    bins = _score_bins(summary)
    metrics = finite(cbpe_from_bins(cal, bins, card.threshold))
    return judge_estimate(ctx, mv, metrics, int(bins.n.sum()), settings)


def _score_bins(summary: WindowSummary) -> ScoreBins:
    frame = summary.scores
    if frame is None or summary.score_edges is None:
        raise DataError("the window was summarised without score bins")
    scored = frame[frame["bin"].notna()]
    return ScoreBins.collect(
        summary.score_edges,
        scored["bin"].to_numpy(dtype=np.int64),
        scored["n_scored"].to_numpy(),
        scored["sum_p"].to_numpy(),
        scored["sum_p2"].to_numpy(),
    )


def _labelled(
    ctx: Context, mv: ModelVersion, summary: WindowSummary, settings: MonitoringConfig
) -> tuple[dict[str, Any], int]:
    """The labelled-performance block and how many window rows carry a label."""
    card = mv.card
    if card.task == "regression":
        sums = summary.regression or {}
        labelled, good = int(sums.get("n_labelled", 0)), int(sums.get("n_good", 0))
        if sums.get("bad_predictions"):
            raise DataError(
                f"{mv.model_name} v{mv.version}: logged outputs are unusable: "
                "predictions that are not numbers"
            )
        metrics = None
        if good:
            metrics = finite(
                regression_metrics(good, sums["sse"], sums["sae"], sums.get("variance"))
            )
        examples = list(sums.get("bad_examples", []))
        return judge_labelled(ctx, mv, good, metrics, labelled - good, examples, settings), labelled
    frame = summary.scores
    if frame is None:
        raise DataError("the window was summarised without label counts")
    rows = frame[frame["label"].notna()]
    labelled = int(rows["n"].sum())
    texts = rows["label"].astype(str)
    fixed, good, examples = valid_labels(texts, card.task, card.classes)
    n_bad = int(rows["n"].to_numpy()[~good].sum())
    kept = rows[good]
    n_good = int(kept["n"].sum())
    if n_good == 0:
        return judge_labelled(ctx, mv, 0, None, n_bad, examples, settings), labelled
    classes = list(card.classes or [])
    predicted = kept["prediction"].astype(str).to_numpy()
    unknown = sorted(set(predicted.tolist()) - set(classes))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"{mv.model_name} v{mv.version}: logged outputs are unusable: Scores: label(s) "
            f"{shown} are not among classes {classes}"
        )
    scored = bool((kept["n_scored"] == kept["n"]).all())
    sums = None
    if scored:
        sums = [kept[c].to_numpy() for c in ("sum_p", "sum_p2", "ln_p", "ln_q")]
    metrics = binary_metrics(
        fixed[good] == classes[1],
        predicted == classes[1],
        kept["bin"].fillna(0).to_numpy(dtype=np.int64),
        kept["n"].to_numpy(),
        sums,
    )
    undefined = undefined_metrics(card.task, fixed[good], predicted, classes)
    block = judge_labelled(
        ctx,
        mv,
        n_good,
        finite(metrics),
        n_bad,
        examples,
        settings,
        undefined=undefined,
        class_counts=class_counts(fixed[good], classes, kept["n"].to_numpy()),
    )
    block["view"] = confusion_view(fixed[good], predicted, classes, kept["n"].to_numpy())
    return block, labelled


def _distributions(
    profile: ReferenceProfile,
    counts: dict[str, NumericCells | dict[str, int]],
    output: NumericCells | dict[str, int] | None,
) -> dict[str, Any]:
    """``services.monitoring.distributions`` from the window's counts."""
    out: dict[str, Any] = {}
    for spec in profile.features:
        if spec.name in counts:
            out[spec.name] = _shares(spec, counts[spec.name])
    if output is not None and profile.output is not None:
        out["__output__"] = _shares(profile.output.distribution, output)
    return out


def _shares(
    spec: NumericProfile | CategoricalProfile, counted: NumericCells | dict[str, int]
) -> dict[str, Any]:
    if isinstance(spec, NumericProfile) and isinstance(counted, NumericCells):
        bins = bin_counts(counted, np.asarray(spec.psi_edges, dtype=np.float64))
        return numeric_shares(spec, [*(int(b) for b in bins), counted.n_missing])
    if isinstance(spec, CategoricalProfile) and isinstance(counted, dict):
        return categorical_shares(spec, counted)
    raise DataError(f"feature {spec.name!r} was counted as the wrong kind")
