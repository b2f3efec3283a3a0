"""Background prediction logging: batched writes, spill to disk when the database is away.

The request path only appends to a bounded in-memory queue. One thread drains it in
batches; when a write fails, the batch goes to an append-only spill file (one JSON line per
record, fsynced) and the thread keeps trying the database; once a write succeeds again the
spill file is replayed with insert-or-ignore, so a record is stored exactly once. A row whose
value the database refuses is dropped and counted ("rejected"), not allowed to fail its batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import orjson

from pgmlops.domain.records import PredictionRecord
from pgmlops.errors import PgmlopsError, ValidationError
from pgmlops.store.predictions import PredictionStore

log = logging.getLogger(__name__)
COUNTERS = ("queued", "written", "spilled", "replayed", "dropped", "rejected", "failures")


def _encode(r: PredictionRecord) -> bytes:
    return orjson.dumps(asdict(r)) + b"\n"


def _decode(line: bytes) -> PredictionRecord:
    data = orjson.loads(line)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return PredictionRecord(**data)


class PredictionLogWriter:
    """Owns the queue, the writer thread and the spill file of one process."""

    def __init__(
        self,
        store: PredictionStore,
        spill_dir: str | Path,
        *,
        max_queue: int = 100_000,
        batch_size: int = 1_000,
        flush_seconds: float = 0.5,
        on_count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store = store
        self.spill_path = Path(spill_dir) / f"predictions-{os.getpid()}.jsonl"
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        # One queue item per request (a list of records); the bound counts records.
        self._queue: queue.SimpleQueue[list[PredictionRecord]] = queue.SimpleQueue()
        self.max_queue = max_queue
        self._stop = threading.Event()
        # Records submitted but not yet written or spilled; flush() waits for zero.
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._on_count = on_count
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.last_error: str | None = None

    # -- request path --------------------------------------------------------------------

    def submit(self, records: list[PredictionRecord]) -> None:
        """Enqueue without blocking; records beyond the bound are dropped and counted."""
        with self._pending_lock:
            room = self.max_queue - self._pending
            accepted = records if len(records) <= room else records[: max(room, 0)]
            self._pending += len(accepted)
        if accepted:
            self._queue.put(accepted)
        self._count("queued", len(accepted))
        self._count("dropped", len(records) - len(accepted))

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self._adopt_orphan_spills()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued (to the database or the spill file) and stop."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
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

    def stats(self) -> dict[str, int | str | None]:
        pending = self.spill_path.stat().st_size if self.spill_path.exists() else 0
        return {
            **self.counts,
            "queue_depth": self.depth,
            "spill_bytes": pending,
            "last_error": self.last_error,
        }

    # -- writer thread -------------------------------------------------------------------

    def _count(self, name: str, n: int) -> None:
        if n:
            self.counts[name] += n
            if self._on_count:
                self._on_count(name, n)

    def _take_batch(self) -> list[PredictionRecord]:
        batch: list[PredictionRecord] = []
        try:
            # Idle: wake twice a second to notice stop() and spilled records to replay.
            batch.extend(self._queue.get(timeout=max(self.flush_seconds, 0.5)))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            try:
                batch.extend(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                break
            # Let requests accumulate between looks: a wake-up per request would cost the
            # event loop the GIL far more often than one write per batch does.
            self._stop.wait(min(remaining, 0.05))
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                if self._stop.is_set():
                    return
                self._replay_if_pending()
                continue
            try:
                self._count("written", self._write(batch, self.store.write_batch))
                self.last_error = None
            except PgmlopsError as exc:
                self.last_error = str(exc)
                self._count("failures", 1)
                self._spill(batch)
                if not self._stop.is_set():
                    time.sleep(0.2)
            finally:
                with self._pending_lock:
                    self._pending -= len(batch)
            if self.last_error is None:
                self._replay_if_pending()

    def _write(
        self, records: list[PredictionRecord], write: Callable[[list[PredictionRecord]], object]
    ) -> int:
        """Write records, row by row if the database refuses a value; returns how many went in.

        One bad row must not hold back its batch, nor block every replay of the spill file.
        StoreError (database away) propagates: the caller spills the batch, and the replay
        skips the rows already written.
        """
        try:
            write(records)
            return len(records)
        except ValidationError as exc:
            if len(records) == 1:
                self._count("rejected", 1)
                log.error("prediction %s not logged: %s", records[0].id, exc)
                return 0
            return sum(self._write([r], write) for r in records)

    def _spill(self, batch: list[PredictionRecord]) -> None:
        with open(self.spill_path, "ab") as fh:
            fh.write(b"".join(_encode(r) for r in batch))
            fh.flush()
            os.fsync(fh.fileno())
        self._count("spilled", len(batch))
        log.warning(
            "database unavailable: %d prediction records spilled to %s", len(batch), self.spill_path
        )

    def _replay_if_pending(self) -> None:
        if not self.spill_path.exists() or self.spill_path.stat().st_size == 0:
            return
        # Rename first: new failures spill to a fresh file while this one is replayed.
        replaying = self.spill_path.with_suffix(f".replay-{time.time_ns()}")
        os.replace(self.spill_path, replaying)
        self._replay_file(replaying)

    def _replay_file(self, path: Path) -> None:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        records = [_decode(line) for line in lines]
        replayed = 0
        try:
            for i in range(0, len(records), self.batch_size):
                replayed += self._write(records[i : i + self.batch_size], self.store.replay_batch)
        except PgmlopsError as exc:
            self.last_error = str(exc)
            # Put the records back for the next attempt; replay is insert-or-ignore.
            with open(self.spill_path, "ab") as fh:
                fh.write(b"\n".join(lines) + b"\n")
            path.unlink(missing_ok=True)
            return
        path.unlink(missing_ok=True)
        self._count("replayed", replayed)
        log.info("replayed %d spilled prediction records", replayed)

    def _adopt_orphan_spills(self) -> None:
        """Replay files left by a previous process (crash, restart) on the next start."""
        for path in sorted(self.spill_path.parent.glob("predictions-*")):
            if path == self.spill_path:
                continue
            if path.suffix == ".jsonl" and _pid_alive(path):
                continue
            target = self.spill_path.with_suffix(f".replay-{time.time_ns()}")
            try:
                os.replace(path, target)
            except OSError:
                continue
            with open(self.spill_path, "ab") as fh:
                fh.write(target.read_bytes())
            target.unlink(missing_ok=True)


def _pid_alive(path: Path) -> bool:
    try:
        pid = int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
