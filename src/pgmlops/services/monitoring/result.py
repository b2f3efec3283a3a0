"""The result of one monitoring run, and what both window paths share to build and explain it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, computed_field
from pydantic import ValidationError as PydanticValidationError

from pgmlops.domain.kinds import Task
from pgmlops.domain.monitoring.drift import DriftReport
from pgmlops.domain.monitoring.profile_records import ReferenceProfile
from pgmlops.domain.monitoring.status import Status, overall_status
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.domain.schema import as_float32_grid
from pgmlops.errors import ArtifactError, DataError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.signals import finite


class MonitoringResult(BaseModel):
    """One monitoring run: every signal's numbers and verdict, and why anything is degraded."""

    model_name: str
    version: int
    task: Task
    run_id: int | None = None
    created_at: datetime
    window: dict[str, Any] = Field(
        description="rows, first_at, last_at, last, since, labelled; read and sample_rows when "
        "counted in PostgreSQL"
    )
    drift: DriftReport
    dataset_drift: bool
    prediction_drift: bool | None = Field(None, description="None when outputs are not profiled")
    confidence: dict[str, Any] = Field(
        description="reference, current, reference_interval, p_value, drop, limit, significant, "
        "estimate_agrees, degraded"
    )
    estimated_performance: dict[str, Any] = Field(
        description="metric, metrics, method (CBPE or DLE), reference, reference_interval, "
        "p_value, drop, limit, significant, degraded"
    )
    labelled_performance: dict[str, Any] = Field(
        description="n_labels, metric, metrics, reference, reference_interval, p_value, drop, "
        "limit, significant, degraded, bad_labels"
    )
    distributions: dict[str, Any] = Field(
        default_factory=dict, description="reference vs current shares per bin, for plots"
    )
    reasons: list[str] = Field(default_factory=list, description="one line per degraded signal")

    @property
    def degraded(self) -> bool:
        return bool(self.reasons)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Status:
        """ok, warning or degraded with reasons: what the banner, page, JSON and exit code say."""
        return overall_status(
            self.reasons,
            self.drift,
            self.confidence,
            self.estimated_performance,
            self.labelled_performance,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: NaN and infinities become null."""
        return finite(self.model_dump(mode="json"))


def load_profile(ctx: Context, mv: ModelVersion) -> ReferenceProfile:
    """A version's reference profile, read through its signature and sha256 checks."""
    what = f"{mv.model_name} v{mv.version}"
    if "reference" not in mv.files:
        raise DataError(f"model {what} has no reference profile; retrain it")
    data = ctx.artifacts.read(mv, "reference")
    try:
        return ReferenceProfile.model_validate_json(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]["msg"]
        raise ArtifactError(f"reference profile of {what} is unreadable: {first}") from exc


def model_inputs(features: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    # The reference was profiled on float32-rounded numbers, as the model sees them.
    out = features.copy()
    for name in numeric:
        out[name] = as_float32_grid(out[name])
    return out


def reasons(result: MonitoringResult) -> list[str]:
    """One human line per degraded signal."""
    lines = []
    drift = result.drift
    if result.dataset_drift:
        shown = ", ".join(drift.drifted_features[:8])
        lines.append(f"data drift: {drift.reason} ({shown})")
    if result.prediction_drift and drift.output is not None:
        what = {"probability": "score", "class": "predicted class", "prediction": "prediction"}
        lines.append(
            f"prediction drift: {what[drift.output.output]} distribution, {drift.output.reason}"
        )
    conf = result.confidence
    if conf["degraded"]:
        lines.append(
            f"confidence decay: mean confidence {conf['current']:.3f} vs {conf['reference']:.3f} "
            f"at training{_interval(conf)}, a {conf['drop']:.1%} drop (limit {conf['limit']:.0%})"
        )
    for key, what in (("estimated_performance", "estimated"), ("labelled_performance", "labelled")):
        perf = getattr(result, key)
        if perf["degraded"]:
            metric = perf["metric"]
            count = f" on {perf['n_labels']:,} labels" if key == "labelled_performance" else ""
            lines.append(
                f"{what} performance: {metric} {perf['metrics'][metric]:.3f}{count} vs "
                f"{perf['reference'][metric]:.3f} reference{_interval(perf)}, "
                f"{perf['drop']:.1%} worse (limit {perf['limit']:.0%})"
            )
    for row in result.labelled_performance.get("judged") or []:
        if row.get("verdict") == "degraded" and row.get("role") == "guard":
            lines.append(f"labelled guard metric: {row['note']}")
    return lines


def _interval(block: dict[str, Any]) -> str:
    """ " (p 0.002; expected 0.83-0.89 at this size)", or "" without an interval."""
    interval, p_value = block.get("reference_interval"), block.get("p_value")
    if not interval or p_value is None:
        return ""
    return f" (p {p_value:.2g}; expected {interval[0]:.3f}-{interval[1]:.3f} at this size)"
