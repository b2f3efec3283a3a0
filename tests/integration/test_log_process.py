"""The logging process (serving.log_writer: process) against a real database."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.services.serving.prediction_log import LogProcessConfig, ProcessLogWriter
from pgmlops.store.prediction_log.predictions import PredictionStore


def _records(n: int) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [
        PredictionRecord(i, "churn", 1, now, {"Age": 40.0}, "0", 0.2, 0.6, None, 1.0, "r", "k")
        for i in prediction_ids(n)
    ]


def _writer(url: str, spill: Path, **kw: object) -> ProcessLogWriter:
    config = LogProcessConfig(url, str(spill), batch_size=100, flush_seconds=0.05, **kw)  # type: ignore[arg-type]
    return ProcessLogWriter(config)


def test_rows_reach_the_table_and_a_killed_logging_process_is_replaced(ctx, tmp_path: Path) -> None:
    writer = _writer(ctx.db.url, tmp_path / "spill")
    writer.start()
    try:
        for _ in range(30):
            writer.submit(_records(10))
        assert writer.flush(20.0)
        assert PredictionStore(ctx.db).count("churn") == 300
        stats = writer.stats()
        assert stats["status"] == "ok" and stats["written"] == 300 and stats["queue_depth"] == 0
        first = stats["process_pid"]
        os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        # The next rows find the pipe broken: the process is replaced and takes them.
        while writer.stats().get("process_pid") in (first, None) and time.monotonic() < deadline:
            writer.submit(_records(1))
            time.sleep(0.2)
        assert writer.flush(20.0)
        stats = writer.stats()
        assert stats["process_pid"] != first and stats["status"] == "ok"
    finally:
        writer.stop()
    assert not writer.alive
    stored = PredictionStore(ctx.db).count("churn")
    # Every row submitted is in the table or counted lost: none vanished silently.
    assert stored >= 300 and stored + writer.counts["lost"] == writer.counts["queued"]


def test_stop_drains_into_the_spill_file_when_the_database_is_gone(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    writer = _writer(url, tmp_path / "spill", drain_seconds=5.0)
    writer.start()
    for _ in range(20):
        writer.submit(_records(10))
    writer.stop()
    assert writer.counts["spilled"] == 200 and writer.counts["lost"] == 0
    lines = [p.read_bytes().splitlines() for p in (tmp_path / "spill").glob("predictions-*")]
    assert sum(map(len, lines)) == 200


def test_with_back_pressure_a_full_logging_process_leaves_rows_in_the_pipe_and_drops_none(
    tmp_path: Path,
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spill folder should be")
    writer = _writer(url, blocker, max_queue=100, drain_seconds=0.5)
    writer.start()
    try:
        offered = 0
        deadline = time.monotonic() + 20
        # Database and spill folder both refuse: the process's queue fills, then the pipe,
        # then this side's buffer, and offer says no instead of anything being dropped.
        while writer.offer(_records(50)) and time.monotonic() < deadline:
            offered += 50
            writer.flush(0.01)
        assert time.monotonic() < deadline, "offer never refused"
        stats = writer.stats()
        assert stats["lost"] == 0 and offered > 100
    finally:
        writer.stop()


def test_a_clean_stop_leaves_no_ledger_for_anyone_to_count(ctx, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    writer = _writer(ctx.db.url, spill)
    writer.start()
    try:
        ledgers = list(spill.glob("ledger-*.bin"))
        assert len(ledgers) == 1
        for _ in range(10):
            writer.offer(_records(10))
        assert writer.flush(20.0)
    finally:
        writer.stop()
    # Everything settled: the ledger goes with the clean stop, nobody counts anything later.
    assert not ledgers[0].exists()
    assert writer.counts["written"] == 100 and writer.counts["lost"] == 0
