"""Live traffic beside production: canary answers on the request path, shadow scoring off it.

A canary row is answered by the challenger (a challenger that fails answers from production
instead); a shadow job is scored by one background thread per process, through a bounded
queue, so a slow, failing or missing challenger never delays, changes or fails an answer.
Every problem is counted (the `count` callback feeds /metrics).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgmlops.config import ServingConfig
from pgmlops.domain.live.modes import canary_rows
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.load import LiveModel, LoadedModel
from pgmlops.services.serving.prediction import predict_records
from pgmlops.services.serving.prediction_log.contract import PredictionLog

log = logging.getLogger(__name__)

PRODUCTION_ROLE = "production"
# count(model, version, role, what, n): what is "answered", "scored" or a problem's name.
Count = Callable[[str, int, str, str, int], None]
# The request's records validated by another version's record model (raises if refused).
Revalidate = Callable[[LoadedModel], list[dict[str, Any]]]
# Shadow jobs scored together in one call when they share production's features.
_SHADOW_BATCH = 256
# How long the shadow thread lets jobs gather after the first one arrives: it answers
# nobody, and one vectorised call for the requests of 50 ms costs a fraction of one call per
# request (and wakes the thread, which competes with the event loop for the GIL, once).
# At 10 ms a worker of a loaded machine (~170 requests/s) scored 1-2 rows per call and its
# shadow thread used ~105 CPU µs a request (bench/shadow_threads.py): a call's fixed cost
# dominates (bench/shadow_batch_cost.py: 176 µs for one row, 26 µs a row in calls of 100).
_SHADOW_LINGER_S = 0.05


def mark(items: list[dict[str, Any]], records: list[PredictionRecord], role: str | None) -> None:
    """Say in each answer who answered; the log keeps NULL for production (as before 0005)."""
    shown = role or PRODUCTION_ROLE
    for item in items:
        item["role"] = shown
    if role is not None:
        for r in records:
            r.role = role


def sticky_values(model: LoadedModel, live: LiveModel, rows: list[dict[str, Any]]) -> list[Any]:
    """Each row's sticky-key value: a feature, or the key column the request carried."""
    key = live.deployment.sticky_key
    field = key
    if key not in model.card.feature_schema.names and key == model.key_column:
        field = model.key_field
    return [row.get(field) for row in rows]  # type: ignore[arg-type]


@dataclass
class Answer:
    """A request's answers in order, its log records, and who answered how many rows."""

    items: list[dict[str, Any]]
    records: list[PredictionRecord]
    answered_by: list[tuple[LoadedModel, list[dict[str, Any]]]]


def answer_canary(
    model: LoadedModel,
    live: LiveModel,
    rows: list[dict[str, Any]],
    serving: ServingConfig,
    *,
    request_id: str | None,
    started: float,
    revalidate: Revalidate,
    count: Count,
) -> Answer:
    """Answer each row from the challenger or production, as the canary's share says."""
    n = len(rows)
    keys = sticky_values(model, live, rows) if live.deployment.sticky_key else None
    chosen = canary_rows(model.name, live.deployment, keys, n)
    picked = [k for k in range(n) if chosen[k]]
    if not picked:
        return _production(model, rows, serving, request_id, started)
    challenger = live.model
    try:
        theirs = rows if live.same_features else revalidate(challenger)
        c_items, c_records = predict_records(
            challenger, [theirs[k] for k in picked], serving, request_id=request_id, started=started
        )
    except Exception as exc:  # the challenger's failure is never the client's
        log.warning("canary %s v%d failed, production answers: %s", model.name, live.version, exc)
        count(model.name, live.version, "canary", "failed", len(picked))
        return _production(model, rows, serving, request_id, started)
    mark(c_items, c_records, "canary")
    rest = [k for k in range(n) if not chosen[k]]
    p_items: list[dict[str, Any]] = []
    p_records: list[PredictionRecord] = []
    if rest:
        p_items, p_records = predict_records(
            model, [rows[k] for k in rest], serving, request_id=request_id, started=started
        )
        mark(p_items, p_records, None)
    items: list[dict[str, Any]] = [{}] * n
    records: list[PredictionRecord] = [None] * n  # type: ignore[list-item]
    for src_items, src_records, where in ((c_items, c_records, picked), (p_items, p_records, rest)):
        for j, k in enumerate(where):
            items[k] = src_items[j]
            records[k] = src_records[j]
    return Answer(items, records, [(challenger, c_items), (model, p_items)])


def _production(
    model: LoadedModel,
    rows: list[dict[str, Any]],
    serving: ServingConfig,
    request_id: str | None,
    started: float,
) -> Answer:
    items, records = predict_records(model, rows, serving, request_id=request_id, started=started)
    mark(items, records, None)
    return Answer(items, records, [(model, items)])


@dataclass
class ShadowJob:
    """One request's records for the challenger to score after production answered."""

    live: LiveModel
    # Production's validated rows (same features), else None and `revalidate` is used.
    rows: list[dict[str, Any]] | None
    revalidate: Revalidate | None
    paired: list[PredictionRecord]
    request_id: str | None


class ShadowScorer:
    """One daemon thread per serving process; offer() never blocks or raises."""

    def __init__(
        self, serving: ServingConfig, writer: PredictionLog, count: Count, *, max_jobs: int
    ) -> None:
        self.serving = serving
        self.writer = writer
        self.count = count
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=max_jobs)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        # A daemon thread: if the queue stays full the process ends it (shadow rows only).
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)

    def depth(self) -> int:
        return self._queue.qsize()

    def offer(self, job: ShadowJob) -> None:
        """Queue a job; a full queue drops it (counted), production has answered already."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.count(job.live.model.name, job.live.version, "shadow", "dropped", len(job.paired))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            if self._queue.qsize() < _SHADOW_BATCH - 1:  # a full batch waits for nothing
                time.sleep(_SHADOW_LINGER_S)
            # Drain what else is waiting: jobs with production's features score in one call.
            while len(jobs) < _SHADOW_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._score_all(jobs)
                    return
                jobs.append(more)
            try:
                self._score_all(jobs)
            except Exception:  # the thread must outlive any one job
                log.exception("shadow scoring failed")

    def _score_all(self, jobs: list[ShadowJob]) -> None:
        together: dict[int, list[ShadowJob]] = {}
        for job in jobs:
            if job.rows is not None:
                together.setdefault(id(job.live), []).append(job)
            else:
                self._score([job])
        for group in together.values():
            self._score(group)

    def _score(self, jobs: list[ShadowJob]) -> None:
        live = jobs[0].live
        name, version = live.model.name, live.version
        paired = [r for job in jobs for r in job.paired]
        started = time.perf_counter()
        try:
            rows: list[dict[str, Any]] = []
            for job in jobs:
                got = job.rows if job.rows is not None else job.revalidate(live.model)  # type: ignore[misc]
                if len(got) != len(job.paired):
                    raise ValueError("the challenger read a different number of records")
                rows.extend(got)
            _, records = predict_records(
                live.model, rows, self.serving, request_id=jobs[0].request_id, started=started
            )
        except Exception as exc:  # a failing challenger is counted, never raised
            log.warning("shadow %s v%d failed: %s: %s", name, version, type(exc).__name__, exc)
            self.count(name, version, "shadow", "failed", len(paired))
            return
        for r, p in zip(records, paired, strict=True):
            r.role = "shadow"
            r.paired_id = p.id
            r.entity_key = p.entity_key
            r.request_id = p.request_id
        if not self.serving.log_predictions:
            self.count(name, version, "shadow", "scored", len(records))
            return
        # Production's rows come first: shadow rows wait while the log queue is half full.
        if self.writer.depth + len(records) > self.writer.max_queue // 2:
            self.count(name, version, "shadow", "log_busy", len(records))
            return
        self.writer.submit(records)
        self.count(name, version, "shadow", "scored", len(records))
