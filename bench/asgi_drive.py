"""Requests driven through an ASGI app in-process (no sockets), timed in CPU per request."""

from __future__ import annotations

import statistics
import time
from typing import Any

import orjson

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


def scope(body: bytes) -> dict[str, Any]:
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


async def drive(app: Any, n: int, chunk: int = 500) -> dict[str, float]:
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
            await app(scope(BODY), receive, send)
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
