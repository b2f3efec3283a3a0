"""One table from error class to HTTP status; every error answers JSON with a one-line reason."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from pgmlops import errors
from pgmlops.api.deps import AuthError, sees_details
from pgmlops.domain.redact import public_text

log = logging.getLogger(__name__)

STATUS: dict[type[errors.PgmlopsError], int] = {
    errors.ConfigError: 400,
    errors.DataError: 422,
    errors.ValidationError: 422,
    errors.TrainingError: 422,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.PromotionRefused: 409,
    errors.StoreError: 503,
    errors.SchemaOutdatedError: 503,
    errors.ArtifactError: 503,
    errors.SigningKeyError: 503,
}


class HTTPProblem(Exception):
    """An HTTP-level refusal raised by routes (413, 415, 503 not-ready...)."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def status_for(exc: errors.PgmlopsError) -> int:
    if isinstance(exc, AuthError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_status(exc: BaseException) -> int:
    """The HTTP status an exception raised by a route is answered with."""
    if isinstance(exc, HTTPProblem):
        return exc.status
    if isinstance(exc, errors.PgmlopsError):
        return status_for(exc)
    return 500


def pydantic_errors(raw: list[dict[str, Any]], prefix: tuple = ()) -> tuple[str, list[dict]]:
    """Pydantic's errors as (one line naming the first field, JSON-safe list)."""
    detail = []
    for e in raw:
        loc = [*prefix, *e.get("loc", ())]
        detail.append({"loc": loc, "msg": e.get("msg", ""), "type": e.get("type", "")})
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
    return f"{where}: {first['msg']}{more}", detail


def _shown(request: Request, public: str | None, message: str) -> str:
    """The message, or for an anonymous client its version without locations."""
    if sees_details(request):
        return message
    return public or public_text(message)


def install(app: FastAPI) -> None:
    """Register the exception handlers."""

    @app.exception_handler(errors.PgmlopsError)
    async def _ours(request: Request, exc: errors.PgmlopsError) -> Response:
        body: dict[str, Any] = {"error": _shown(request, exc.public, str(exc))}
        if isinstance(exc, errors.ValidationError) and exc.errors:
            body["detail"] = exc.errors
        if isinstance(exc, errors.PromotionRefused):
            body["decision"] = exc.decision.to_dict()
        return json_response(status_for(exc), body)

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> Response:
        body = {"error": _shown(request, None, exc.message), **exc.extra}
        return json_response(exc.status, body, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        message, detail = pydantic_errors(list(exc.errors()))
        return json_response(422, {"error": message, "detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return json_response(exc.status_code, {"error": str(exc.detail)})

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> Response:
        # The client hung up mid-body: not our error. Nobody reads this answer; /metrics
        # counts it as 499 (nginx's "client closed request"), not as a 500 with a traceback.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response(500, {"error": f"internal error: {type(exc).__name__}"})
