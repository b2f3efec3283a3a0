"""Settings: `pgmlops.yaml`, overridden by `PGMLOPS_*` environment variables."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pgmlops.domain.decision import DEFAULT_RISK_LEVELS, check_risk_levels
from pgmlops.domain.kinds import Task
from pgmlops.domain.live_comparison import LivePolicy
from pgmlops.domain.policies import DriftPolicy, PromotionPolicy, ThresholdPolicy
from pgmlops.errors import ConfigError
from pgmlops.retraining_config import RetrainingConfig
from pgmlops.rollback_config import RollbackConfig

DEFAULT_CONFIG_FILE = "pgmlops.yaml"
# A registered model name: it becomes part of artifact paths and metric labels.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


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
    # reference (domain/crossfit.py): a 2.5x larger, nearly unbiased reference for about
    # one extra fit of the model; 0 or 1 keeps the held-out rows alone.
    reference_folds: int = Field(
        3,
        ge=0,
        le=10,
        description="folds whose out-of-fold outputs join monitoring's reference; 0 or 1: "
        "held-out rows only",
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


class ServingConfig(_Section):
    """The HTTP service."""

    host: str = Field(
        "127.0.0.1", description="address `pgmlops serve` binds; 0.0.0.0 for every interface"
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port `pgmlops serve` listens on")
    # Several models in one server: the first answers /predict, each has /models/{name}/...
    # Empty: the one model of `model_name`.
    models: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="models one server serves (the first is the default for /predict)",
    )
    all_models: bool = Field(
        False, description="serve every registered model that has a production version"
    )
    workers: int = Field(
        1, ge=1, le=64, description="serving processes, each on its own SO_REUSEPORT socket"
    )
    max_batch: int = Field(
        10_000, ge=1, description="most records one /predict or /feedback request may hold (413)"
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="largest request body in bytes (413 beyond)"
    )
    reload_poll_seconds: float = Field(
        2.0,
        gt=0.0,
        description="how often a server checks the production alias (PostgreSQL also by NOTIFY)",
    )
    unknown_categories: Literal["reject", "flag"] = Field(
        "reject",
        description="a category training never saw: refused with 422, or accepted and marked "
        "in the answer and the log",
    )
    out_of_range: Literal["flag", "reject"] = Field(
        "flag",
        description="a record with a number outside training's range or a category training "
        "never saw: answered and named in out_of_range (flag), or refused with 422 (reject)",
    )
    extra_fields: Literal["reject", "ignore"] = Field(
        "reject",
        description="a request field that is no feature: 422, or ignored (columns training "
        "left out are always ignored)",
    )
    key_column: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the request field kept in the prediction log as each prediction's key "
        "(for feedback by key); default: the first identifier column training left out",
    )
    risk_levels: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RISK_LEVELS),
        description="risk_level bands: name -> lower bound on the decision score, where the "
        "tuned threshold is 0.5 (binary; multiclass: on the top probability); needs bounds "
        "0.0 and 0.5",
    )
    log_predictions: bool = Field(
        True, description="write every prediction to the prediction log (the predictions table)"
    )
    shadow_queue: int = Field(
        1_000,
        ge=1,
        le=1_000_000,
        description="requests waiting for a shadow challenger per worker; beyond, shadow "
        "scoring is skipped and counted (production answers never wait for it)",
    )
    access_log: bool = Field(
        False, description="one JSON log line per HTTP request (costs throughput on /predict)"
    )
    opentelemetry: bool = Field(
        False, description="FastAPI's native OpenTelemetry spans/metrics, if a provider is set up"
    )
    # Slow clients: a connection that has not sent its request line and headers within
    # header_timeout_seconds of opening (or of its previous response), or its body within
    # body_timeout_seconds of its headers, is answered 408 and closed.
    header_timeout_seconds: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description="request line and headers must arrive within this, else 408 and close",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description="the body must arrive within this of the headers, else 408 and close",
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0.0, le=3600.0, description="an idle keep-alive connection is closed after this"
    )
    public_details: bool = Field(
        False,
        description="show paths, the database location and operator names to clients "
        "without the admin key (/health, /ready, /models, error bodies)",
    )
    # About a minute of peak traffic for one worker (~3,300 rows/s at ~6,500 req/s over two
    # workers), ~0.6 KB of memory a row; it fills only while neither the database nor the
    # spill folder takes rows, and then the newest rows are dropped and counted as lost.
    log_queue_size: int = Field(
        200_000,
        ge=100,
        description="log rows a worker holds while neither the database nor the spill folder "
        "takes them",
    )
    # A batch costs the serving process ~0.6 ms of GIL time whatever its size, plus ~1 µs a
    # row (one orjson call), and PostgreSQL ~20 µs a row in one burst that takes a core from
    # the workers: 1,000 rows every 0.2 s cost the least CPU but showed in p99 at half load
    # (bench/serve_bench.py's wrk constant-rate runs); a row reaches the table within 0.1 s.
    log_batch_size: int = Field(
        500, ge=1, description="most rows the log writer inserts in one statement"
    )
    log_flush_seconds: float = Field(
        0.1, gt=0.0, description="a partial batch of log rows is written after this long"
    )
    spill_dir: str = Field(
        ".pgmlops/spill",
        description="folder where log rows wait on disk while the database is unreachable",
    )
    log_drain_seconds: float = Field(
        10.0, ge=0.0, le=600.0, description="on shutdown, how long queued rows may take to drain"
    )
    log_durability: Literal["fast", "acknowledged"] = Field(
        "fast",
        description="acknowledged: /predict answers only once its row is committed or spilled",
    )
    # Back-pressure: when the log cannot take a request's rows (its queue is full because the
    # database and the spill folder refuse them, or take them slower than the server scores),
    # "wait" holds the request up to log_wait_seconds for room and then answers 503 with
    # Retry-After: no answer is returned whose rows were dropped. "drop" is the availability
    # choice: answer anyway and count the rows as lost (docs/reliability.md).
    log_when_full: Literal["wait", "drop"] = Field(
        "wait",
        description="wait: a request waits for room in the prediction log, then 503; "
        "drop: answer anyway and count its rows as lost (availability over the record)",
    )
    # 5 s: a 10,000-row request needs 10,000 rows of room, which a writer draining ~12,000
    # rows/s frees within a second; longer waits only hold connections while the log is down.
    log_wait_seconds: float = Field(
        5.0,
        ge=0.0,
        le=300.0,
        description="with log_when_full=wait, how long a request waits for room before a 503",
    )
    # PostgreSQL: the log is range-partitioned on created_at. The server (at start-up) and
    # `pgmlops worker` keep the current period and this many after it created ahead; retention
    # (`retraining.retention.predictions_days`) drops whole periods.
    log_partition_period: Literal["month", "day"] = Field(
        "month", description="PostgreSQL: the span of one prediction-log partition"
    )
    # fast durability: "process" hands rows through a pipe to a logging process per worker,
    # so no thread of the serving process wakes per row (a third to a fifth of the thread's
    # cost at one worker: bench/results/serve-wave6-*.md); "thread" keeps the writer in the
    # serving process. acknowledged always uses the thread.
    log_writer: Literal["process", "thread"] = Field(
        "process",
        description="fast durability: a logging process per worker fed through a pipe, or a "
        "writer thread in the worker",
    )
    log_partitions_ahead: int = Field(
        2, ge=1, le=366, description="log partitions created ahead of the current one"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "risk_bands" in data:
            raise ValueError(
                "risk_bands was replaced by risk_levels: bands of the decision score, where "
                "the tuned threshold is 0.5 (docs/serving.md)"
            )
        return data

    @field_validator("risk_levels")
    @classmethod
    def _risk_levels(cls, v: dict[str, float]) -> dict[str, float]:
        check_risk_levels(v)
        return v

    @field_validator("models")
    @classmethod
    def _model_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(MODEL_NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not a model name")
        twice = sorted({n for n in v if v.count(n) > 1})
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
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


def check_model_name(name: str, where: str = "--model-name") -> str:
    """The name, if it fits the pattern every registered model name must match."""
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ConfigError(
            f"{where} {name!r} is not a model name: letters, digits, '_', '.' and '-', "
            "starting with a letter or digit, at most 128 characters"
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
