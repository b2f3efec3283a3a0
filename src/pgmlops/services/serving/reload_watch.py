"""Follow the production alias: LISTEN/NOTIFY on PostgreSQL, polling everywhere as a fallback."""

from __future__ import annotations

import logging
import threading
import time

from pgmlops.services.serving.load import ModelHolder
from pgmlops.store.db import Database
from pgmlops.store.registry.alias_moves import ALIAS_CHANNEL

log = logging.getLogger(__name__)
# How long stop() may wait for the LISTEN loop to notice.
STOP_CHECK_SECONDS = 0.5


class AliasWatcher:
    """A daemon thread that refreshes a holder when its model's production may have moved.

    A notification names its model: only that model's holder reloads. Polling (the fallback,
    and the LISTEN timeout) checks every holder.
    """

    def __init__(
        self, holders: ModelHolder | list[ModelHolder], db: Database, poll_seconds: float
    ) -> None:
        self.holders = holders if isinstance(holders, list) else [holders]
        self._by_name = {h.model_name: h for h in self.holders}
        self.db = db
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alias-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=STOP_CHECK_SECONDS + 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.db.is_postgres:
                try:
                    self._listen()
                except Exception as exc:
                    self.listening = False
                    log.warning("alias LISTEN connection lost (%s); polling", exc)
            self._refresh()
            self._stop.wait(self.poll_seconds)

    def _refresh(self, holders: list[ModelHolder] | None = None) -> None:
        for holder in holders or self.holders:
            try:
                holder.refresh()
            except Exception:
                log.exception("refreshing the production model of %r failed", holder.model_name)

    def _listen(self) -> None:
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {ALIAS_CHANNEL}")
            self.listening = True
            # Catch a move made between startup and LISTEN.
            self._refresh()
            next_poll = time.monotonic() + self.poll_seconds
            while not self._stop.is_set():
                # Short waits, so stop() is prompt however long the polling interval is.
                wait = min(STOP_CHECK_SECONDS, max(next_poll - time.monotonic(), 0.0))
                for note in conn.notifies(timeout=wait, stop_after=1):
                    holder = self._by_name.get(note.payload.partition(":")[0])
                    if holder is not None:
                        self._refresh([holder])
                # Polling goes on beside LISTEN, so a lost NOTIFY is still seen.
                if time.monotonic() >= next_poll:
                    self._refresh()
                    next_poll = time.monotonic() + self.poll_seconds
