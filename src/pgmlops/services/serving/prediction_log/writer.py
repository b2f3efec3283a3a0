"""Background prediction logging: every answered prediction is written, or counted as lost.

The request path only appends to a bounded in-memory queue. One supervised thread drains it
in batches. A batch the database does not take goes to this process's spill file (fsynced)
and the database is retried with backoff (0.2 s doubling to 2 s); once a write succeeds the
spill files are replayed with insert-or-ignore, so a record is stored exactly once. A batch
that neither the database nor the spill folder takes stays in memory and is retried; the
queue then fills. What happens to a request that finds it full is `serving.log_when_full`:
with "wait" (the default) the route offers its records again until there is room or its wait
is over, then answers 503 and counts them `refused` (`offer`); with "drop" they are dropped
and counted as `lost` and the request is still answered (`submit`). A row whose value
the database refuses is dropped and counted ("rejected"), not allowed to fail its batch.

With `acknowledged` durability each request's records carry a callback that the thread
calls once they are committed or spilled, and the thread writes whatever is queued at once
(group commit) instead of waiting to fill a batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.domain.serving.log_health import LogFacts, log_risks
from pgmlops.services.serving.prediction_log.batches import Acked, BatchLoop, Done
from pgmlops.store.prediction_log.ledger import TAKEN, Ledger
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.prediction_log.spill import SpillFolder

log = logging.getLogger("pgmlops.services.serving.prediction_log")
COUNTERS = (
    "queued",
    "written",
    "spilled",
    "replayed",
    "lost",
    "lost_dead_worker",
    "refused",
    "rejected",
    "quarantined",
    "failures",
)


class PredictionLogWriter(BatchLoop):
    """Owns the queue, the writer thread and the spill files of one process."""

    def __init__(
        self,
        store: PredictionStore,
        spill_dir: str | Path,
        *,
        max_queue: int = 200_000,
        batch_size: int = 500,
        flush_seconds: float = 0.1,
        drain_seconds: float = 10.0,
        acknowledged: bool = False,
        on_count: Callable[[str, int], None] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.store = store
        # The rows this process took and settled, for whoever outlives it
        # (store/prediction_log/ledger.py). A logging process is handed its serving process's ledger
        # and settles into it.
        self._ledger = ledger
        self._ledger_takes = ledger is None
        self.spill = SpillFolder(spill_dir)
        self.spill_path = self.spill.path
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.drain_seconds = drain_seconds
        self.acknowledged = acknowledged
        # One queue item per request (a list of records); the bound counts records.
        self._queue: queue.SimpleQueue[list[PredictionRecord]] = queue.SimpleQueue()
        self.max_queue = max_queue
        self._stop = threading.Event()
        self._deadline = float("inf")
        # Records submitted but not yet written, spilled or lost; flush() waits for zero.
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._on_count = on_count
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.last_error: str | None = None
        # The batch being delivered; it stays here (held) while nothing takes it.
        self._batch: list[PredictionRecord] = []
        self._acks: list[Acked] = []
        self._held = False
        self._retry_at = 0.0
        self._backoff = 0.0
        self._failing_since: float | None = None
        self._spill_error: str | None = None
        self._spill_dirty = False
        self._resume: dict[Path, int] = {}
        self._next_claim = 0.0
        self._replay_at = 0.0
        self._probe_at = 0.0
        self._lost_logged = 0

    # -- request path --------------------------------------------------------------------

    def submit(self, records: list[PredictionRecord], *, bounded: bool = True) -> None:
        """Enqueue without blocking; records beyond the bound are dropped and counted lost.

        `bounded=False` takes them all: the logging process, whose caller already waited
        for room, reads no more from its pipe while the queue is full.
        """
        with self._pending_lock:
            room = self.max_queue - self._pending if bounded else len(records)
            accepted = records if len(records) <= room else records[: max(room, 0)]
            self._pending += len(accepted)
            self._taken(len(accepted))
            if not self._ledger_takes:
                self._settled(len(records) - len(accepted))  # taken by the serving process
        if accepted:
            self._queue.put(accepted)
        self._count("queued", len(accepted))
        self._count("lost", len(records) - len(accepted))

    def offer(self, records: list[PredictionRecord]) -> bool:
        """Enqueue all the records if the queue has room for them (or is empty); else False.

        An empty queue takes a request larger than the bound: it would never fit otherwise.
        """
        n = len(records)
        with self._pending_lock:
            if self._stop.is_set() or (self._pending and n > self.max_queue - self._pending):
                return False
            self._pending += n
            self._taken(n)
        self._queue.put(records)
        self._count("queued", n)
        return True

    def refuse(self, n: int) -> None:
        """Count rows of a request answered 503 because the log had no room for them."""
        self._count("refused", n)

    def submit_acknowledged(self, records: list[PredictionRecord], done: Done) -> bool:
        """Enqueue; done(None) once committed or spilled, done(reason) if neither. False: full."""
        item = Acked(records)
        item.done = done
        with self._pending_lock:
            if self._stop.is_set() or (
                self._pending and len(records) > self.max_queue - self._pending
            ):
                return False
            self._pending += len(records)
            self._taken(len(records))
        self._queue.put(item)
        self._count("queued", len(records))
        return True

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.spill.prepare()
        except OSError as exc:
            # Serve anyway: the database may take every row; health says the folder is broken.
            self._spill_error = f"cannot create {self.spill.dir}: {exc.strerror or exc}"
            log.error("prediction log: %s", self._spill_error)
        if self._ledger_takes:
            try:
                self._ledger = Ledger(self.spill.dir)
            except OSError as exc:
                log.error(
                    "prediction log: no ledger in %s (%s): rows held at a kill -9 of this "
                    "process will not be counted",
                    self.spill.dir,
                    exc.strerror or exc,
                )
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Drain the queue (to the database, else to spill) within the deadline, then stop."""
        seconds = self.drain_seconds if timeout is None else timeout
        before = dict(self.counts)
        self._deadline = time.monotonic() + seconds
        self._stop.set()
        if self._thread:
            self._thread.join(seconds + 1.0)
            if self._thread.is_alive():
                # Stuck in a database call past the deadline: what it holds will not be saved.
                stuck = self._pending
                self._count("lost", stuck)
                self._settled(stuck)  # counted here, not again by a ledger's claimer
                log.error("prediction log: %d rows lost: drain deadline passed mid-write", stuck)
        if self._ledger_takes and self._ledger is not None:
            self._ledger.close()  # everything is settled or counted
        drained = {k: self.counts[k] - before[k] for k in ("written", "spilled", "lost")}
        log.info(
            "prediction log stopped: drained %d written, %d spilled, %d lost; since start "
            "%d written, %d spilled, %d replayed, %d lost",
            drained["written"],
            drained["spilled"],
            drained["lost"],
            self.counts["written"],
            self.counts["spilled"],
            self.counts["replayed"],
            self.counts["lost"],
        )
        self.store.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far has been written or spilled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending == 0:
                return True
            time.sleep(0.01)
        return False

    @property
    def depth(self) -> int:
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, object]:
        """Counters, and `status`/`reasons` from what puts rows at risk right now."""
        spill_bytes = self.spill.pending_bytes()
        since = self._failing_since
        reasons = log_risks(
            LogFacts(
                writer_running=self.alive or self._thread is None or self._stop.is_set(),
                failing_for_s=None if since is None else time.monotonic() - since,
                spill_error=self._spill_error,
                held_rows=len(self._batch) if self._held else 0,
                queue_depth=self.depth,
                queue_limit=self.max_queue,
                spill_bytes=spill_bytes,
            )
        )
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            **self.counts,
            "queue_depth": self.depth,
            "queue_limit": self.max_queue,
            "spill_bytes": spill_bytes,
            "spill_error": self._spill_error,
            "last_error": self.last_error,
        }

    def _taken(self, n: int) -> None:
        if self._ledger is not None and self._ledger_takes:
            self._ledger.add(TAKEN, n)

    def _count(self, name: str, n: int) -> None:
        if n:
            self.counts[name] += n
            if self._on_count:
                self._on_count(name, n)
