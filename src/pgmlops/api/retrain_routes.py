"""Retraining routes: enqueue a retrain (a worker trains, never the API) and report runs.

Handlers are plain functions so FastAPI runs their database work on its thread pool.
"""

from __future__ import annotations

import copy
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pgmlops.api.deps import get_client, get_ctx, require_admin, sees_details
from pgmlops.api.request_body import require_json_if_body
from pgmlops.config import check_model_name
from pgmlops.domain.redact import public_text
from pgmlops.services.retraining.runs import enqueue_retrain

router = APIRouter(tags=["retraining"], dependencies=[Depends(require_admin)])
# Where the triggers stand is what the page shows anyone, like /monitoring/drift.
public = APIRouter(tags=["retraining"])
# Each page view asks; counting labels (and a live source's rows, on another server) for
# every anonymous view would let page reloads load the databases, so answers live briefly.
TRIGGERS_TTL_SECONDS = 10.0


class RetrainBody(BaseModel):
    """What to retrain; with `if_needed` the worker lets the triggers decide."""

    model_config = ConfigDict(extra="forbid")
    model_name: str | None = Field(None, max_length=128)
    if_needed: bool = False
    force: bool = Field(False, description="Retrain even when there is nothing new to learn.")
    allow_feedback_only: bool = Field(
        False, description="Train from feedback alone if the recorded source is gone."
    )


class Queued(BaseModel):
    job_id: int
    status: str = "queued"
    created: bool = Field(description="False when an identical job was already waiting.")


def _actor(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api@{client}"


@router.post(
    "/retrain",
    status_code=202,
    dependencies=[Depends(require_json_if_body)],
    response_model=Queued,
    summary="Queue a retraining job for the worker",
)
def post_retrain(request: Request, body: RetrainBody | None = None) -> Any:
    """202 with the job id; an identical job already waiting is returned instead of a new one."""
    body = body or RetrainBody()
    job_id, created = enqueue_retrain(
        get_ctx(request),
        body.model_name,
        force=body.force,
        if_needed=body.if_needed,
        allow_feedback_only=body.allow_feedback_only,
        actor=_actor(request),
    )
    return JSONResponse(
        status_code=202, content={"job_id": job_id, "status": "queued", "created": created}
    )


@router.get("/retrain/status", summary="Latest retraining runs and unfinished jobs")
def get_retrain_status(
    request: Request,
    model_name: Annotated[
        str | None, Query(description="Registered model name (default: the configured one).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest runs to return.")] = 10,
) -> dict[str, Any]:
    """Runs newest first (a run whose process died is marked failed first) and queued jobs."""
    return get_client(request).retrain_status(model_name, limit)


@public.get("/retrain/triggers", summary="Where each retraining trigger stands now")
def get_retrain_triggers(
    request: Request,
    model_name: Annotated[
        str | None, Query(description="Registered model name (default: the configured one).")
    ] = None,
) -> dict[str, Any]:
    """Each trigger's progress ("3,000 of 5,000 new labels"), next due time, or signal state."""
    ctx = get_ctx(request)
    name = check_model_name(model_name or ctx.settings.model_name, "model_name")
    recent = getattr(request.app.state, "trigger_status", None)
    if recent is None:
        recent = request.app.state.trigger_status = {}
    cached = recent.get(name)
    if cached is not None and time.monotonic() - cached[0] < TRIGGERS_TTL_SECONDS:
        report = copy.deepcopy(cached[1])
    else:
        report = get_client(request).retrain_triggers(name)
        recent[name] = (time.monotonic(), copy.deepcopy(report))
    if not sees_details(request):
        # A live source's error may name its host; anonymous clients get it without.
        for check in report["checks"]:
            check["detail"] = public_text(check["detail"])
            check.get("state", {}).pop("counted", None)
    return report
