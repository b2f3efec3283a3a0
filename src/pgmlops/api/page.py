"""GET /: a self-contained page (no CDN) — a form built from the feature schema, the card.

The page is a shipped file (api/static/index.html: inline CSS, SVG and script), read once;
its favicon is a shipped SVG too, so a browser asks nothing of the internet.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import HTMLResponse, Response

router = APIRouter()


@cache
def _static(name: str) -> bytes:
    return files("pgmlops.api").joinpath("static", name).read_bytes()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_static("index.html"))


@router.get("/favicon.svg", include_in_schema=False)
@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    # Browsers ask for /favicon.ico whatever the page links; an SVG answers both.
    return Response(
        _static("favicon.svg"),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )
