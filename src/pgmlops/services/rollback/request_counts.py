"""Each serving process's /predict requests per version and outcome, added to the database.

Counting costs a dict update per request; a daemon thread adds the counts to
`serving_counts` every `FLUSH_SECONDS` (one upsert), so every worker and host contributes to
one figure per version and hour. A failed flush keeps its counts for the next one.
"""

from __future__ import annotations

import logging
import threading
import time

from pgmlops.store.rollback.serving_counts import CountKey, ServingCountStore

log = logging.getLogger(__name__)
# A version's error rate is read by the worker every minute or so: seconds are plenty.
FLUSH_SECONDS = 5.0


def outcome_of(status: int) -> str:
    """A refused request (4xx: the client sent what the schema refuses) or a failed one (5xx)."""
    return "refused" if 400 <= status < 500 else "failed"


class RequestCounter:
    """count() on the request path; start()/stop() run the flushing thread."""

    def __init__(self, store: ServingCountStore, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._counts: dict[CountKey, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self, model: str, version: int, outcome: str, n: int = 1) -> None:
        """Add n requests of a version with an outcome (answered, refused, failed)."""
        key = (model, version, int(time.time() // 3600), outcome)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def flush(self) -> None:
        """Add what was counted to the database; on failure keep it for the next flush."""
        with self._lock:
            taken, self._counts = self._counts, {}
        if not taken:
            return
        try:
            self.store.add(taken)
        except Exception as exc:  # the database may be down: count on, store later
            log.warning("request counts not stored yet (%s): kept for the next flush", exc)
            with self._lock:
                for key, n in taken.items():
                    self._counts[key] = self._counts.get(key, 0) + n

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="request-counts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
