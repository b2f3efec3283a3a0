"""Where a single-record POST /predict spends its CPU, in-process, without sockets.

Run against a registry that has a production version with an ONNX copy (the same variables
as the server: PGMLOPS_DATABASE_URL, PGMLOPS_ARTIFACT_ROOT, PGMLOPS_MODEL_NAME)::

    .venv/bin/python bench/profile_predict.py [--requests 20000] [--cprofile 30]

It drives the real ASGI app (`create_app`, lifespan started: model holder, prediction-log
writer, alias watcher) with synthetic requests -- no uvicorn, no network -- and reports CPU
time per request (this thread, and the whole process including the writer thread) for:
the app as shipped with logging on; logging off; the bare FastAPI + pydantic + onnxruntime app
(bench/bare_app.py); and what uvicorn's access-log line would add outside the app (off unless
``serving.access_log`` is set). CPU time, not wall time, so other work on a shared
machine disturbs it much less. ``--cprofile N`` prints the top N functions of the shipped app
by own time, in µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import logging
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

RECORD = {
    "CreditScore": 786,
    "Geography": "Germany",
    "Gender": "Male",
    "Age": 31,
    "Tenure": 8,
    "Balance": 147275.4,
    "NumOfProducts": 1,
    "HasCrCard": 1,
    "IsActiveMember": 0,
    "EstimatedSalary": 64050.2,
}
BODY = orjson.dumps(RECORD)


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _drive(app: Any, n: int, chunk: int = 500) -> dict[str, float]:
    """n sequential requests; per-request medians over chunks of thread and process CPU."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    thread_us, proc_us, wall_us = [], [], []
    done = 0
    while done < n:
        t0, p0, w0 = time.thread_time_ns(), time.process_time_ns(), time.perf_counter_ns()
        for _ in range(chunk):
            await app(_scope(BODY), receive, send)
        thread_us.append((time.thread_time_ns() - t0) / chunk / 1000)
        proc_us.append((time.process_time_ns() - p0) / chunk / 1000)
        wall_us.append((time.perf_counter_ns() - w0) / chunk / 1000)
        done += chunk
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} non-200 answers, e.g. {bad[0]}")
    return {
        "thread_cpu_us": round(statistics.median(thread_us), 1),
        "process_cpu_us": round(statistics.median(proc_us), 1),
        "wall_us": round(statistics.median(wall_us), 1),
    }


async def _with_lifespan(app: Any, fn: Any) -> Any:
    async with app.router.lifespan_context(app):
        return await fn()


def measure_pgmlops(n: int, *, logging_on: bool, profile: cProfile.Profile | None = None) -> dict:
    from pgmlops.api.app import create_app
    from pgmlops.config import load_settings

    settings = load_settings()
    settings.serving.log_predictions = logging_on
    settings.serving.spill_dir = os.environ.get("TMPDIR", "/tmp") + "/pgmlops-profile-spill"
    app = create_app(settings)

    async def run() -> dict:
        await _drive(app, 1000)  # warm up
        app.state.writer.flush(30)
        if profile:
            profile.enable()
        out = await _drive(app, n)
        if profile:
            profile.disable()
        t0 = time.process_time_ns()
        app.state.writer.flush(60)  # the writer's backlog is part of the cost per request
        out["writer_backlog_cpu_us"] = round((time.process_time_ns() - t0) / n / 1000, 1)
        out["logged"] = app.state.writer.counts["written"]
        return out

    return asyncio.run(_with_lifespan(app, run))


def _best_us(fn: Any, n: int = 2000, repeats: int = 7) -> float:
    """timeit-style: the best of `repeats` batch means of thread CPU time (noise only adds)."""
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time_ns() - t0) / n / 1000)
    return round(best, 2)


def components() -> list[tuple[str, float]]:
    """The pieces of the request path, each timed alone with the app's own objects."""
    import uuid
    from collections import Counter
    from datetime import UTC, datetime

    from starlette.responses import Response

    from pgmlops.api.app import create_app
    from pgmlops.api.observability import request_id_var
    from pgmlops.config import load_settings
    from pgmlops.domain.decision import scale_one
    from pgmlops.domain.records import PredictionRecord
    from pgmlops.services.inference import onnx_row_feeds
    from pgmlops.services.prediction import predict_records, unknown_categories
    from pgmlops.services.prediction_log import PredictionLogWriter

    settings = load_settings()
    app = create_app(settings)
    holder, metrics, serving = app.state.holder, app.state.metrics, settings.serving
    model = holder.refresh()
    engine = model.engine
    payload = orjson.loads(BODY)
    row = model.single.validate_python(payload).__dict__
    feeds = onnx_row_feeds(model.card.feature_schema, row)
    items, records = predict_records(model, [row], serving, request_id=None, started=0.0)
    writer = PredictionLogWriter(  # not started: submit() only, as on the request path
        app.state.writer.store,
        "/tmp",
        max_queue=10_000_000,
        on_count=lambda event, n: metrics.log_records.labels(event).inc(n),
    )

    def middleware_extras() -> None:
        rid = uuid.uuid4().hex
        token = request_id_var.set(rid)
        v = str(holder.current.version)
        metrics.requests.labels("/predict", "200", v).inc()
        metrics.latency.labels("/predict", v).observe(0.001)
        request_id_var.reset(token)

    def prediction_counter() -> None:
        counts = Counter(str(item["prediction"]) for item in items)
        for label, k in counts.items():
            metrics.predictions.labels(model.name, "1", label).inc(k)

    def record_bookkeeping() -> None:  # what predict_records adds around predict_one
        pid = str(uuid.uuid4())
        now = datetime.now(UTC)
        p = 0.3
        item = {"prediction_id": pid, "model": model.name, "version": 1, "prediction": "1"}
        item["probability"] = p
        conf, risk = scale_one(p, "binary", model.card.threshold, serving.risk_levels)
        item["confidence"], item["risk_level"] = conf, risk
        unknown_categories(model, row)
        PredictionRecord(
            id=pid, model_name=model.name, version=1, created_at=now, features=row,
            prediction="1", probability=p, confidence=0.4, output=None, latency_ms=0.5,
            request_id=None,
        )  # fmt: skip

    out_name = "probabilities"
    rows = [
        ("pydantic validation (TypeAdapter.validate_python + __dict__)",
         _best_us(lambda: model.single.validate_python(payload).__dict__)),
        ("onnx_row_feeds (10 one-element numpy arrays)",
         _best_us(lambda: onnx_row_feeds(model.card.feature_schema, row))),
        ("session.run alone (feeds prebuilt)",
         _best_us(lambda: engine.session.run([out_name], feeds))),
        ("OnnxEngine.predict_one (feeds + run + outputs)",
         _best_us(lambda: engine.predict_one(row))),
        ("predict_records, one row (predict_one + bookkeeping)",
         _best_us(lambda: predict_records(model, [row], serving, request_id=None, started=0.0))),
        ("  of which: uuid4, datetime.now, risk_level, unknown-category check, "
         "PredictionRecord", _best_us(record_bookkeeping)),
        ("  of which: uuid.uuid4() alone", _best_us(uuid.uuid4)),
        ("RequestContextMiddleware extras (uuid4 id, contextvar, 2 labels(): inc + observe)",
         _best_us(middleware_extras)),
        ("  of which: one Prometheus labels(...).inc()",
         _best_us(lambda: metrics.requests.labels("/predict", "200", "1").inc())),
        ("predictions Counter + labels().inc() in the route", _best_us(prediction_counter)),
        ("writer.submit([record]) (queue.put + counters + labels().inc())",
         _best_us(lambda: writer.submit(records), n=2000)),
        ("orjson.dumps(item) + Response(...)",
         _best_us(lambda: Response(orjson.dumps(items[0]), media_type="application/json"))),
    ]  # fmt: skip
    app.state.ctx.close()
    return rows


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
                        await _drive(app, chunk, chunk=chunk)
                        r = await _drive(app, n // rounds, chunk=chunk)
                    finally:
                        for mod, attr, value in saved:
                            setattr(mod, attr, value)
                    best[name].append(r["thread_cpu_us"])
                    if hasattr(getattr(app, "state", None), "writer"):
                        app.state.writer.flush(30)
            return [(name, min(v), statistics.median(v)) for name, v in best.items()]

    return asyncio.run(run_all())


def measure_bare(n: int) -> dict:
    import bare_app

    return asyncio.run(_drive(bare_app.app, n))


def measure_access_log(n: int) -> float:
    """CPU µs of the per-request access-log line uvicorn writes when uvicorn.access propagates."""
    from pgmlops.api.observability import JsonFormatter

    logger = logging.getLogger("bench.access")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    args = ("127.0.0.1:50000", "POST", "/predict", "1.1", 200)
    t0 = time.thread_time_ns()
    for _ in range(n):
        logger.info('%s - "%s %s HTTP/%s" %d', *args)
    return round((time.thread_time_ns() - t0) / n / 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--cprofile", type=int, default=0, help="print the top N functions")
    ap.add_argument("--ladder", action="store_true", help="take the app apart piece by piece")
    ap.add_argument(
        "--prometheus-multiproc",
        action="store_true",
        help="metrics in multiprocess mode, as `pgmlops serve --workers 2` runs them",
    )
    args = ap.parse_args()
    if args.prometheus_multiproc:
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pgmlops-profile-prom-")
    logging.disable(logging.INFO)  # the app's own INFO lines at start-up; not per request
    gc.collect()
    results = {
        "pgmlops, logging on": measure_pgmlops(args.requests, logging_on=True),
        "pgmlops, logging off": measure_pgmlops(args.requests, logging_on=False),
        "bare FastAPI + pydantic + onnxruntime": measure_bare(args.requests),
    }
    logging.disable(logging.NOTSET)
    access = measure_access_log(args.requests)
    print(
        "| app (in-process ASGI, no sockets) | event-loop thread CPU µs/req | process CPU µs/req "
        "| + writer backlog µs/req | wall µs/req |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['thread_cpu_us']} | {r['process_cpu_us']} | "
            f"{r.get('writer_backlog_cpu_us', '—')} | {r['wall_us']} |"
        )
    print(f"\nuvicorn access-log line through pgmlops' JSON formatter: {access} µs CPU per request")
    logging.disable(logging.INFO)
    comp = components()
    logging.disable(logging.NOTSET)
    print("\n| piece of the request path (best of 7 batch means, thread CPU) | µs |")
    print("| --- | ---: |")
    print(f"| uvicorn access-log line (JSON formatter) | {access} |")
    for name, us in comp:
        print(f"| {name} | {us} |")

    if args.ladder:
        logging.disable(logging.INFO)
        steps = ladder(args.requests)
        logging.disable(logging.NOTSET)
        print(
            "\n| variant (in-process, interleaved rounds) | thread CPU µs/req, min | median |"
            " saved vs previous |"
        )
        print("| --- | ---: | ---: | ---: |")
        prev = None
        for name, low, med in steps:
            saved = "" if prev is None else f"{prev - low:+.1f}"
            print(f"| {name} | {low:.1f} | {med:.1f} | {saved} |")
            prev = low
    if args.cprofile:
        logging.disable(logging.INFO)
        prof = cProfile.Profile()
        n = min(args.requests, 10_000)
        measure_pgmlops(n, logging_on=True, profile=prof)
        logging.disable(logging.NOTSET)
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        rows = []
        for func, (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append((tt / n * 1e6, ct / n * 1e6, nc / n, func))
        rows.sort(reverse=True)
        print(
            f"\ncProfile, shipped app with logging on, {n} requests (profiler overhead inflates "
            "small functions; use for ranking):"
        )
        print("| own µs/req | cumulative µs/req | calls/req | function |")
        print("| ---: | ---: | ---: | --- |")
        for own, cum, calls, (file, line, name) in rows[: args.cprofile]:
            short = "/".join(file.split("/")[-2:])
            print(f"| {own:.1f} | {cum:.1f} | {calls:.1f} | {name} ({short}:{line}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
