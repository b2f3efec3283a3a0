"""Request dependencies: the process context, the model holder and the admin key check."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request

from pgmlops.errors import PgmlopsError
from pgmlops.services.context import Context

if TYPE_CHECKING:
    from pgmlops.client import Client


class AuthError(PgmlopsError):
    """The request lacks the right API key (401), or no key is configured (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def get_ctx(request: Request) -> Context:
    return request.app.state.ctx


def get_client(request: Request) -> Client:
    """The Python API's client on this server's context (made once per app)."""
    client = getattr(request.app.state, "client", None)
    if client is None:
        from pgmlops.client import Client

        client = request.app.state.client = Client(context=get_ctx(request))
    return client


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def check_key(request: Request, configured: str | None, what: str, env: str) -> None:
    """Compare the presented key in constant time; refuse when none is configured."""
    if not configured:
        raise AuthError(
            f"{what} are disabled: set {env} (or {env.lower()[8:]} in pgmlops.yaml)", 403
        )
    presented = _presented_key(request)
    if presented is None or not hmac.compare_digest(presented.encode(), configured.encode()):
        raise AuthError(f"{what} need a valid API key in X-API-Key or Authorization: Bearer", 401)


def sees_details(request: Request) -> bool:
    """Whether this client may see paths, the database location and who did what.

    The admin key holder may; anyone may when `serving.public_details` is on. A wrong or
    missing key is not refused here: the client gets the anonymous view.
    """
    settings = get_ctx(request).settings
    if settings.serving.public_details:
        return True
    key = settings.api_key
    presented = _presented_key(request)
    if key is None or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), key.get_secret_value().encode())


def require_admin(request: Request) -> None:
    """Dependency for /reload, /promote, /rollback, /retrain and /retrain/status."""
    key = get_ctx(request).settings.api_key
    check_key(request, key.get_secret_value() if key else None, "admin routes", "PGMLOPS_API_KEY")
