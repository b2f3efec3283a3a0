"""The `serving:` settings section: the HTTP service, its answers and its prediction log."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgmlops.domain.decision import DEFAULT_RISK_LEVELS, check_risk_levels

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class ServingConfig(BaseModel):
    """The HTTP service."""

    model_config = ConfigDict(extra="forbid")

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
