"""Health, readiness, metrics, the model list and the admin routes (reload, promote, rollback)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pgmlops.api.deps import get_client, require_admin, sees_details
from pgmlops.api.errors import json_response
from pgmlops.api.observability import rollback_metrics
from pgmlops.api.request_body import require_json_if_body
from pgmlops.domain.redact import public_text
from pgmlops.domain.registry.card import engine_label
from pgmlops.services.commands import model_detail, promotion_summary, rollback_summary
from pgmlops.services.live.deployment import deploy_summary

router = APIRouter()
admin = APIRouter(dependencies=[Depends(require_admin)])


class PromoteBody(BaseModel):
    """What to promote; gates decide unless forced with a reason."""

    model_config = ConfigDict(extra="forbid")
    model_name: str | None = None
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    force: bool = False
    reason: str | None = Field(None, max_length=2000)


class RollbackBody(BaseModel):
    """Why production goes back one step."""

    model_config = ConfigDict(extra="forbid")
    model_name: str | None = None
    reason: str | None = Field(None, max_length=2000)


class DeployBody(BaseModel):
    """A challenger (shadow or canary share), its stop, or another alias's move."""

    model_config = ConfigDict(extra="forbid")
    model_name: str | None = None
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    shadow: bool = False
    canary: str | None = Field(None, max_length=20)
    sticky_key: str | None = Field(None, max_length=200)
    stop: bool = False
    alias: str | None = Field(None, max_length=64)
    reason: str | None = Field(None, max_length=2000)


def _actor(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api@{client}"


def serving_info(request: Request, name: str | None = None) -> dict[str, Any]:
    """What one served model (the default one without a name) is serving now."""
    state = request.app.state
    holder = state.holders[name] if name is not None else state.holder
    model = holder.current
    return {
        "model": holder.model_name,
        "version": model.version if model else None,
        "engine": model.engine.name if model else None,
        # 'pipeline (onnx rejected: why)': a slower engine is never served silently.
        "engine_detail": engine_label(model.card.onnx, model.engine.name) if model else None,
        "key_column": model.key_column if model else None,
        "loaded_at": model.loaded_at.isoformat() if model else None,
        "error": holder.last_error,
        "reloads": holder.reloads,
        "challenger": (
            {
                "version": holder.live.version,
                "mode": holder.live.deployment.describe(),
                "engine": holder.live.model.engine.name,
            }
            if holder.live
            else None
        ),
        "challenger_error": holder.live_error,
    }


def _public(value: Any) -> Any:
    """Strings (error reasons, lists of them) without URLs or paths, for anonymous clients."""
    if isinstance(value, list):
        return [_public(v) for v in value]
    return public_text(value) if isinstance(value, str) else value


def anonymous_models(result: dict[str, Any]) -> dict[str, Any]:
    """The /models answer without operator names, client addresses or the training-data path."""
    for model in result.get("models", []):
        for version in model.get("versions", []):
            version["created_by"] = None
        for event in model.get("history", []):
            event["actor"] = None
            event["reason"] = _public(event.get("reason"))
    card = result.get("card")
    if card is not None:
        card["data"]["source"] = None
        card["warnings"] = [public_text(w) for w in card.get("warnings", [])]
    serving = result.get("serving")
    if serving is not None:
        serving["error"] = _public(serving.get("error"))
        serving["engine_detail"] = _public(serving.get("engine_detail"))
        serving["challenger_error"] = _public(serving.get("challenger_error"))
    return result


def _holder_of(request: Request, name: str | None) -> Any:
    """The holder of a served model (the default one for None or a model not served here)."""
    state = request.app.state
    return state.holders.get(name, state.holder) if name else state.holder


@router.get("/health", summary="Liveness, with the loaded version, database and log queue")
async def health(request: Request) -> Response:
    state = request.app.state
    db_ok = await run_in_threadpool(state.ctx.db.ping)
    served = [serving_info(request, name) for name in state.holders]
    model = served[0]
    log_stats = state.writer.stats()
    # Each reason is a fact of now (not a sticky last error), so recovery clears it.
    reasons = [] if db_ok else ["database unreachable"]
    for info in served:
        if info["version"] is None or info["error"]:
            reason = info["error"] or "no production model loaded"
            reasons.append(f"{info['model']}: {reason}" if len(served) > 1 else reason)
    reasons.extend(log_stats["reasons"])
    database: dict[str, Any] = {"reachable": db_ok}
    if sees_details(request):
        database["url"] = state.ctx.db.describe()
    else:
        for info in served:
            info["error"] = _public(info["error"])
            info["engine_detail"] = _public(info["engine_detail"])
            info["challenger_error"] = _public(info["challenger_error"])
        reasons = _public(reasons)
        log_stats = {k: _public(v) for k, v in log_stats.items()}
    return json_response(
        200,
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            # Each worker keeps its own model, log queue and counters: say which one answered.
            "worker_pid": os.getpid(),
            "model": model,
            # Every served model, the default (the one /predict answers with) first.
            "models": served,
            "database": database,
            "prediction_log": log_stats,
            "alias_watch": "listen/notify" if state.watcher.listening else "polling",
        },
    )


@router.get("/ready", summary="200 once every served model is loaded, 503 with a reason before")
async def ready(request: Request) -> Response:
    holders = request.app.state.holders
    for holder in holders.values():
        if holder.current is None:
            reason = holder.last_error or "no production model loaded yet"
            if len(holders) > 1:
                reason = f"{holder.model_name}: {reason}"
            if not sees_details(request):
                reason = public_text(reason)
            return json_response(503, {"ready": False, "reason": reason})
    holder = request.app.state.holder
    return json_response(
        200,
        {
            "ready": True,
            "model": holder.model_name,
            "version": holder.current.version,
            "models": {name: h.current.version for name, h in holders.items()},
        },
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    body, ctype = request.app.state.metrics.render()
    # Counted in the database by whichever worker rolled back: the same on every host.
    extra = await run_in_threadpool(rollback_metrics, request.app.state.ctx)
    return Response(body + extra, media_type=ctype)


@router.get("/models", summary="Registered versions, aliases, metrics and production history")
async def models(request: Request, model_name: str | None = None) -> Response:
    client = get_client(request)
    holders = request.app.state.holders
    name = model_name or request.app.state.holder.model_name

    def describe() -> dict[str, Any]:
        return {
            "models": [
                model_detail(
                    name,
                    client.versions(name),
                    client.history(name, alias=None),
                    states=client.aliases(name),
                    refusals=client.refused_rollbacks(name),
                )
            ]
        }

    result = await run_in_threadpool(describe)
    result["serving"] = serving_info(request, name if name in holders else None)
    # The web page offers a picker over these; the first answers /predict.
    result["served"] = list(holders)
    model = holders[name].current if name in holders else None
    if model is not None:
        result["card"] = model.card.model_dump(mode="json")
    if not sees_details(request):
        result = anonymous_models(result)
    return json_response(200, result)


@admin.post("/reload", summary="Reload the production version now")
async def reload(request: Request) -> Response:
    holders = request.app.state.holders
    for holder in holders.values():
        await run_in_threadpool(holder.refresh, force=True)
    info = serving_info(request)
    if len(holders) > 1:
        info["models"] = [serving_info(request, name) for name in holders]
    failed = any(serving_info(request, name)["error"] for name in holders)
    return json_response(409 if failed else 200, info)


@admin.post(
    "/promote",
    dependencies=[Depends(require_json_if_body)],
    summary="Promote a version if the gates approve (or force with a reason)",
)
async def promote(request: Request, body: PromoteBody) -> Response:
    promoted = await run_in_threadpool(
        get_client(request).promote,
        body.model_name or request.app.state.holder.model_name,
        body.version,
        force=body.force,
        reason=body.reason,
        actor=_actor(request),
    )
    result = promotion_summary(promoted)
    await run_in_threadpool(_holder_of(request, body.model_name).refresh)
    return json_response(200, result)


@admin.post(
    "/rollback",
    dependencies=[Depends(require_json_if_body)],
    summary="Move production back to the previous production version",
)
async def rollback(request: Request, body: RollbackBody | None = None) -> Response:
    body = body or RollbackBody()
    event = await run_in_threadpool(
        get_client(request).rollback,
        body.model_name or request.app.state.holder.model_name,
        reason=body.reason,
        actor=_actor(request),
    )
    result = rollback_summary(event)
    await run_in_threadpool(_holder_of(request, body.model_name).refresh)
    return json_response(200, result)


@admin.post("/deploy", summary="Deploy a challenger (shadow or canary), stop it, or set an alias")
async def deploy(request: Request, body: DeployBody) -> Response:
    event = await run_in_threadpool(
        get_client(request).deploy,
        body.model_name or request.app.state.holder.model_name,
        body.version,
        shadow=body.shadow,
        canary=body.canary,
        sticky_key=body.sticky_key,
        stop=body.stop,
        alias=body.alias,
        reason=body.reason,
        actor=_actor(request),
    )
    await run_in_threadpool(_holder_of(request, body.model_name).refresh)
    return json_response(200, deploy_summary(event))
