"""Settings: `pgmlops.yaml`, overridden by `PGMLOPS_*` environment variables."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pgmlops.domain.kinds import Task
from pgmlops.domain.policies import DriftPolicy, LivePolicy, PromotionPolicy, ThresholdPolicy
from pgmlops.errors import ConfigError
from pgmlops.retraining_config import RetrainingConfig
from pgmlops.rollback_config import RollbackConfig
from pgmlops.serving_config import MODEL_NAME_PATTERN, ServingConfig

DEFAULT_CONFIG_FILE = "pgmlops.yaml"
# A registered model name: it becomes part of artifact paths and metric labels.


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingConfig(_Section):
    """How a model is trained; every field can also come from a CLI flag."""

    task: Task | None = Field(
        None, description="binary, multiclass or regression; unset: inferred from the target column"
    )
    estimator: str | None = Field(
        None,
        description="dotted path of a scikit-learn-compatible estimator class; unset: "
        "gradient-boosted trees for the task",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments passed to the estimator"
    )
    features: str | None = Field(
        None,
        description="custom feature step 'package.module:function' (DataFrame -> DataFrame), "
        "run at training and serving time alike",
    )
    drop: list[str] = Field(
        default_factory=list, description="columns left out of the features (besides the target)"
    )
    test_size: float = Field(
        0.2, gt=0.0, lt=0.9, description="share of rows held out for evaluation and promotion"
    )
    validation_size: float = Field(
        0.2,
        gt=0.0,
        lt=0.9,
        description="share of rows kept for tuning the decision threshold (after the holdout)",
    )
    seed: int = Field(
        0, description="seed of the row split, cross-validation folds and the estimator"
    )
    cv_folds: int = Field(
        0,
        ge=0,
        le=20,
        description="folds of a cross-validation reported beside the holdout metrics; 0 or 1: none",
    )
    # Out-of-fold outputs of the training rows join the held-out rows in monitoring's
    # reference (domain/training/crossfit.py): a 2.5x larger, nearly unbiased reference for about
    # one extra fit of the model; 0 or 1 keeps the held-out rows alone.
    reference_folds: int = Field(
        3,
        ge=0,
        le=10,
        description="folds whose out-of-fold outputs join monitoring's reference; 0 or 1: "
        "held-out rows only",
    )
    # Prediction drift's reference (docs/monitoring.md, repeated rows). `served`: every
    # labelled row's output as traffic gets it (the final model's on repeated training
    # vectors, out-of-fold on vectors seen once). Out-of-fold alone alarmed on 25 of 40
    # in-distribution 5,000-row randhie windows (fold models answer a repeated vector
    # differently from the final model); held-out alone is a few clusters with no power.
    output_reference: Literal["served", "held_out", "out_of_fold"] = Field(
        "served",
        description="outputs prediction drift compares with: every labelled row's as traffic "
        "would be served them (served; needs reference_folds >= 2, else held_out), the "
        "validation and holdout rows' alone (held_out), or the training rows' out-of-fold "
        "outputs with them (out_of_fold)",
    )
    imbalance: Literal["none", "class_weight", "smote"] = Field(
        "none", description="class imbalance handling, applied to the training rows only"
    )
    outliers: Literal["none", "clip", "remove"] = Field(
        "none",
        description="numeric values beyond iqr_factor x IQR of the quartiles: clipped or their "
        "rows removed (training rows only)",
    )
    iqr_factor: float = Field(
        1.5, gt=0.0, description="outlier fences: quartiles -/+ this many interquartile ranges"
    )
    positive_class: str | None = Field(
        None,
        description="binary: the class whose probability is scored; unset: the second of the "
        "two in sorted order",
    )
    threshold: ThresholdPolicy = Field(
        default_factory=ThresholdPolicy,
        description="how the binary decision threshold is tuned on the validation rows",
    )
    onnx: bool = Field(
        True,
        description="also export an ONNX copy, served when it matches the pipeline to 1e-4",
    )
    # Messy data (docs/own-data.md): how text, date and target columns are read.
    normalize_categories: bool = Field(
        True, description="merge category spellings that differ only in case or blanks"
    )
    max_categories: int = Field(
        50, ge=2, le=10_000, description="a text column keeps this many values; rarer: 'other'"
    )
    max_classes: int = Field(
        50, ge=2, description="a classification target with more classes is refused"
    )
    dates: Literal["features", "drop"] = Field(
        "features", description="date columns become calendar features, or are left out"
    )
    dayfirst: bool = Field(
        True, description="dates that fit both orders (01/03/2024) are read day/month"
    )
    # Where the fit runs: in this process, or on a Dask cluster that reads the data in
    # partitions (Parquet, or a database table split by an indexed column).
    engine: Literal["local", "dask"] = Field(
        "local", description="fit in this process, or on a Dask cluster reading partitions"
    )
    dask_address: str = Field(
        "", description="Dask scheduler (tcp://host:8786); empty: a LocalCluster for the run"
    )
    dask_workers: int = Field(
        2, ge=1, le=256, description="worker processes of the LocalCluster started for a run"
    )
    dask_index_column: str | None = Field(
        None,
        min_length=1,
        description="engine dask reading a database table: the indexed column it is split on",
    )

    @field_validator("features")
    @classmethod
    def _module_function(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or v.startswith(":") or v.endswith(":")):
            raise ValueError("must look like 'package.module:function'")
        return v


class MonitoringConfig(_Section):
    """Drift, confidence and performance checks and the triggers that start retraining."""

    drift: DriftPolicy = Field(
        default_factory=DriftPolicy,
        description="when features, dataset and output count as drifted",
    )
    window: int = Field(
        5_000, ge=1, description="rows `pgmlops monitor` reads without --last/--since"
    )
    confidence_drop: float = Field(
        0.10, ge=0.0, le=1.0, description="degraded when mean confidence falls by this fraction"
    )
    # With the significance test in front, the tolerance only has to keep large windows from
    # alarming on harmless drops: 3% lets a 0.05 AUC fall be caught at 1,000 labels.
    performance_drop: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="degraded when the primary metric is worse by this fraction of its reference",
    )
    # 0.03, measured (bench/alarm_rates.py, demo, 400 windows a cell, cross-fitted reference):
    # false alarms 3.3/2.0/2.8/3.5/0.0% at 100/200/500/1,000/5,000 labels, an AUC fall of
    # 0.05 caught at 1,000 labels 83.8% of the time (0.01: 1.8% at most, but 72.3%).
    alarm_alpha: float = Field(
        0.03,
        gt=0.0,
        lt=0.5,
        description="confidence and performance alarm only on a fall significant at this level",
    )
    min_labels: int = Field(
        100, ge=1, description="labelled rows needed before labelled performance can alarm"
    )
    new_rows_trigger: int | None = Field(
        None,
        ge=1,
        description="older name of retraining.triggers.new_labels, used when that is unset",
    )
    schedule_seconds: float | None = Field(
        None,
        gt=0.0,
        description="`pgmlops worker` stores a monitoring run of each model this often; "
        "unset: never",
    )


class Settings(BaseSettings):
    """Everything configurable; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="PGMLOPS_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str = Field(
        "sqlite:///.pgmlops/pgmlops.db",
        description="SQLAlchemy URL of the store: sqlite:///PATH or postgresql://...",
    )
    artifact_root: str = Field(
        ".pgmlops/artifacts",
        description="folder or fsspec URL (s3://...) where model files are written",
    )
    model_name: str = Field(
        "default",
        pattern=MODEL_NAME_PATTERN,
        description="the model a command or server acts on when none is named",
    )
    api_key: SecretStr | None = Field(
        None,
        description="key the admin routes require (promote, rollback, reload, retrain); "
        "unset: they are refused",
    )
    predict_api_key: SecretStr | None = Field(
        None, description="key /predict requires (X-API-Key or Bearer); unset: /predict is open"
    )
    # Signs every artifact written and verifies every artifact loaded; never stored in the
    # database. Unset: a key file beside a local artifact root is created on first use.
    signing_key: SecretStr | None = Field(
        None, description="HMAC key (>= 32 characters) that signs and verifies artifacts"
    )
    # Lets versions registered before signing existed load (with a warning) until
    # `pgmlops artifacts sign` has signed them; a bad or foreign signature is never trusted.
    trust_unsigned: bool = Field(
        False, description="let versions without a signature load, with a warning"
    )
    # Every version trained is logged and registered in MLflow, and every alias move is
    # mirrored as an MLflow alias (services/mlflow_sync.py); unset: no MLflow at all.
    mlflow_tracking_uri: str | None = Field(
        None,
        description="log and register every version in MLflow and mirror every alias move "
        "as an MLflow alias; unset: off",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the server's and worker's log lines"
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="how models are trained"
    )
    promotion: PromotionPolicy = Field(
        default_factory=PromotionPolicy, description="gates a candidate must pass"
    )
    serving: ServingConfig = Field(
        default_factory=ServingConfig, description="the HTTP service and its prediction log"
    )
    monitoring: MonitoringConfig = Field(
        default_factory=MonitoringConfig, description="drift, confidence and performance checks"
    )
    retraining: RetrainingConfig = Field(
        default_factory=RetrainingConfig, description="triggers, schedule and retention"
    )
    live: LivePolicy = Field(
        default_factory=LivePolicy, description="live comparison and opt-in live promotion"
    )
    rollback: RollbackConfig = Field(
        default_factory=RollbackConfig,
        description="automatic rollback: the watch after every promotion and its limits",
    )

    @field_validator("signing_key")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().encode()) < 32:
            raise ValueError(
                "must be at least 32 characters (e.g. `python -c "
                "'import secrets; print(secrets.token_hex(32))'`)"
            )
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file: the file is passed in as init values, below env.
        return (env_settings, init_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start} is invalid): "
            "is it the right file?"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config file {path} is not valid YAML{at}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"config file {path}: setting names must be text, got {odd[0]!r}")
    return data


def check_model_name(name: str, where: str = "model_name") -> str:
    """The name, if it fits the pattern every registered model name must match."""
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ConfigError(
            f"{where} {name!r} is not a model name: letters, digits, '_', '.' and '-', "
            "starting with a letter or digit, at most 128 characters",
            # A parameter's name is shown as its flag on the command line.
            params=(where,) if where.isidentifier() else (),
        )
    return name


def describe_validation_error(exc: PydanticValidationError, source: str) -> str:
    """Turn pydantic's report into one line naming the key."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = len(exc.errors()) - 1
    suffix = f" (+{more} more)" if more else ""
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown setting {key!r}{suffix}"
    return f"{source}: {key}: {first['msg']}{suffix}"


def load_settings(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """Build settings from a YAML file (explicit, $PGMLOPS_CONFIG, or ./pgmlops.yaml) and env."""
    explicit = config_file or os.environ.get("PGMLOPS_CONFIG")
    path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    if explicit and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    values = _read_yaml(path) if path.is_file() else {}
    source = f"settings (file {path} + PGMLOPS_* environment)" if path.is_file() else "settings"
    try:
        return Settings(**values)
    except PydanticValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from exc


@lru_cache(maxsize=8)
def get_settings(config_file: str | None = None) -> Settings:
    """The process-wide settings, read once per config file."""
    return load_settings(config_file)
