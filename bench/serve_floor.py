"""serve_bench.py's floor: in-process predict time of one record, by three paths."""

from __future__ import annotations

import statistics
import time
from typing import Any

import orjson

from serve_setup import Setup

# -- the floor: in-process predict time -------------------------------------------------------


def _median_us(fn, calls: int, warmup: int = 200, chunk: int = 50) -> tuple[float, float]:
    """(wall, thread CPU) µs per call: medians over chunks of `chunk` calls."""
    for _ in range(warmup):
        fn()
    chunk = max(1, min(chunk, calls // 20))
    wall, cpu = [], []
    clock, tclock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(max(1, calls // chunk)):
        t0, c0 = clock(), tclock()
        for _ in range(chunk):
            fn()
        wall.append((clock() - t0) / chunk)
        cpu.append((tclock() - c0) / chunk)
    return statistics.median(wall) / 1000.0, statistics.median(cpu) / 1000.0


def _one_thread(fn: Any, *args: Any) -> Any:
    """fn(*args) with OpenMP/BLAS pools limited to one thread (set once: it costs ms)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def floor(setup: Setup, scale: float) -> dict[str, float]:
    import pandas as pd

    from pgmlops.domain.schema import coerce_features
    from pgmlops.services.inference import onnx_row_feeds
    from pgmlops.services.promotion import version_engine
    from pgmlops.services.serving.load import load_version
    from pgmlops.services.serving.prediction import predict_records

    ctx, version = setup.ctx, setup.model_version
    serving = ctx.settings.serving
    loaded = load_version(ctx, version)
    if loaded.engine.name != "onnx":
        raise RuntimeError(f"served engine is {loaded.engine.name}, expected onnx")
    payload = orjson.loads(orjson.dumps(setup.records[0]))  # exactly as a request body parses
    n = lambda k: max(200, int(k * scale))  # noqa: E731

    def server_path() -> None:
        rows = [loaded.single.validate_python(payload).__dict__]
        predict_records(loaded, rows, serving, request_id=None, started=time.perf_counter())

    row = loaded.single.validate_python(payload).__dict__
    schema = loaded.card.feature_schema
    session = loaded.engine.session
    outputs = [o.name for o in session.get_outputs()]
    out_name = "probabilities" if "probabilities" in outputs else outputs[-1]
    feeds = onnx_row_feeds(schema, row)
    pipe_engine = version_engine(ctx, version)
    frame = coerce_features(pd.DataFrame([setup.records[0]]), schema)
    pipeline = pipe_engine.pipeline

    result = {
        "server_path_us": _median_us(server_path, n(20_000)),
        "validate_us": _median_us(lambda: loaded.single.validate_python(payload), n(20_000)),
        "predict_records_us": _median_us(
            lambda: predict_records(
                loaded, [row], serving, request_id=None, started=time.perf_counter()
            ),
            n(20_000),
        ),
        "engine_predict_one_us": _median_us(lambda: loaded.engine.predict_one(row), n(20_000)),
        "onnx_session_run_us": _median_us(lambda: session.run([out_name], feeds), n(50_000)),
        "sklearn_predict_proba_us": _median_us(lambda: pipeline.predict_proba(frame), n(2_000), 20),
        "sklearn_predict_proba_1t_us": _one_thread(
            _median_us, lambda: pipeline.predict_proba(frame), n(2_000), 20
        ),
        "pipeline_engine_predict_one_us": _median_us(
            lambda: pipe_engine.predict_one(row), n(1_000), 20
        ),
    }
    out: dict[str, Any] = {k: round(v[0], 2) for k, v in result.items()}
    out.update({k.replace("_us", "_cpu_us"): round(v[1], 2) for k, v in result.items()})
    onnx_p = float(loaded.engine.predict_one(row)[1])
    skl_p = float(pipeline.predict_proba(frame)[0, 1])
    out["onnx_vs_sklearn_abs_diff"] = abs(onnx_p - skl_p)
    return out
