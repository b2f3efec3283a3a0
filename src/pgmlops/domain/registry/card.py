"""Model card: everything serving, promotion and monitoring need to know about a version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pgmlops.domain.importance import FeatureImportance
from pgmlops.domain.schema import FeatureSchema, Task


class DataFingerprint(BaseModel):
    """Which data a version was trained on, precisely enough to notice a change."""

    sha256: str
    rows: int
    columns: list[str]
    source: str
    # Rows left out of training because their target cell was empty.
    rows_without_target: int = 0


class OnnxInfo(BaseModel):
    """Whether a validated ONNX copy exists, and how close it is to the pipeline."""

    present: bool
    max_abs_diff: float | None = None
    reason: str | None = None
    checked_rows: int | None = None  # holdout rows the copy was compared on


ONNX_DISABLED = "disabled in config"


def onnx_rejection(onnx: OnnxInfo) -> str | None:
    """Why a wanted ONNX copy was refused (conversion failed, outputs differ), else None."""
    if onnx.present or onnx.reason in (None, ONNX_DISABLED):
        return None
    return onnx.reason


def engine_label(onnx: OnnxInfo, engine: str | None = None) -> str:
    """What serves a version, as users read it: 'onnx', or 'pipeline (onnx rejected: why)'."""
    if engine is None:
        engine = "onnx" if onnx.present else "pipeline"
    if engine == "onnx":
        return engine
    rejected = onnx_rejection(onnx)
    if rejected is not None:
        return f"{engine} (onnx rejected: {rejected})"
    if onnx.reason == ONNX_DISABLED:
        return f"{engine} (onnx disabled)"
    return engine


class SplitInfo(BaseModel):
    """How rows were divided; the holdout is stored beside the model for promotion."""

    method: str
    test_size: float
    validation_size: float
    train_rows: int
    validation_rows: int
    holdout_rows: int


class ModelCard(BaseModel):
    """The self-description stored with every version."""

    model_name: str
    task: Task
    target: str
    feature_schema: FeatureSchema
    classes: list[str] | None = None
    positive_class: str | None = None
    threshold: float | None = None
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    feature_importance: FeatureImportance | None = Field(
        None, description="permutation importance on the holdout (None before it existed)"
    )
    cv_metrics: dict[str, float | None] | None = None
    baseline_metrics: dict[str, float | None] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    reference_confidence: float | None = None
    data: DataFingerprint
    split: SplitInfo
    onnx: OnnxInfo
    libraries: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime
    training_seconds: float | None = None
