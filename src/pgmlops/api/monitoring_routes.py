"""Monitoring routes: the latest stored run, its HTML report, and the runs as a time series.

Reading stored runs never starts a monitoring run: `pgmlops monitor`, the worker or the
retraining triggers do that. Handlers are plain functions so FastAPI runs their database
reads on its thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from pgmlops.api.deps import get_client

router = APIRouter(tags=["monitoring"])

ModelQuery = Annotated[
    str | None, Query(description="Registered model name (default: the configured one).")
]


def _no_run(name: str) -> JSONResponse:
    return JSONResponse(
        status_code=404,
        content={"error": f"model {name!r} has no monitoring run yet; run `pgmlops monitor`"},
    )


@router.get("/monitoring/drift", summary="The latest monitoring run")
def monitoring_drift(request: Request, model_name: ModelQuery = None) -> Any:
    """Drift, confidence and performance of the newest stored run (404 when there is none)."""
    client = get_client(request)
    name = model_name or client.settings.model_name
    result = client.latest_monitoring_run(name)
    if result is None:
        return _no_run(name)
    return JSONResponse(result.to_json())


@router.get("/monitoring/history", summary="Monitoring runs as a time series")
def monitoring_history(
    request: Request,
    model_name: ModelQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest runs to return.")] = 50,
) -> dict[str, Any]:
    """Per run, oldest first: drift share, mean confidence, estimated and labelled metric."""
    client = get_client(request)
    name = model_name or client.settings.model_name
    points = client.monitoring_history(name, limit)
    return {"model_name": name, "runs": [p.model_dump(mode="json") for p in points]}


@router.get("/monitoring/report", response_class=HTMLResponse, summary="HTML report")
def monitoring_report(request: Request, model_name: ModelQuery = None) -> Any:
    """The newest stored run as the self-contained HTML report `pgmlops monitor --html` writes."""
    client = get_client(request)
    name = model_name or client.settings.model_name
    result = client.latest_monitoring_run(name)
    if result is None:
        return _no_run(name)
    return HTMLResponse(result.to_html(client.monitoring_history(name)))
