"""The FastAPI application factory: wiring only, no logic."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pgmlops import __version__
from pgmlops.api import (
    admin_routes,
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
from pgmlops.config import Settings, get_settings
from pgmlops.services.context import Context
from pgmlops.services.prediction_log import PredictionLogWriter
from pgmlops.services.reload_watch import AliasWatcher
from pgmlops.services.serving import ModelHolder
from pgmlops.store.predictions import PredictionStore

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
    holder = ModelHolder(ctx, settings.model_name)
    serving = settings.serving

    def reloaded(result: str, version: int) -> None:
        metrics.reloads.labels(result).inc()
        if result == "ok":
            engine = holder.current.engine.name if holder.current else "none"
            metrics.show_model(settings.model_name, version, engine)
            # The request schema follows the served version: rebuild OpenAPI lazily.
            app.openapi_schema = None
            refreeze()

    holder.on_reload.append(reloaded)
    writer = PredictionLogWriter(
        PredictionStore(ctx.db),
        serving.spill_dir,
        max_queue=serving.log_queue_size,
        batch_size=serving.log_batch_size,
        flush_seconds=serving.log_flush_seconds,
        drain_seconds=serving.log_drain_seconds,
        acknowledged=serving.log_durability == "acknowledged",
        on_count=metrics.count_log_event,
    )
    app.state.ctx = ctx
    app.state.holder = holder
    app.state.writer = writer
    app.state.watcher = AliasWatcher(holder, ctx.db, serving.reload_poll_seconds)
    key = settings.predict_api_key
    app.state.predict_key = key.get_secret_value() if key else None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    state.holder.refresh()
    state.writer.start()
    state.watcher.start()
    if state.holder.current is None:
        refreeze()  # a loaded version has been frozen by the reload callback already
    # Background threads (log writer, alias watcher) hold the GIL in stretches; the default
    # 5 ms switch interval would let one stall the event loop for that long, a p99 outlier.
    sys.setswitchinterval(0.001)
    # Each request allocates a few dozen containers and the log keeps some alive for a moment;
    # collecting the young generation every 700 allocations cost ~25 µs per /predict.
    gc.set_threshold(10_000, 10, 10)
    log.info(
        "pgmlops %s serving model %r from %s",
        __version__,
        state.holder.model_name,
        state.ctx.db.describe(),
    )
    try:
        yield
    finally:
        state.watcher.stop()
        state.writer.stop()
        state.ctx.close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI whose /predict body is the served version's feature schema."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, routes=app.routes, description=app.description
    )
    model = app.state.holder.current
    max_batch = app.state.ctx.settings.serving.max_batch
    if model is not None:
        record = model.record.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = record.pop("$defs", {})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs)
        components["Record"] = record
        ref = {"$ref": "#/components/schemas/Record"}
        body_schema = {
            "anyOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": max_batch}]
        }
    else:
        anything = {"type": "object"}
        body_schema = {"anyOf": [anything, {"type": "array", "items": anything}]}
    problem = {"content": {"application/json": {"schema": {"type": "object"}}}}
    predict_op = {
        "summary": "Predict one record or a list of records with the production model",
        "operationId": "predict_predict_post",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
        "responses": {
            "200": {"description": "A prediction per record", **problem},
            "401": {"description": "Missing or wrong predict key", **problem},
            "413": {
                "description": "Body over the size limit, or over max_batch records",
                **problem,
            },
            "415": {"description": "Content-Type is not application/json", **problem},
            "422": {"description": "A record does not fit the feature schema", **problem},
            "503": {"description": "No production model is loaded", **problem},
        },
    }
    # The route is a plain Starlette one; put it first, where users look for it.
    schema["paths"] = {"/predict": {"post": predict_op}, **schema["paths"]}
    fb = schema["paths"]["/feedback"]["post"]
    label = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    by_id = {
        "type": "object",
        "title": "LabelById",
        "additionalProperties": False,
        "required": ["prediction_id", "label"],
        "properties": {"prediction_id": {"type": "string", "format": "uuid"}, "label": label},
    }
    by_key = {
        "type": "object",
        "title": "LabelByKey",
        "description": "The label goes to the latest prediction of the served model logged "
        "with this key; keys no prediction carries are listed in unmatched_keys.",
        "additionalProperties": False,
        "required": ["key", "label"],
        "properties": {
            "key": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "integer"}]},
            "label": label,
        },
    }
    item = {"anyOf": [by_id, by_key]}
    fb["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        item,
                        {"type": "array", "items": item, "minItems": 1, "maxItems": max_batch},
                    ]
                }
            }
        },
    }
    fb.setdefault("responses", {})["413"] = {
        "description": "Body over the size limit, or over max_batch items",
        **problem,
    }
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for one process; the model loads in the lifespan, not here."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, access_log=settings.serving.access_log)
    app = FastAPI(
        title="pgmlops",
        version=__version__,
        description="Serve the production model, log every prediction, collect labels.",
        lifespan=lifespan,
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
    app.include_router(admin_routes.router)
    app.include_router(admin_routes.admin)
    app.include_router(monitoring_routes.router)
    app.include_router(retrain_routes.router)
    app.include_router(page.router)

    def version_label() -> str:
        current = app.state.holder.current
        return str(current.version) if current else "none"

    app.add_middleware(RequestContextMiddleware, metrics=metrics, version_of=version_label)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
