"""The writer thread's loop: queued requests into batches, delivered, then settled.

A batch is what is queued within `flush_seconds` of its first request, at least
`batch_size` rows when that many wait, and with a backlog everything queued up to
_CATCH_UP_ROWS (one COPY, one commit). Acknowledged requests are answered once their batch
is committed or spilled; rows of a dead serving process are claimed and counted here.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.prediction_log.delivery import Delivery, first_line
from pgmlops.store.prediction_log.ledger import SETTLED, SETTLED_BY_CHILD, Ledger, claim_dead

log = logging.getLogger("pgmlops.services.serving.prediction_log")
_CLAIM_EVERY_S = 10.0
# The largest batch a backlog is written in; batch_size is the smallest that waits no longer.
_CATCH_UP_ROWS = 20_000
Done = Callable[[str | None], None]


class Acked(list):  # type: ignore[type-arg]
    """A request's records, with the callback that answers it once they are safe."""

    __slots__ = ("done",)


class BatchLoop(Delivery):
    """The writer thread of PredictionLogWriter: the queue's other end."""

    acknowledged: bool
    flush_seconds: float
    _queue: queue.SimpleQueue[list[PredictionRecord]]
    _stop: threading.Event
    _deadline: float
    _pending: int
    _pending_lock: threading.Lock
    _ledger: Ledger | None
    _ledger_takes: bool
    _batch: list[PredictionRecord]
    _acks: list[Acked]
    _held: bool
    _next_claim: float

    def _settled(self, n: int) -> None:
        if self._ledger is not None:
            self._ledger.add(SETTLED if self._ledger_takes else SETTLED_BY_CHILD, n)

    def _claim_dead_ledgers(self) -> None:
        """Count as lost the rows that serving processes now dead held (kill -9, OOM)."""
        for name, unsettled in claim_dead(self.spill.dir):
            if unsettled:
                self._count("lost", unsettled)
                self._count("lost_dead_worker", unsettled)
                self._lost_logged += unsettled  # said here, not as a full queue
                log.error(
                    "prediction log: %d rows lost: a serving process died holding them (%s); "
                    "counted here",
                    unsettled,
                    name,
                )

    def _run(self) -> None:
        while True:
            try:
                if self._stop.is_set() and (
                    time.monotonic() >= self._deadline or (not self._batch and self._queue.empty())
                ):
                    break
                self._probe_spill()
                if self._spill_error is None and time.monotonic() >= self._next_claim:
                    # Files of a worker that died (kill -9, crash) since this one started.
                    self._next_claim = time.monotonic() + _CLAIM_EVERY_S
                    self._spill_dirty = bool(self.spill.claim_orphans()) or self._spill_dirty
                    self._claim_dead_ledgers()
                self._cycle()
            except Exception as exc:
                # Supervision: nothing may end the writer. The batch in hand stays in
                # self._batch and is delivered on the next turn.
                self.last_error = first_line(exc)
                self._count("failures", 1)
                log.exception("prediction log writer: unexpected error; carrying on")
                self._pause(0.5)
        self._give_up_rest()

    def _pause(self, seconds: float) -> None:
        """Sleep, cut short by stop(); while draining, in short steps towards the deadline."""
        if self._stop.is_set():
            time.sleep(min(seconds, 0.1))
        else:
            self._stop.wait(seconds)

    def _cycle(self) -> None:
        if not self._batch:
            self._batch, self._acks = self._take_batch()
            if not self._batch:
                if not self._stop.is_set():
                    self._replay_if_due()
                self._report_losses()
                return
        else:
            # A held batch: wait for its retry (no longer than the drain deadline).
            wait = min(self._retry_at, self._deadline) - time.monotonic()
            if wait > 0:
                self._pause(wait)
        delivered = self._deliver(self._batch)
        self._held = not delivered
        if not delivered and self._acks:
            # Acknowledged requests are answered 503 instead of waiting: not lost, unanswered.
            acked = sum(len(a) for a in self._acks)
            self._settle(f"not logged: {self.last_error}")
            self._count("lost", len(self._batch) - acked)
            delivered = True
        if delivered:
            self._held = False
            self._settle(None)
            with self._pending_lock:
                self._pending -= len(self._batch)
                self._settled(len(self._batch))
            self._batch, self._acks = [], []
            if self._failing_since is None and not self._stop.is_set():
                self._replay_if_due()
        self._report_losses()

    def _take_batch(self) -> tuple[list[PredictionRecord], list[Acked]]:
        batch: list[PredictionRecord] = []
        acks: list[Acked] = []
        try:
            # Idle: wake twice a second to notice stop() and spilled records to replay.
            item: list[PredictionRecord] | None = self._queue.get(timeout=0.5)
        except queue.Empty:
            return batch, acks
        deadline = time.monotonic() + self.flush_seconds
        while item is not None:
            batch.extend(item)
            if type(item) is Acked:
                acks.append(item)
            if len(batch) >= self.batch_size:
                # Behind: what is queued already goes in the same write (one COPY, one
                # commit), so a backlog drains in fewer, larger batches.
                item = self._queued_now() if len(batch) < _CATCH_UP_ROWS else None
                continue
            item = self._next_item(deadline)
        return batch, acks

    def _queued_now(self) -> list[PredictionRecord] | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _next_item(self, deadline: float) -> list[PredictionRecord] | None:
        """The next queued request, waiting until the deadline; None when the batch is done."""
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            # Acknowledged requests wait for this batch: write what is here (group commit).
            if remaining <= 0 or self._stop.is_set() or self.acknowledged:
                return None
            # Let requests accumulate between looks: a wake-up per request would cost the
            # event loop the GIL far more often than one write per batch does.
            self._stop.wait(min(remaining, 0.05))

    def _settle(self, error: str | None) -> None:
        acks, self._acks = self._acks, []
        for item in acks:
            # A request whose event loop has closed (shutdown) no longer waits for an answer.
            with contextlib.suppress(RuntimeError):
                item.done(error)

    def _give_up_rest(self) -> None:
        """After the drain deadline: what is still held or queued is lost, and said so."""
        rest = self._batch
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            rest.extend(item)
            if type(item) is Acked:
                self._acks.append(item)
        self._settle("server shutting down")
        if rest:
            self._count("lost", len(rest))
            log.error("prediction log: %d rows lost: drain deadline passed", len(rest))
        with self._pending_lock:
            self._pending -= len(rest)
            self._settled(len(rest))
        self._batch, self._held = [], False
        self._report_losses()
