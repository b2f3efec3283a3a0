"""Live comparison routes: production against the challenger on logged traffic, read-only.

Like the monitoring routes, reading never changes anything and needs no key; the handlers are
plain functions so FastAPI runs their database reads on its thread pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from pgmlops.api.deps import get_client

if TYPE_CHECKING:
    from pgmlops.services.live.comparison import LiveComparison

router = APIRouter(tags=["monitoring"])

ModelQuery = Annotated[
    str | None, Query(description="Registered model name (default: the configured one).")
]
SinceQuery = Annotated[
    str | None,
    Query(max_length=64, description="Only traffic since: 24h, 7d or an ISO time (default: all)."),
]
VersionQuery = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="Challenger version (default: the deployed one)."),
]


def _compare(
    request: Request, model_name: str | None, since: str | None, version: int | None
) -> LiveComparison:
    # An empty `since` is no limit, as a missing one is.
    return get_client(request).compare(model_name, since=since or None, version=version)


@router.get("/compare", summary="Production against the challenger on live traffic")
def compare(
    request: Request,
    model_name: ModelQuery = None,
    since: SinceQuery = None,
    version: VersionQuery = None,
) -> Any:
    """Per version traffic, errors, p50/p99 latency; agreement, score distance and the
    labelled gain's bootstrap interval (paired on shadow traffic, unpaired on canary)."""
    return JSONResponse(_compare(request, model_name, since, version).to_dict())


@router.get("/compare/report", response_class=HTMLResponse, summary="Live comparison report")
def compare_report(
    request: Request,
    model_name: ModelQuery = None,
    since: SinceQuery = None,
    version: VersionQuery = None,
) -> Any:
    """The live comparison as the self-contained HTML report `compare --live --html` writes."""
    from pgmlops.services.monitoring.report.live import render_live_html

    return HTMLResponse(render_live_html(_compare(request, model_name, since, version).to_dict()))
