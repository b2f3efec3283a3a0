"""The FastAPI application factory: wiring only, no logic."""

from __future__ import annotations

import logging
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


def _wire(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    ctx = Context(settings)
    ctx.db.ensure_schema()
    holder = ModelHolder(ctx, settings.model_name)
    serving = settings.serving

    def reloaded(result: str, version: int) -> None:
        metrics.reloads.labels(result).inc()
        if result == "ok":
            metrics.model_info.clear()
            engine = holder.current.engine.name if holder.current else "none"
            metrics.model_info.labels(settings.model_name, str(version), engine).set(1)
            # The request schema follows the served version: rebuild OpenAPI lazily.
            app.openapi_schema = None

    holder.on_reload.append(reloaded)
    writer = PredictionLogWriter(
        PredictionStore(ctx.db),
        serving.spill_dir,
        max_queue=serving.log_queue_size,
        batch_size=serving.log_batch_size,
        flush_seconds=serving.log_flush_seconds,
        on_count=lambda event, n: metrics.log_records.labels(event).inc(n),
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
    if model is not None:
        record = model.record.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = record.pop("$defs", {})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs)
        components["Record"] = record
        ref = {"$ref": "#/components/schemas/Record"}
        max_batch = app.state.ctx.settings.serving.max_batch
        body_schema = {
            "anyOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": max_batch}]
        }
        op = schema["paths"]["/predict"]["post"]
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        }
    fb = schema["paths"]["/feedback"]["post"]
    item = {
        "type": "object",
        "additionalProperties": False,
        "required": ["prediction_id", "label"],
        "properties": {
            "prediction_id": {"type": "string", "format": "uuid"},
            "label": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
    }
    fb["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}
            }
        },
    }
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for one process; the model loads in the lifespan, not here."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="pgmlops",
        version=__version__,
        description="Serve the production model, log every prediction, collect labels.",
        lifespan=lifespan,
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
