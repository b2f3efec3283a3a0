"""The ladder of bench/profile_predict.py: the shipped app taken apart one piece at a time."""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

import orjson

from asgi_drive import drive


class _NoMetric:
    def labels(self, *a: Any) -> _NoMetric:
        return self

    def inc(self, *a: Any) -> None:
        pass

    def observe(self, *a: Any) -> None:
        pass


def _lean_predict_records(model, rows, serving, *, request_id, started):
    """predict_records minus its bookkeeping: what the bare app does, shaped the same way."""
    label, p = model.engine.predict_one(rows[0])
    item = {"model": model.name, "version": model.version, "prediction": label}
    item["probability"] = p
    return [item], []


async def _body_json(request: Any, limit: int) -> Any:
    return orjson.loads(await request.body())


def ladder(n: int, chunk: int = 250, rounds: int = 12) -> list[tuple[str, float, float]]:
    """Thread CPU per request while taking the shipped app apart one piece at a time.

    Every variant is built once, then all are measured in interleaved rounds; each figure is
    the minimum over rounds of the chunk median (noise only ever adds CPU time).
    """
    import contextlib

    from fastapi import FastAPI

    import bare_app
    from pgmlops.api import predict_routes
    from pgmlops.api.app import create_app
    from pgmlops.api.observability import RequestContextMiddleware
    from pgmlops.config import load_settings

    def shipped(logging_on: bool) -> Any:
        settings = load_settings()
        settings.serving.log_predictions = logging_on
        settings.serving.spill_dir = os.environ.get("TMPDIR", "/tmp") + "/pgmlops-profile-spill"
        return create_app(settings)

    def without_middleware(app: Any) -> Any:
        app.user_middleware = [
            m for m in app.user_middleware if m.cls is not RequestContextMiddleware
        ]
        app.middleware_stack = None
        return app

    def without_metrics(app: Any) -> Any:
        m = app.state.metrics
        for name in ("requests", "latency", "predictions", "log_records"):
            setattr(m, name, _NoMetric())
        return app

    def only_predict_route(app: Any) -> Any:
        small = FastAPI()
        small.state = app.state
        small.include_router(predict_routes.router)
        small._lifespan_of = app  # type: ignore[attr-defined]
        return small

    variants: list[tuple[str, Any, list]] = []
    a0 = shipped(True)
    variants.append(("shipped, logging on", a0, []))
    a1 = shipped(False)
    variants.append(("logging off", a1, []))
    a2 = without_middleware(shipped(False))
    variants.append(("  − RequestContextMiddleware (request id, 2 metrics)", a2, []))
    a3 = without_metrics(without_middleware(shipped(False)))
    variants.append(("  − Prometheus metrics in the route", a3, []))
    a4 = without_metrics(without_middleware(shipped(False)))
    variants.append(
        ("  − read_json streaming (→ await request.body())", a4,
         [(predict_routes, "read_json", _body_json)])
    )  # fmt: skip
    a5 = without_metrics(without_middleware(shipped(False)))
    variants.append(
        ("  − predict_records bookkeeping (ids, times, risk, log record)", a5,
         [(predict_routes, "read_json", _body_json),
          (predict_routes, "predict_records", _lean_predict_records)])
    )  # fmt: skip
    a6 = only_predict_route(without_metrics(without_middleware(shipped(False))))
    variants.append(
        ("  − the other routers and exception handlers (FastAPI with /predict only)", a6,
         [(predict_routes, "read_json", _body_json),
          (predict_routes, "predict_records", _lean_predict_records)])
    )  # fmt: skip
    variants.append(("bare app (bench/bare_app.py)", bare_app.app, []))

    async def run_all() -> list[tuple[str, float, float]]:
        async with contextlib.AsyncExitStack() as stack:
            for _name, app, _p in variants:
                target = getattr(app, "_lifespan_of", app)
                if hasattr(target.state, "holder"):
                    await stack.enter_async_context(target.router.lifespan_context(target))
            best: dict[str, list[float]] = {name: [] for name, _a, _p in variants}
            for _ in range(rounds):
                for name, app, patch in variants:
                    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _v in patch]
                    for mod, attr, value in patch:
                        setattr(mod, attr, value)
                    try:
                        await drive(app, chunk, chunk=chunk)
                        r = await drive(app, n // rounds, chunk=chunk)
                    finally:
                        for mod, attr, value in saved:
                            setattr(mod, attr, value)
                    best[name].append(r["thread_cpu_us"])
                    if hasattr(getattr(app, "state", None), "writer"):
                        app.state.writer.flush(30)
            return [(name, min(v), statistics.median(v)) for name, v in best.items()]

    return asyncio.run(run_all())
