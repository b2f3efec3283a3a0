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
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from asgi_drive import BODY, drive
from predict_ladder import ladder

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


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
        await drive(app, 1000)  # warm up
        app.state.writer.flush(30)
        if profile:
            profile.enable()
        out = await drive(app, n)
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
    from pgmlops.domain.registry.records import PredictionRecord
    from pgmlops.services.inference import onnx_row_feeds
    from pgmlops.services.serving.prediction import predict_records, unknown_categories
    from pgmlops.services.serving.prediction_log import PredictionLogWriter

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


def measure_bare(n: int) -> dict:
    import bare_app

    return asyncio.run(drive(bare_app.app, n))


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
