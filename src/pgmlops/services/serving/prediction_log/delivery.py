"""How a batch reaches the database or the spill file, and how spilled rows are replayed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.errors import ValidationError
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.prediction_log.spill import EncodedRecord, SpillFolder, as_record

log = logging.getLogger("pgmlops.services.serving.prediction_log")
_BACKOFF_MIN_S = 0.2
# Caps how long a recovered database waits for its first retry (health clears within 5 s).
_BACKOFF_MAX_S = 2.0
# How often a spill folder that refused rows is looked at again (health clears within this).
_PROBE_EVERY_S = 2.0


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _ident(r: PredictionRecord | EncodedRecord) -> str:
    try:
        return as_record(r).id
    except ValidationError:
        return "(unreadable row)"


class Delivery:
    """Database writes with backoff, the spill file, and the replay; the writer's lower half."""

    store: PredictionStore
    spill: SpillFolder
    batch_size: int
    max_queue: int
    counts: dict[str, int]
    last_error: str | None
    _retry_at: float
    _backoff: float
    _failing_since: float | None
    _spill_error: str | None
    _spill_dirty: bool
    _resume: dict[Path, int]
    _replay_at: float
    _probe_at: float
    _lost_logged: int
    _count: Callable[[str, int], None]

    def _deliver(self, batch: list[PredictionRecord]) -> bool:
        """To the database unless it is backing off, else to spill; False if neither took it."""
        if time.monotonic() >= self._retry_at:
            try:
                written = self._write(batch, self.store.write_batch)
            except Exception as exc:
                self._database_failed(exc)
            else:
                self._database_ok()
                self._count("written", written)
                return True
        try:
            self._count("rejected", self.spill.append(batch))
        except OSError as exc:
            if self._spill_error is None:
                log.error(
                    "prediction log: spill folder %s refuses rows (%s): holding them in memory "
                    "(queue limit %d rows, newer rows are lost beyond it)",
                    self.spill.dir,
                    exc.strerror or exc,
                    self.max_queue,
                )
            self._spill_error = f"{exc.strerror or exc}"
            return False
        if self._spill_error is not None:
            log.info("prediction log: spill folder %s takes rows again", self.spill.dir)
            self._spill_error = None
        self._spill_dirty = True
        self._count("spilled", len(batch))
        return True

    def _probe_spill(self) -> None:
        """While the spill folder refuses rows, look whether it takes them again.

        Rows reach it only while the database fails, so without a look health would report
        the folder broken long after it was repaired.
        """
        now = time.monotonic()
        held = getattr(self, "_held", False)  # a held batch's next attempt is the look
        if self._spill_error is None or held or now < self._probe_at:
            return
        self._probe_at = now + _PROBE_EVERY_S
        try:
            self.spill.probe()
        except OSError as exc:
            self._spill_error = f"{exc.strerror or exc}"
            return
        log.info("prediction log: spill folder %s takes rows again", self.spill.dir)
        self._spill_error = None

    def _database_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.last_error = first_line(exc)
        self._count("failures", 1)
        self._backoff = min(_BACKOFF_MAX_S, max(_BACKOFF_MIN_S, self._backoff * 2))
        self._retry_at = now + self._backoff
        if self._failing_since is None:
            self._failing_since = now
            log.warning(
                "prediction log: database writes failing (%s); spilling to %s, retrying",
                self.last_error,
                self.spill.dir,
            )

    def _database_ok(self) -> None:
        if self._failing_since is not None:
            log.info(
                "prediction log: database writes recovered after %.1f s",
                time.monotonic() - self._failing_since,
            )
        self._failing_since = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self.last_error = None

    def _report_losses(self) -> None:
        lost = self.counts["lost"]
        if lost > self._lost_logged:
            log.error(
                "prediction log: %d rows lost (queue of %d full: neither the database nor the "
                "spill folder takes rows); %d lost since start",
                lost - self._lost_logged,
                self.max_queue,
                lost,
            )
            self._lost_logged = lost

    def _write(
        self, records: list[PredictionRecord], write: Callable[[list[PredictionRecord]], object]
    ) -> int:
        """Write records, leaving out the rows the database refuses; returns how many went in.

        One bad row must not hold back its batch (it is found by halving the batch), nor
        block every replay of the spill file.
        StoreError (database away) propagates: the caller spills the batch, and the replay
        skips the rows already written.
        """
        try:
            write(records)
            return len(records)
        except ValidationError as exc:
            if len(records) == 1:
                self._count("rejected", 1)
                log.error("prediction %s not logged: %s", _ident(records[0]), exc)
                return 0
            # Halves, not rows: a bad row in a batch of 20,000 costs ~30 writes, not 20,000.
            mid = len(records) // 2
            return self._write(records[:mid], write) + self._write(records[mid:], write)

    def _replay_if_due(self) -> None:
        now = time.monotonic()
        if not self._spill_dirty or now < self._retry_at or now < self._replay_at:
            return
        try:
            for path in self.spill.replay_files():
                self._replay_file(path)
        except FileNotFoundError:
            return  # claimed by another worker meanwhile; look again next turn
        except OSError as exc:
            # A spill file this process cannot read: not the database's fault.
            self._replay_at = now + _BACKOFF_MAX_S
            log.error("prediction log: cannot read spill files: %s", exc)
            return
        except Exception as exc:
            self._database_failed(exc)
            return
        self._spill_dirty = False

    def _replay_file(self, path: Path) -> None:
        replayed = 0
        wrote = False  # a file of unreadable lines only says nothing about the database
        for chunk in self.spill.read(path, self.batch_size, self._resume.get(path, 0)):
            if chunk.bad_lines:
                self._count("quarantined", chunk.bad_lines)
                if chunk.quarantine_error:
                    log.error(
                        "prediction log: %d unreadable line(s) in %s dropped: cannot write %s: %s",
                        chunk.bad_lines,
                        path,
                        self.spill.quarantine,
                        chunk.quarantine_error,
                    )
                else:
                    log.warning(
                        "prediction log: %d unreadable line(s) in %s moved to %s",
                        chunk.bad_lines,
                        path,
                        self.spill.quarantine,
                    )
            if chunk.records:
                # Counted per chunk: a replay that fails part-way resumes after the chunks
                # already written, so counting once per file would leave them out.
                written = self._write(chunk.records, self.store.replay_batch)
                self._count("replayed", written)
                replayed += written
                wrote = True
            self._resume[path] = chunk.end
        if wrote:
            self._database_ok()
        if self.spill.discard(path):
            self._resume.pop(path, None)
        if replayed:
            log.info("prediction log: replayed %d spilled records from %s", replayed, path)
