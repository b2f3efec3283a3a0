"""The FastAPI application factory: wiring only, no logic."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from pgmlops import __version__
from pgmlops.api import (
    admin_routes,
    compare_routes,
    docs,
    errors,
    monitoring_routes,
    page,
    predict_routes,
    retrain_routes,
)
from pgmlops.api.observability import (
    Metrics,
    RequestContextMiddleware,
    build_metrics,
    configure_logging,
)
from pgmlops.api.openapi import build_openapi
from pgmlops.config import Settings, get_settings
from pgmlops.errors import PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.live.traffic import ShadowScorer
from pgmlops.services.retention import ensure_log_partitions
from pgmlops.services.rollback.request_counts import RequestCounter
from pgmlops.services.serving.load import ModelHolder, served_model_names
from pgmlops.services.serving.prediction_log import (
    LogProcessConfig,
    PredictionLogWriter,
    ProcessLogWriter,
)
from pgmlops.services.serving.prediction_log.contract import PredictionLog
from pgmlops.services.serving.reload_watch import AliasWatcher
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.rollback.serving_counts import ServingCountStore

log = logging.getLogger(__name__)


def refreeze() -> None:
    """Keep long-lived objects (libraries, the served model) out of the collector's passes.

    A full collection over them takes 50-150 ms here, a stall for every request in flight.
    After a reload the previous version's cycles must be freed first, hence unfreeze+collect.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _wire(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    ctx = Context(settings)
    ctx.db.ensure_schema()
    if ctx.mlflow_mirror is not None:
        ctx.mlflow_mirror.on_failure.append(
            lambda model: metrics.mlflow_mirror_failures.labels(model).inc()
        )
    try:
        ensure_log_partitions(ctx)
    except PgmlopsError as exc:
        # Serve anyway: the writer makes a missing partition when a row needs it.
        log.warning("prediction log partitions not created at start-up: %s", exc)
    # The default model (first) answers /predict; each has /models/{name}/predict too.
    holders = {name: ModelHolder(ctx, name) for name in served_model_names(ctx)}
    serving = settings.serving

    def on_reload(holder: ModelHolder) -> Any:
        def reloaded(result: str, version: int) -> None:
            metrics.reloads.labels(holder.model_name, result).inc()
            if result == "challenger_ok":
                refreeze()
            if result == "ok":
                engine = holder.current.engine.name if holder.current else "none"
                metrics.show_model(holder.model_name, version, engine)
                # The request schema follows the served version: rebuild OpenAPI lazily.
                app.openapi_schema = None
                refreeze()

        return reloaded

    for holder in holders.values():
        holder.on_reload.append(on_reload(holder))
    writer = _log_writer(ctx, settings, metrics)
    app.state.ctx = ctx
    app.state.holders = holders
    app.state.holder = next(iter(holders.values()))
    app.state.writer = writer
    app.state.shadow = ShadowScorer(
        serving, writer, metrics.count_live, max_jobs=serving.shadow_queue
    )
    # Requests per version and outcome, for the error rate automatic rollback reads.
    app.state.counts = RequestCounter(ServingCountStore(ctx.db))
    app.state.watcher = AliasWatcher(list(holders.values()), ctx.db, serving.reload_poll_seconds)
    key = settings.predict_api_key
    app.state.predict_key = key.get_secret_value() if key else None


def _log_writer(ctx: Context, settings: Settings, metrics: Metrics) -> PredictionLog:
    """The prediction log writer: a logging process (fast), or a thread (acknowledged)."""
    serving = settings.serving
    if serving.log_durability == "fast" and serving.log_writer == "process":
        return ProcessLogWriter(
            LogProcessConfig(
                database_url=ctx.db.url,
                spill_dir=str(serving.spill_dir),
                partition_period=serving.log_partition_period,
                max_queue=serving.log_queue_size,
                batch_size=serving.log_batch_size,
                flush_seconds=serving.log_flush_seconds,
                drain_seconds=serving.log_drain_seconds,
                when_full=serving.log_when_full,
            ),
            on_count=metrics.count_log_event,
        )
    return PredictionLogWriter(
        PredictionStore(ctx.db, partition_period=serving.log_partition_period),
        serving.spill_dir,
        max_queue=serving.log_queue_size,
        batch_size=serving.log_batch_size,
        flush_seconds=serving.log_flush_seconds,
        drain_seconds=serving.log_drain_seconds,
        acknowledged=serving.log_durability == "acknowledged",
        on_count=metrics.count_log_event,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    for holder in state.holders.values():
        holder.refresh()
    state.writer.start()
    state.shadow.start()
    state.counts.start()
    state.watcher.start()
    if any(holder.current is None for holder in state.holders.values()):
        refreeze()  # a loaded version has been frozen by the reload callback already
    # Background threads (log writer, alias watcher) hold the GIL in stretches; the default
    # 5 ms switch interval would let one stall the event loop for that long, a p99 outlier.
    sys.setswitchinterval(0.001)
    # Each request allocates a few dozen containers and the log keeps some alive for a moment;
    # collecting the young generation every 700 allocations cost ~25 µs per /predict.
    gc.set_threshold(10_000, 10, 10)
    log.info(
        "pgmlops %s serving model%s %s from %s",
        __version__,
        "s" if len(state.holders) > 1 else "",
        ", ".join(map(repr, state.holders)),
        state.ctx.db.describe(),
    )
    try:
        yield
    finally:
        state.watcher.stop()
        state.shadow.stop()
        state.counts.stop()
        state.writer.stop()
        state.ctx.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for one process; the model loads in the lifespan, not here."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, access_log=settings.serving.access_log)
    app = FastAPI(
        title="pgmlops",
        version=__version__,
        description="Serve the production model, log every prediction, collect labels.",
        lifespan=lifespan,
        # Served by api/docs.py from bundled files: FastAPI's own pages load from a CDN.
        docs_url=None,
        redoc_url=None,
        # Off unless asked for: the bridge looks up the global providers on every request,
        # and pgmlops already exports Prometheus metrics and request-id'd JSON logs.
        telemetry=None
        if settings.serving.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    metrics = build_metrics()
    app.state.metrics = metrics
    _wire(app, settings, metrics)
    errors.install(app)
    app.include_router(predict_routes.router)
    if len(app.state.holders) > 1:
        per_model = APIRouter()
        predict_routes.add_model_routes(per_model, list(app.state.holders))
        app.include_router(per_model)
    app.include_router(admin_routes.router)
    app.include_router(admin_routes.admin)
    app.include_router(monitoring_routes.router)
    app.include_router(compare_routes.router)
    app.include_router(retrain_routes.router)
    app.include_router(retrain_routes.public)
    app.include_router(page.router)
    docs.install(app)

    holders = app.state.holders

    def version_label(model: str) -> str:
        current = holders[model].current
        return str(current.version) if current else "none"

    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, models=list(holders), version_of=version_label
    )
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
