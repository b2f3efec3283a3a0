"""The serving side of the logging process: encode each row once, append, send by pipe.

A writer thread in the serving process cost the event loop about 40 µs per request (see
bench/results/serve-logging.md): every wake-up of the thread (a queued row, a batch timer, a
database reply) asks the event loop for the GIL, and on a loaded 2-core machine the loop then
waits for the writer to be scheduled. Here the request path only encodes its rows (orjson, one
C call) into a buffer; the event loop writes the buffer to a non-blocking pipe every 50 ms;
the logging process (child.py) batches, writes, spills and replays exactly as the thread
writer does. No thread of this process wakes per row.

Rows the pipe does not take wait in the buffer, up to `max_queue` rows. With
`log_when_full: wait` the logging process reads no more from the pipe while its own queue is
full, so the pipe and then this buffer fill and `offer` refuses (the route waits, then 503);
with `drop` rows beyond the bound are dropped and counted `lost`, as with the thread writer.
A logging process that dies is replaced; the rows it had taken and not yet settled are counted lost.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.prediction_log.child import LogProcessConfig, run
from pgmlops.services.serving.prediction_log.pipe_buffer import PipeBuffer
from pgmlops.services.serving.prediction_log.writer import COUNTERS
from pgmlops.store.prediction_log.ledger import SETTLED, SETTLED_BY_CHILD, TAKEN, Ledger

log = logging.getLogger("pgmlops.services.serving.prediction_log")
# How long rows wait in the buffer before the event loop writes them to the pipe: each write
# wakes the logging process, so fewer, larger writes cost it less CPU per row.
SEND_EVERY_S = 0.05
_PIPE_BYTES = 1 << 20
_SNAPSHOT_BYTES = 1 << 16
# A logging process that keeps dying is not restarted more often than this.
_RESPAWN_GAP_S = 1.0
_SETTLED = ("written", "spilled", "lost", "rejected")
# How often the process's counters reach on_count (Prometheus) without a /health call.
# A thread does it, not the request path: counts that change with no request coming in
# (a spill file replayed or quarantined after traffic stopped) must reach /metrics too.
_REPORT_EVERY_S = 1.0


class ProcessLogWriter:
    """The thread writer's interface (fast durability), with the work in another process."""

    acknowledged = False

    def __init__(
        self,
        config: LogProcessConfig,
        *,
        on_count: Callable[[str, int], None] | None = None,
        log_setup: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.max_queue = config.max_queue
        self._on_count = on_count
        self._log_setup = log_setup
        # fork, not spawn: the worker has imported everything already (a spawned process
        # spent seconds importing pandas and SQLAlchemy before it could take a row, longer
        # than start-up checks wait on a loaded machine). The child closes the sockets it
        # inherits (child.py), so a worker's listening socket dies with the worker.
        self._mp = multiprocessing.get_context("fork")
        self._snapshot = self._mp.Array("c", _SNAPSHOT_BYTES)
        self._proc: Any = None
        self._fd = -1
        self._out = PipeBuffer()
        self._unsent = 0  # rows in self._out
        self._sent = 0  # rows written to the pipe of the current process
        self._scheduled = False
        self._stopped = False
        self._started_at = 0.0
        # Counted here: rows queued, rows lost before reaching the process; the process
        # counts the rest. `_reported` is what on_count has been told of the process's counts.
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._past = dict.fromkeys(COUNTERS, 0)  # counts of logging processes that are gone
        self._own_lost = 0
        self._queued_unreported = 0
        self._partial = False  # the last pipe write ended inside a row
        self._stopping = threading.Event()
        # The event loop sends; flush() and stop() may send from other threads.
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        # Rows taken and settled, for whoever outlives this process
        # (store/prediction_log/ledger.py); the logging process inherits it and adds what it
        # settles.
        self._ledger: Ledger | None = None
        self._child_base = 0  # what earlier logging processes settled in the ledger

    # -- request path --------------------------------------------------------------------

    def submit(self, records: list[PredictionRecord]) -> None:
        """Encode and append without blocking; beyond the bound, drop and count lost."""
        n = len(records)
        if self._unsent + n > self.max_queue or self._stopped:
            self._lose(n)
            return
        self._append(records)

    def offer(self, records: list[PredictionRecord]) -> bool:
        """Append all the records if the buffer has room for them (or is empty); else False."""
        if self._stopped or (self._unsent and self._unsent + len(records) > self.max_queue):
            return False
        self._append(records)
        return True

    def refuse(self, n: int) -> None:
        """Count rows of a request answered 503 because the log had no room for them."""
        with self._report_lock:
            self._count("refused", n)

    def _append(self, records: list[PredictionRecord]) -> None:
        n = len(records)
        if self._ledger is not None:
            self._ledger.add(TAKEN, n)
        rows = b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records])
        with self._lock:
            self._out.append(rows)
            self._unsent += n
            self._queued_unreported += n
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._send()  # called outside an event loop (a script, a test): send now
                return
            self._scheduled = True
            loop.call_later(SEND_EVERY_S, self._send)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the logging process and wait until its writer runs (as the thread's does)."""
        try:
            os.makedirs(self.config.spill_dir, exist_ok=True)
            self._ledger = Ledger(self.config.spill_dir)
        except OSError as exc:
            log.error(
                "prediction log: no ledger in %s (%s): rows held at a kill -9 of this "
                "process will not be counted",
                self.config.spill_dir,
                exc.strerror or exc,
            )
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._read() and self._proc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._read():
            log.error("prediction log process not running after %.0f s", timeout)
        threading.Thread(
            target=self._report_loop, name="prediction-log-report", daemon=True
        ).start()
        # Runs before multiprocessing's own exit hook, which would wait for the process
        # forever while this end of the pipe is open.
        atexit.register(self.stop)

    def _spawn(self) -> None:
        reader, writer = self._mp.Pipe(duplex=False)
        self._snapshot.value = b""
        self._proc = self._mp.Process(
            target=run,
            args=(self.config, reader, self._snapshot, self._log_setup, writer, self._ledger),
            name="pgmlops-prediction-log",
        )
        self._proc.start()
        reader.close()
        self._partial = False
        self._fd = os.dup(writer.fileno())
        writer.close()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._sent = 0
        self._started_at = time.monotonic()

    def stop(self, timeout: float | None = None) -> None:
        """Send what is buffered, close the pipe, wait for the process to drain and exit."""
        if self._stopped or self._proc is None:
            return
        self._stopped = True
        self._stopping.set()
        seconds = self.config.drain_seconds if timeout is None else timeout
        deadline = time.monotonic() + seconds + 2.0
        while self._out and time.monotonic() < deadline and self._proc.is_alive():
            self._send()
            if self._out:
                time.sleep(0.005)
        with self._lock:
            if self._out:
                self._settle_own(self._unsent)
                self._lose(self._unsent)
                self._out.clear()
                self._unsent = 0
            os.close(self._fd)
            self._fd = -1
        self._proc.join(max(0.1, deadline - time.monotonic()))
        if self._proc.is_alive():
            log.error("prediction log process did not stop within %.0f s; killing it", seconds)
            self._proc.kill()
            self._proc.join(5)
        self._report()
        if self._ledger is not None:
            # A logging process killed at the deadline settled less than it was sent.
            unsettled = self._ledger.get(TAKEN) - self._ledger.get(SETTLED)
            unsettled -= self._ledger.get(SETTLED_BY_CHILD)
            if unsettled > 0:
                self._lose(unsettled)
            self._ledger.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been written or spilled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._send()
            snap = self._read()
            if (
                not self._out
                and snap.get("received", -1) == self._sent
                and snap.get("queue_depth", 1) == 0
            ):
                return True
            time.sleep(0.01)
        return False

    @property
    def depth(self) -> int:
        snap = self._read()
        in_pipe = max(0, self._sent - int(snap.get("received", 0)))
        return self._unsent + in_pipe + int(snap.get("queue_depth", 0))

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def stats(self) -> dict[str, object]:
        """The logging process's counters and health, with this side's queue and losses."""
        self._report()
        snap = self._read()
        reasons = list(snap.get("reasons", []))
        if self._proc is not None and not self.alive and not self._stopped:
            reasons.insert(0, "prediction log process is not running")
        depth = self.depth
        if depth > self.max_queue // 2 and not any("queue at" in r for r in reasons):
            reasons.append(f"prediction log: queue at {depth} of {self.max_queue} rows")
        return {
            **{k: v for k, v in snap.items() if k not in ("received", "pid", "ended")},
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            **self.counts,
            "queue_depth": depth,
            "queue_limit": self.max_queue,
            "spill_bytes": snap.get("spill_bytes", 0),
            "spill_error": snap.get("spill_error"),
            "last_error": snap.get("last_error"),
            "process_pid": snap.get("pid"),
        }

    # -- internals -----------------------------------------------------------------------

    def _send(self) -> None:
        """Write as much of the buffer as the pipe takes (never blocks)."""
        with self._lock:
            self._scheduled = False
            if self._queued_unreported:
                self._count("queued", self._queued_unreported)
                self._queued_unreported = 0
            if not self._out or self._fd < 0:
                return
            try:
                rows, partial = self._out.write_to(self._fd)
            except OSError:
                self._replace_dead()
                rows, partial = 0, None
            if partial is not None:
                self._partial = partial
                self._unsent -= rows
                self._sent += rows
            if not self._out or self._stopped:
                return
        # The pipe is full: the logging process is behind. Try again shortly.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(SEND_EVERY_S, self._send)
            self._scheduled = True

    def _replace_dead(self) -> None:
        """The logging process is gone (broken pipe): count its unsettled rows, start another."""
        if self._stopped or time.monotonic() - self._started_at < _RESPAWN_GAP_S:
            return
        self._report()
        # Under the report lock until the new process's snapshot is empty: a report in
        # between would count the old process's rows twice (in _past and in its snapshot).
        with self._report_lock:
            snap = self._read()
            unsettled = max(0, self._sent - sum(int(snap.get(k, 0)) for k in _SETTLED))
            if self._ledger is not None:
                # The ledger is exact (the snapshot lags by up to PUBLISH_EVERY_S).
                by_child = self._ledger.get(SETTLED_BY_CHILD)
                unsettled = max(0, self._sent - (by_child - self._child_base))
            log.error(
                "prediction log process %s exited (code %s); rows it held: %d; restarting it",
                self._proc.pid,
                self._proc.exitcode,
                unsettled,
            )
            for k in COUNTERS:
                self._past[k] += int(snap.get(k, 0))
            if self._partial:
                # The row half written to the old pipe: the new process must start at a line.
                self._out.drop_partial_row()
                self._unsent -= 1
                unsettled += 1
            self._own_lost += unsettled
            self._settle_own(unsettled)
            os.close(self._fd)
            if self._ledger is not None:
                self._child_base = self._ledger.get(SETTLED_BY_CHILD)
            self._spawn()
        self._report()

    def _report_loop(self) -> None:
        while not self._stopping.wait(_REPORT_EVERY_S):
            try:
                self._report()
            except Exception:  # never let the reporter die: /metrics would go stale
                log.exception("prediction log: cannot report the logging process's counts")

    def _read(self) -> dict[str, Any]:
        with self._snapshot.get_lock():
            raw = self._snapshot.value
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}

    def _report(self) -> None:
        """Bring `counts` and on_count up to date with the logging process's counters."""
        with self._report_lock:
            snap = self._read()
            for k in COUNTERS:
                if k not in ("queued", "refused"):  # counted on this side
                    total = self._past[k] + int(snap.get(k, 0))
                    if k == "lost":
                        total += self._own_lost
                    self._count(k, total - self.counts[k])

    def _settle_own(self, n: int) -> None:
        if self._ledger is not None:
            self._ledger.add(SETTLED, n)

    def _lose(self, n: int) -> None:
        if n:
            with self._report_lock:
                self._own_lost += n
                self._count("lost", n)
            log.error("prediction log: %d rows lost (queue of %d full)", n, self.max_queue)

    def _count(self, name: str, n: int) -> None:
        if n > 0:
            self.counts[name] += n
            if self._on_count:
                self._on_count(name, n)
