"""Request ids, structured JSON logs and Prometheus metrics for the HTTP service."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
KNOWN_ROUTES = frozenset(
    {
        "/predict",
        "/feedback",
        "/health",
        "/ready",
        "/metrics",
        "/models",
        "/reload",
        "/promote",
        "/rollback",
        "/retrain",
        "/retrain/status",
        "/retrain/triggers",
        "/monitoring/drift",
        "/monitoring/history",
        "/",
    }
)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, *, access_log: bool = False) -> None:
    """Route our loggers and uvicorn's through the JSON formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn decides per connection from hasHandlers(): a propagating access logger would
    # format and write a line for every request, which /predict cannot afford by default.
    logging.getLogger("uvicorn.access").propagate = access_log
    # Migrations narrate every step at INFO; only their warnings matter in service logs.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass
class Metrics:
    """The service's Prometheus metrics; one set per process."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    predictions: Counter
    reloads: Counter
    log_records: Counter
    rows_lost: Counter
    model_info: Gauge
    live_rows: Counter
    mlflow_mirror_failures: Counter

    _children: dict[tuple[str, int, str], Any] = field(default_factory=dict)
    _log_children: dict[str, Any] = field(default_factory=dict)
    _model_labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def show_model(self, model: str, version: int, engine: str) -> None:
        """pgmlops_model_info is 1 for each model's served version; the one it replaced drops to 0.

        Set to 0 rather than removed: multi-process mode cannot remove a labelled series.
        """
        labels = (model, str(version), engine)
        before = self._model_labels.get(model)
        if before and before != labels:
            self.model_info.labels(*before).set(0)
        self.model_info.labels(*labels).set(1)
        self._model_labels[model] = labels

    def count_prediction(self, model: str, version: int, label: str, n: int) -> None:
        """Predictions by class; the labelled child is looked up once, then cached."""
        key = (model, version, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(model, str(version), label)
        child.inc(n)

    def count_log_event(self, event: str, n: int) -> None:
        """Prediction-log writer events (queued, written, ...), children cached as above."""
        child = self._log_children.get(event)
        if child is None:
            child = self._log_children[event] = self.log_records.labels(event)
        child.inc(n)
        if event == "lost":
            self.rows_lost.inc(n)

    def count_live(self, model: str, version: int, role: str, what: str, n: int) -> None:
        """Rows per role (production, canary, shadow) and what became of them."""
        if n:
            self.live_rows.labels(model, str(version), role, what).inc(n)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=registry,
        requests=Counter(
            "pgmlops_http_requests_total",
            "HTTP requests",
            ["route", "status", "model", "version"],
            registry=registry,
        ),
        latency=Histogram(
            "pgmlops_http_request_seconds",
            "HTTP request latency",
            ["route", "model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        predictions=Counter(
            "pgmlops_predictions_total",
            "Predictions served",
            ["model", "version", "prediction"],
            registry=registry,
        ),
        reloads=Counter(
            "pgmlops_model_reloads_total",
            "Model reload attempts",
            ["model", "result"],
            registry=registry,
        ),
        log_records=Counter(
            "pgmlops_prediction_log_records_total",
            "Prediction-log writer events",
            ["event"],
            registry=registry,
        ),
        rows_lost=Counter(
            "pgmlops_prediction_log_rows_lost_total",
            "Answered predictions whose log row neither the database nor the spill folder took",
            registry=registry,
        ),
        model_info=Gauge(
            "pgmlops_model_info",
            "The model version being served (value 1)",
            ["model", "version", "engine"],
            registry=registry,
            multiprocess_mode="livemax",
        ),
        live_rows=Counter(
            "pgmlops_live_rows_total",
            "Rows by role (production, canary, shadow) and outcome (answered, scored, failed, "
            "dropped, log_busy)",
            ["model", "version", "role", "outcome"],
            registry=registry,
        ),
        mlflow_mirror_failures=Counter(
            "pgmlops_mlflow_mirror_failures_total",
            "Alias moves made here that MLflow did not take (the move stands; re-sync later)",
            ["model"],
            registry=registry,
        ),
    )


def rollback_metrics(ctx: Any) -> bytes:
    """pgmlops_auto_rollbacks_total from the database (the worker has no /metrics of its own).

    Empty when the database does not answer: /metrics never fails for it.
    """
    from pgmlops.services.rollback.watch import rollback_totals

    try:
        totals = rollback_totals(ctx)
    except Exception as exc:  # the database may be down; the process's metrics still count
        logging.getLogger(__name__).warning("auto rollback counts not read: %s", exc)
        return b""
    lines = [
        "# HELP pgmlops_auto_rollbacks_total Automatic rollbacks by `pgmlops worker` (every "
        "host), by the signal that set them off; outcome refused: the target failed artifact "
        "verification and was not restored",
        "# TYPE pgmlops_auto_rollbacks_total counter",
    ]
    for model, signal, outcome, n in sorted(totals):
        lines.append(
            f'pgmlops_auto_rollbacks_total{{model="{model}",reason="{signal}",'
            f'outcome="{outcome}"}} {n}'
        )
    return ("\n".join(lines) + "\n").encode()


class RequestContextMiddleware:
    """Pure ASGI middleware: request id in and out, latency and status per route and model.

    `models` are the served models, the default first; `version_of(model)` its served version.
    Routes of a served model are labelled by their template and the model; any other unknown
    path is "other", so clients cannot grow the label sets.
    """

    def __init__(self, app: Any, metrics: Metrics, models: list[str], version_of: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.default_model = models[0]
        self.version_of = version_of
        self._model_routes = {
            f"/models/{name}/{action}": (f"/models/{{name}}/{action}", name)
            for name in models
            for action in ("predict", "feedback")
        }
        # labels() takes a lock and builds a key on every call; the children never change.
        self._children: dict[tuple[str, int, str, str], tuple[Any, Any]] = {}

    def _observe(self, route: str, status: int, model: str, version: str, seconds: float) -> None:
        key = (route, status, model, version)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(route, str(status), model, version),
                self.metrics.latency.labels(route, model, version),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or os.urandom(16).hex()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope["path"]
            if path in KNOWN_ROUTES:
                route, model = path, self.default_model
            else:
                route, model = self._model_routes.get(path, ("other", self.default_model))
            self._observe(
                route, status, model, self.version_of(model), time.perf_counter() - started
            )
            request_id_var.reset(token)
