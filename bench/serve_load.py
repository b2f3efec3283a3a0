"""serve_bench.py's load: wrk at full and fixed rate, an open-loop client, a batch, log rows."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import time
from typing import Any

import httpx
import orjson

from serve_machine import BENCH, say, wait_quiet
from serve_targets import Target

LUA = BENCH / "wrk_predict.lua"
LUA_RATE = BENCH / "wrk_rate.lua"

# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def wrk(target: Target, duration: float, connections: int) -> dict[str, Any]:
    env = {**os.environ, "WRK_BODY": target.body.decode()}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        target.url + target.path,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}\n{out.stdout}")
    return parse_wrk(out.stdout)


def parse_wrk(text: str) -> dict[str, Any]:
    res: dict[str, Any] = {"raw": text}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        res[f"p{pct}_ms"] = round(_ms(value, unit), 3)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


def wrk_rate(target: Target, rate: float, duration: float, connections: int) -> dict[str, Any]:
    """wrk at a constant total rate (bench/wrk_rate.lua): C-timed latency from the send."""
    env = {**os.environ, "WRK_BODY": target.body.decode(), "WRK_RATE": f"{rate:.3f}"}
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
        "-s", str(LUA_RATE), target.url + target.path,
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}\n{out.stdout}")
    r = parse_wrk(out.stdout)
    r["target_rps"] = round(rate, 1)
    return r


class Quietness:
    """Repeat a measurement that other processes disturbed, within a time budget.

    A run counts when processes other than the server, the load generator and PostgreSQL used
    at most `max_other` cores during it; otherwise it is repeated (after waiting up to 60 s
    for a quiet moment), at most `attempts` times, and the quietest attempt is kept.
    """

    def __init__(self, max_other: float, attempts: int, budget_s: float) -> None:
        self.max_other = max_other
        self.attempts = attempts
        self.deadline = time.monotonic() + budget_s
        self.repeated = 0
        self.noisy: list[str] = []

    def run(self, fn: Any, what: str) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        for attempt in range(1, self.attempts + 1):
            r = fn()
            r["attempts"] = attempt
            if best is None or r["other_cores"] < best["other_cores"]:
                best = r
            if r["other_cores"] <= self.max_other:
                break
            if attempt == self.attempts or time.monotonic() > self.deadline:
                self.noisy.append(f"{what} (other {best['other_cores']} cores)")
                break
            self.repeated += 1
            say(f"{what}: other processes used {r['other_cores']} cores; repeating")
            wait_quiet(60, self.max_other)
        assert best is not None
        return best


# -- prediction-log rows ----------------------------------------------------------------------


class RowCounter:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        from pgmlops.store.db import normalize_url

        self.engine = create_engine(normalize_url(url))

    def count(self) -> int:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        deadline = time.monotonic() + 120
        while True:  # ride out a PostgreSQL restart by someone else on a shared machine
            try:
                with self.engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def stable(self, quiet_s: float = 1.5, limit_s: float = 60) -> int:
        """The row count once it has not moved for quiet_s (the writer flushes every 0.5 s)."""
        deadline = time.monotonic() + limit_s
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return last

    def close(self) -> None:
        self.engine.dispose()


# -- open-loop load at a fixed rate -----------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _open_loop(
    port: int, request: bytes, rate: float, duration: float, connections: int
) -> dict[str, Any]:
    period = connections / rate
    start = time.perf_counter() + 0.2
    end = start + duration
    from_schedule: list[float] = []
    from_send: list[float] = []
    late_sends: list[float] = []
    errors = 0

    async def conn(i: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        k = 0
        offset = i * period / connections
        while True:
            due = start + offset + k * period
            if due >= end:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            sent = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            done = time.perf_counter()
            from_schedule.append(done - due)
            from_send.append(done - sent)
            late_sends.append(sent - due)
            if status != 200:
                errors += 1
            k += 1
        writer.close()

    await asyncio.gather(*(conn(i) for i in range(connections)))
    elapsed = time.perf_counter() - start

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0, 3)

    return {
        "target_rps": round(rate, 1),
        "achieved_rps": round(len(from_send) / elapsed, 1),
        "requests": len(from_send),
        "errors": errors,
        "p50_ms": pct(from_send, 0.50),
        "p99_ms": pct(from_send, 0.99),
        "p999_ms": pct(from_send, 0.999),
        "p50_sched_ms": pct(from_schedule, 0.50),
        "p99_sched_ms": pct(from_schedule, 0.99),
        "p99_send_lateness_ms": pct(late_sends, 0.99),
    }


def open_loop(target: Target, rate: float, duration: float, connections: int) -> dict[str, Any]:
    request = (
        f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(target.body)}\r\n\r\n"
    ).encode() + target.body
    coro = _open_loop(target.port, request, rate, duration, connections)
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- 10,000-record batch ------------------------------------------------------------------------


def batch(target: Target, records: list[dict], repeats: int, counter: RowCounter) -> dict[str, Any]:
    body = orjson.dumps(records)
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(repeats + 1):
            counter.stable()  # the previous batch's log rows are written: time one batch alone
            t0 = time.perf_counter()
            r = client.post(
                target.url + "/predict", content=body, headers={"Content-Type": "application/json"}
            )
            data = orjson.loads(r.content)
            wall = time.perf_counter() - t0
            if r.status_code != 200 or len(data["predictions"]) != len(records):
                raise RuntimeError(f"batch answered {r.status_code}: {r.text[:300]}")
            if i:  # the first one warms up
                times.append(wall * 1000.0)
    return {
        "records": len(records),
        "body_bytes": len(body),
        "times_ms": [round(t, 1) for t in times],
        "median_ms": round(statistics.median(times), 1),
    }
