"""The logging process: reads encoded rows from a pipe and runs the writer on them.

Rows arrive as spill lines (one JSON record per line). The process ignores SIGINT and SIGTERM:
it stops when the serving process closes its end of the pipe (a clean stop, a crash or a
kill -9 alike), drains what it holds to the database or the spill file, and exits.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pgmlops.services.serving.prediction_log.writer import PredictionLogWriter
from pgmlops.store.db import Database
from pgmlops.store.prediction_log.ledger import Ledger
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.prediction_log.spill import EncodedRecord

log = logging.getLogger("pgmlops.services.serving.prediction_log")
_READ_BYTES = 1 << 20
# How often the counters and health reach the serving process while rows flow; when
# nothing changes, every IDLE_PUBLISH_S (the spill folder is looked at then).
PUBLISH_EVERY_S = 0.05
IDLE_PUBLISH_S = 1.0
# The young generation's collection threshold here (Python's default is 700): see _tune_gc.
GC_YOUNG = 10_000


@dataclass(frozen=True)
class LogProcessConfig:
    """What the logging process needs to build its writer (plain values: it is pickled)."""

    database_url: str
    spill_dir: str
    partition_period: str = "month"
    max_queue: int = 200_000
    batch_size: int = 500
    flush_seconds: float = 0.1
    drain_seconds: float = 10.0
    when_full: str = "wait"


def publish(shared: Any, snapshot: dict[str, Any]) -> None:
    """Put the writer's stats where the serving process reads them."""
    data = orjson.dumps(snapshot)
    with shared.get_lock():
        shared.value = data[: len(shared) - 1]


def _name_process() -> None:
    """Show as `pgmlops-log` in ps/top (Linux), so its CPU can be told from the server's."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(15, b"pgmlops-log", 0, 0, 0)  # PR_SET_NAME


def _tune_gc() -> None:
    """Collect less often: the queue holds up to max_queue records that form no cycles.

    Each queued row is a tracked object that outlives the young generation, so at the default
    threshold the collector ran every 700 rows and rescanned the queue in its older passes
    (bench/log_stages.py; bench/results/log-rate-wave3-writer.md). What the process inherited
    (libraries, the serving process's heap) is frozen out of every pass.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 10, 10)
    # Python's default switch interval: the serving process shortens it for its event loop's
    # latency; here it only makes the reading and writing threads trade the GIL more often.
    sys.setswitchinterval(0.005)


def _close_inherited_sockets(keep: int) -> None:
    """Close the worker's sockets a forked child holds: its listening socket above all.

    A listening socket still open here would keep taking the connections the kernel
    routes to it after the worker died, and no one would answer them.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if fd > 2 and fd != keep and stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)


def run(
    config: LogProcessConfig,
    conn: Any,
    shared: Any,
    log_setup: Callable[[], None] | None = None,
    sender: Any = None,
    ledger: Ledger | None = None,
) -> None:
    """The logging process's main function; `sender`, the pipe's other end, is closed first."""
    if sender is not None:
        # Forked with the serving process's end of the pipe: holding it, we would never see
        # the end of the stream.
        sender.close()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _name_process()
    if log_setup is not None:
        log_setup()
    fd = conn.fileno()
    if os.path.isdir("/proc/self/fd"):
        _close_inherited_sockets(fd)
    store = PredictionStore(Database(config.database_url), partition_period=config.partition_period)  # type: ignore[arg-type]
    writer = PredictionLogWriter(
        store,
        config.spill_dir,
        max_queue=config.max_queue,
        batch_size=config.batch_size,
        flush_seconds=config.flush_seconds,
        drain_seconds=config.drain_seconds,
        ledger=ledger,
    )
    # The imports and the first connection happen now, before the serving process is told
    # the writer runs: not at the first row, which may come in the middle of an outage.
    with contextlib.suppress(Exception):
        store.db.ensure_schema()
    _tune_gc()
    writer.start()
    received, rest = 0, b""
    next_publish, published, last = 0.0, 0.0, None
    waits = config.when_full == "wait"
    while True:
        # Back-pressure: with a full queue, leave the rows in the pipe; the serving process's
        # buffer then fills and its requests wait for room (then 503) instead of being dropped.
        room = not waits or writer.depth < config.max_queue
        ready, _, _ = select.select([fd] if room else [], [], [], PUBLISH_EVERY_S)
        if ready:
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            received += len(lines)
            writer.submit([EncodedRecord(line) for line in lines], bounded=not waits)  # type: ignore[misc]
        now = time.monotonic()
        seen = (received, writer.depth, *writer.counts.values())
        # At most every PUBLISH_EVERY_S while rows flow: stats() looks at the spill folder,
        # and publishing at every read (100+ a second per worker) was most of this
        # process's CPU per row.
        if (seen != last and now >= published + PUBLISH_EVERY_S) or now >= next_publish:
            last, published, next_publish = seen, now, now + IDLE_PUBLISH_S
            publish(shared, {**writer.stats(), "received": received, "pid": os.getpid()})
    writer.stop()
    publish(shared, {**writer.stats(), "received": received, "pid": os.getpid(), "ended": True})
