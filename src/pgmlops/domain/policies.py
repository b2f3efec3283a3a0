"""The policy sections of pgmlops.yaml and the metric names they may use.

Kept free of scikit-learn and SciPy so that reading settings stays fast: the statistics that
apply these policies live in metrics.py, gates.py, threshold.py and drift.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgmlops.domain.kinds import Task
from pgmlops.errors import ConfigError

PRIMARY_METRIC: dict[Task, str] = {
    "binary": "roc_auc",
    "multiclass": "f1_macro",
    "regression": "rmse",
}
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "log_loss", "brier"})

_METRICS: dict[Task, tuple[str, ...]] = {
    "binary": (
        "roc_auc",
        "pr_auc",
        "recall",
        "precision",
        "f1",
        "accuracy",
        "log_loss",
        "brier",
    ),
    "multiclass": ("accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def metric_names(task: Task) -> list[str]:
    """Every metric pgmlops reports for a task, in display order."""
    if task not in _METRICS:
        raise ConfigError(f"task must be one of {list(_METRICS)}, got {task!r}")
    return list(_METRICS[task])


def check_metric(name: str, task: Task, field: str = "metric") -> None:
    """Raise ConfigError unless `name` is a metric of `task`; `field` names the setting."""
    valid = metric_names(task)
    if name not in valid:
        raise ConfigError(
            f"{field}: unknown metric {name!r} for a {task} model; expected one of "
            + ", ".join(valid)
        )


class ThresholdPolicy(BaseModel):
    """How to pick the cut-off on P(positive); a row is predicted positive when p >= threshold."""

    model_config = ConfigDict(extra="forbid")

    objective: Literal["f1", "youden", "precision_at_recall", "fixed"] = Field(
        "f1",
        description="what the threshold maximises on the validation rows; fixed: use value",
    )
    min_recall: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="precision_at_recall: the recall the chosen threshold must keep",
    )
    value: float = Field(
        default=0.5, ge=0.0, le=1.0, description="fixed: the threshold on P(positive)"
    )


class DriftPolicy(BaseModel):
    """When a feature, the dataset and the model output count as drifted.

    A feature drifts when its corrected p-value is below ``alpha`` and one of its effects is
    beyond both the chance level at the window's size (``null_quantile`` of the effect under
    no change) and its practical floor. The floors are small so that a fixed shift is never
    flagged less often as windows grow; the harm of a drift is judged by the retraining
    trigger policy, not here. The multivariate detector (a domain classifier on the stored
    reference rows) counts as dataset drift on its own.
    """

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="significance after correction")
    correction: Literal["bh", "bonferroni"] = Field(
        "bh", description="multiple-test correction of per-feature p-values"
    )
    null_quantile: float = Field(
        0.999, ge=0.5, lt=1.0, description="an effect must exceed this quantile of its null"
    )
    psi_floor: float = Field(0.02, ge=0.0, description="PSI that counts as a real change")
    wasserstein_floor: float = Field(0.05, ge=0.0, description="Wasserstein-1 / reference std")
    js_floor: float = Field(0.05, ge=0.0, le=1.0, description="Jensen-Shannon distance, base 2")
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="share of drifted features")
    critical_features: list[str] = Field(default_factory=list, description="any drift alarms")
    min_rows: int = Field(200, ge=1, description="fewest rows a window may have")
    multivariate: bool = Field(True, description="run the domain-classifier detector")
    multivariate_alpha: float = Field(
        0.001, gt=0.0, lt=0.5, description="false-alarm rate of the domain classifier"
    )
    multivariate_rows: int = Field(
        5_000, ge=100, le=50_000, description="window rows the domain classifier samples"
    )


class PromotionPolicy(BaseModel):
    """The `promotion` section of pgmlops.yaml: which gates a candidate must pass."""

    model_config = ConfigDict(extra="forbid")

    primary_metric: str | None = Field(
        None,
        description="metric promotion turns on; unset: roc_auc, f1_macro or rmse by task",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="the candidate must beat the champion's primary metric by more than this",
    )
    guard_metrics: dict[str, float] | None = Field(
        None,
        description="metric -> largest allowed drop; unset: binary models may lose 0.02 recall",
    )
    floors: dict[str, float] = Field(
        default_factory=dict, description="metric -> worst value a candidate may have"
    )
    # Smallest gain over the dummy baseline that counts (see gates.min_effect for its units).
    baseline_margin: float = Field(
        default=0.01,
        ge=0.0,
        allow_inf_nan=False,
        description="first version: smallest gain over the dummy model that counts",
    )
    # On by default: without it a model trained on noise can beat the dummy by luck alone.
    bootstrap: bool = Field(
        True, description="the paired bootstrap interval of the gain must exclude 0"
    )
    bootstrap_rounds: int = Field(
        default=1000, ge=100, le=100_000, description="resamples of that interval"
    )
    # 0.99: a model with no skill beats the dummy's interval about 1% of the time (3% at 0.95,
    # bench/promotion_rates.py and 400 null candidates); a real model clears it by far.
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0, description="level of that interval")
    # A challenger's gain: its false pass replaces production by an equally good model (a
    # tie is refused anyway), so 0.95 buys power on small holdouts (docs/promotion.md).
    challenger_confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        description="one-sided level of the champion/challenger bootstrap gate",
    )
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap resamples")

    @field_validator("guard_metrics")
    @classmethod
    def _tolerances_are_drops(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, tolerance in (value or {}).items():
            if not math.isfinite(tolerance) or tolerance < 0:
                raise ValueError(
                    f"tolerance for {name!r} must be a finite number >= 0 (the largest "
                    f"allowed drop), got {tolerance}"
                )
        return value

    @field_validator("floors")
    @classmethod
    def _floors_are_finite(cls, value: dict[str, float]) -> dict[str, float]:
        for name, floor in value.items():
            if not math.isfinite(floor):
                raise ValueError(f"floor for {name!r} must be a finite number, got {floor}")
        return value

    @classmethod
    def from_config(
        cls, raw: Mapping[str, Any] | None, section: str = "promotion"
    ) -> PromotionPolicy:
        """Build from a config mapping, turning validation errors into a one-line ConfigError."""
        try:
            return cls.model_validate(dict(raw or {}))
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in (section, *first["loc"]))
            message = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{where}: {message} (got {first.get('input')!r})") from None

    def primary_for(self, task: Task) -> str:
        """The metric promotion turns on for this task."""
        return self.primary_metric or PRIMARY_METRIC[task]

    def guards_for(self, task: Task) -> dict[str, float]:
        """Metric -> largest allowed drop; by default binary models may not lose recall."""
        if self.guard_metrics is not None:
            return dict(self.guard_metrics)
        return {"recall": 0.02} if task == "binary" else {}

    def check(self, task: Task) -> None:
        """Raise ConfigError when a metric named in the policy does not exist for the task."""
        check_metric(self.primary_for(task), task, "promotion.primary_metric")
        for name in self.guards_for(task):
            check_metric(name, task, f"promotion.guard_metrics.{name}")
        for name in self.floors:
            check_metric(name, task, f"promotion.floors.{name}")


class LivePolicy(BaseModel):
    """The `live` section of pgmlops.yaml: the live comparison and opt-in live promotion."""

    promotion: bool = Field(
        False,
        description="let `pgmlops worker` promote the challenger on live evidence (opt-in)",
    )
    # 200 labels: below that an AUC difference's interval is ~0.1 wide on churn-like data,
    # too loose to act on; the worker waits rather than promote on luck.
    min_labels: int = Field(
        200, ge=10, description="labelled records each version needs before an interval is drawn"
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="two-sided confidence of the live gain's interval"
    )
    bootstrap_rounds: int = Field(
        1000, ge=100, le=100_000, description="bootstrap resamples of the live gain"
    )
    seed: int = Field(0, ge=0, description="seed of the bootstrap (same data, same interval)")
    check_seconds: float = Field(
        300.0, gt=0.0, description="how often the worker looks at the live evidence"
    )
