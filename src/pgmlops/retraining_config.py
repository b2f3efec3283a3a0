"""The `retraining:` settings section: triggers, schedule, lock, live SQL source, retention."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerSwitches(_Section):
    """Which signals may start a retraining run under `--if-needed` (any that fires is enough)."""

    drift: bool = Field(True, description="dataset drift may start a retrain")
    # any: dataset drift alone starts a retrain; harmful: only when estimated performance or
    # confidence is also degraded. `any` is the default because the harm signals missed every
    # real drop in bench/drift_policy.py (noisy or narrowed inputs), while a needless retrain
    # is still refused by the promotion gates (docs/retraining.md has the numbers).
    drift_policy: Literal["any", "harmful"] = Field(
        "any",
        description="any: drift alone starts a retrain; harmful: only with degraded estimated "
        "performance or confidence",
    )
    confidence: bool = Field(True, description="a significant fall in mean confidence may")
    estimated_performance: bool = Field(
        True, description="a fall in performance estimated without labels may"
    )
    labelled_performance: bool = Field(
        True, description="a significant fall in performance measured on labels may"
    )
    # New labelled rows (feedback + live source) since the last training; None = off.
    new_labels: int | None = Field(
        None,
        ge=1,
        description="this many new labelled rows since the last training may; unset: off",
    )

    @property
    def monitoring(self) -> bool:
        return (
            self.drift
            or self.confidence
            or self.estimated_performance
            or (self.labelled_performance)
        )


class LiveSourceConfig(_Section):
    """A SQL table that keeps receiving labelled rows, read incrementally past a watermark."""

    url: str = Field(description="SQLAlchemy URL of the database holding the live table")
    query: str | None = Field(None, description="a SELECT whose rows are read (give this or table)")
    table: str | None = Field(
        None, pattern=_IDENTIFIER, description="a table read whole (give this or query)"
    )
    id_column: str | None = Field(
        None,
        pattern=_IDENTIFIER,
        description="increasing column the watermark follows (give this or timestamp_column)",
    )
    timestamp_column: str | None = Field(
        None,
        pattern=_IDENTIFIER,
        description="time column the watermark follows (give this or id_column)",
    )
    # Name of the label column in the live table; defaults to the model's target.
    label_column: str | None = Field(
        None, pattern=_IDENTIFIER, description="the live table's label column; unset: the target"
    )

    @model_validator(mode="after")
    def _one_of_each(self) -> Self:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of 'query' or 'table'")
        if (self.id_column is None) == (self.timestamp_column is None):
            raise ValueError("give exactly one of 'id_column' or 'timestamp_column'")
        return self

    @property
    def order_column(self) -> str:
        return self.id_column or self.timestamp_column  # type: ignore[return-value]


class RetentionConfig(_Section):
    """What `pgmlops gc` keeps, and how often `pgmlops worker` runs it."""

    keep: int = Field(
        5, ge=0, le=10_000, description="newest versions without an alias kept besides aliased ones"
    )
    # Versions that served predictions within this many days are never deleted.
    recent_days: float = Field(
        7.0, ge=0.0, description="versions that served predictions within this many days are kept"
    )
    # Logged predictions older than this many days are dropped (whole partitions on
    # PostgreSQL), with labels given before the oldest prediction kept; None keeps them all.
    predictions_days: float | None = Field(
        None,
        gt=0.0,
        le=36_500.0,
        description="logged predictions older than this many days are dropped; unset: kept",
    )
    # `pgmlops worker` runs gc this often (None: never), so backups stay at `keep`.
    schedule_seconds: float | None = Field(
        86_400.0, gt=0.0, description="`pgmlops worker` runs gc this often; unset: never"
    )


class RetrainingConfig(_Section):
    """Triggers, schedule and safety rails for retraining; see docs/retraining.md."""

    triggers: TriggerSwitches = Field(
        default_factory=TriggerSwitches,
        description="signals that may start a run under --if-needed",
    )
    # A schedule trigger: seconds between runs (e.g. 86400) or a cron string ("0 3 * * *", UTC).
    schedule: float | str | None = Field(
        None,
        description="retrain every N seconds or on a 5-field cron (UTC); unset: no schedule",
    )
    # How often `pgmlops worker` evaluates the triggers of each model.
    check_seconds: float = Field(
        3600.0, gt=0.0, description="how often `pgmlops worker` evaluates each model's triggers"
    )
    # How often the worker looks for queued jobs.
    poll_seconds: float = Field(
        5.0, gt=0.0, description="how often `pgmlops worker` looks for queued jobs"
    )
    # Models the worker checks; None = every registered model with a production version.
    models: list[str] | None = Field(
        None,
        description="models the worker checks; unset: every model with a production version",
    )
    lock_lease_seconds: float = Field(
        600.0,
        ge=1.0,
        description="SQLite: a retraining lock not renewed within this is taken over",
    )
    allow_feedback_only: bool = Field(
        False,
        description="retrain from feedback and live rows when the training source is unreadable",
    )
    live_source: LiveSourceConfig | None = Field(
        None, description="a SQL table of labelled rows read past a watermark; unset: none"
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="what `pgmlops gc` keeps"
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: float | str | None) -> float | str | None:
        if v is None:
            return None
        if isinstance(v, str):
            text = v.strip()
            try:
                v = float(text)
            except ValueError:
                return _check_cron(text)
        if not v > 0:
            raise ValueError("an interval schedule must be a positive number of seconds")
        return float(v)


def _check_cron(text: str) -> str:
    from croniter import croniter

    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"{text!r} is neither seconds nor a 5-field cron expression like '0 3 * * *'"
        )
    return text
