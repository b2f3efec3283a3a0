"""GET /docs and /redoc from files shipped in a Python package: they render without internet."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

# Swagger UI 5 and ReDoc 2 bundles (and a favicon) as fastapi-offline ships them; FastAPI's
# defaults load these from a CDN, which leaves both pages blank on an offline machine.
STATIC_URL = "/static-docs"
_STATIC_DIR = files("fastapi_offline") / "static"

router = APIRouter()


def _root(request: Request) -> str:
    return str(request.scope.get("root_path") or "")


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the live OpenAPI document."""
    app = request.app
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse, include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    """The page Swagger UI's OAuth2 flow returns to (inline script, nothing fetched)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for the live OpenAPI document, without Google Fonts."""
    app = request.app
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Mount the bundled files and the two pages (the app is built with docs_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=str(_STATIC_DIR)), name="static-docs")
    app.include_router(router)
