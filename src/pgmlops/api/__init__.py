"""HTTP interface: `uvicorn pgmlops.api:app` or `pgmlops serve`."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # `pgmlops.api:app` builds the app on first access, never at import time.
    if name == "app":
        from pgmlops.api.app import create_app

        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
