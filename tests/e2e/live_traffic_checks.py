"""Canary checks against real servers: one connection per worker, shares, a continuous client.

The kernel hands a listening socket's connections (not requests) to a server's workers, so a
keep-alive connection stays with one worker: asking /health on it says which one, and what a
worker answers can be counted worker by worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx


def worker_connections(url: str, workers: int, timeout: float = 30.0) -> dict[int, httpx.Client]:
    """One keep-alive connection to each of a server's workers, by worker pid."""
    found: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + timeout
    while len(found) < workers:
        if time.monotonic() > deadline:
            for client in found.values():
                client.close()
            raise AssertionError(f"reached {len(found)} of {workers} workers in {timeout} s")
        client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1))
        pid = client.get("/health").json()["worker_pid"]
        if pid in found:
            client.close()
        else:
            found[pid] = client
    return found


def challenger_mode(client: httpx.Client) -> str | None:
    """What the worker behind this connection serves beside production: 'canary 20%', ..."""
    challenger = client.get("/health").json()["model"]["challenger"]
    return challenger["mode"] if challenger else None


def wait_for_mode(clients: list[httpx.Client], mode: str | None, timeout: float) -> float:
    """Seconds until every worker reports `mode`; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(challenger_mode(c) == mode for c in clients):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not every worker serves {mode!r} within {timeout} s")


def answered_by(client: httpx.Client, records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(role, version) of each record's answer, the records sent as one list."""
    resp = client.post("/predict", json=records)
    assert resp.status_code == 200, resp.text
    return [(item["role"], item["version"]) for item in resp.json()["predictions"]]


def within_binomial(k: int, n: int, p: float, z: float = 4.5) -> bool:
    """k successes of n at probability p, within z standard deviations (4.5: 1 in 150,000)."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


class ContinuousClient:
    """Threads posting single records without pause; keeps every answer and every failure."""

    def __init__(self, make_clients: Callable[[], list[httpx.Client]], records: list[dict]):
        self.records = records
        self.failures: list[str] = []
        self.answers: Counter[tuple[str, int]] = Counter()
        self._clients = make_clients()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._post, args=(c,), daemon=True) for c in self._clients
        ]

    def _post(self, client: httpx.Client) -> None:
        i = 0
        while not self._stop.is_set():
            record = self.records[i % len(self.records)]
            i += 1
            try:
                resp = client.post("/predict", json=record)
            except httpx.HTTPError as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if resp.status_code == 200:
                    body = resp.json()
                    self.answers[(body["role"], body["version"])] += 1
                else:
                    self.failures.append(f"{resp.status_code} {resp.text[:200]}")
            time.sleep(0.01)  # a steady client, not a load test: the machine is shared

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(self.answers.values()) + len(self.failures)

    def __enter__(self) -> ContinuousClient:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        for c in self._clients:
            c.close()
