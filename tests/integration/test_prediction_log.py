"""The prediction-log writer against a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.services.serving.prediction_log import PredictionLogWriter
from pgmlops.store.db import Database
from pgmlops.store.prediction_log.predictions import PredictionStore


def _records(n: int) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [
        PredictionRecord(i, "churn", 1, now, {"Age": 40.0}, "0", 0.2, 0.6, None, 1.0, "r")
        for i in prediction_ids(n)
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 2**70},  # no integer column holds it
        {"features": {"Geography": "a\x00b"}},  # PostgreSQL's jsonb refuses a NUL
    ],
    ids=["huge-version", "nul-in-features"],
)
def test_a_row_the_database_refuses_is_rejected_alone(ctx, bad, tmp_path: Path) -> None:
    if "features" in bad and not ctx.db.is_postgres:
        pytest.skip("SQLite stores a NUL in JSON text")
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, tmp_path / "spill", batch_size=100, flush_seconds=0.05)
    good = _records(9)
    bad = replace(_records(1)[0], **bad)
    writer.start()
    try:
        writer.submit([*good[:5], bad, *good[5:]])
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert store.count("churn") == 9
    assert writer.counts["written"] == 9 and writer.counts["rejected"] == 1
    assert writer.counts["spilled"] == 0


def _spill_line(r: PredictionRecord) -> bytes:
    return orjson.dumps(asdict(r)) + b"\n"


def test_replay_quarantines_a_corrupt_line_and_a_torn_last_line(ctx, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    good = _records(6)
    # A dead process's file: a corrupt line in the middle, a half-written line at the end.
    orphan = spill / "predictions-999999999.jsonl"
    body = b"".join(_spill_line(r) for r in good[:3]) + b"not json at all\n"
    orphan.write_bytes(body + b"".join(_spill_line(r) for r in good[3:]) + b'{"id":"0190')
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, spill, batch_size=100, flush_seconds=0.05)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while store.count("churn") < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        writer.submit(_records(2))  # the writer is alive and still writes new rows
        assert writer.flush(10.0)
    finally:
        writer.stop()
    assert store.count("churn") == 8
    assert writer.counts["replayed"] == 6 and writer.counts["quarantined"] == 2
    assert (spill / f"quarantine-{os.getpid()}.jsonl").read_bytes() == (
        b'not json at all\n{"id":"0190\n'
    )
    assert not orphan.exists() and writer.stats()["spill_bytes"] == 0


def _unreachable_store() -> PredictionStore:
    # A port nothing listens on: every write fails at once, as with a stopped server.
    return PredictionStore(Database("postgresql://postgres@127.0.0.1:9/nowhere"))


def test_with_database_and_spill_folder_both_gone_rows_are_held_then_counted_lost(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spill folder should be")
    writer = PredictionLogWriter(
        _unreachable_store(), blocker, max_queue=100, batch_size=50, flush_seconds=0.05
    )
    writer.start()
    for _ in range(30):
        writer.submit(_records(10))
        time.sleep(0.01)
    time.sleep(0.5)
    stats = writer.stats()
    assert writer.alive
    assert stats["status"] == "degraded"
    assert any("database writes failing" in r for r in stats["reasons"])
    assert any("spill folder refuses rows" in r for r in stats["reasons"])
    assert stats["queue_depth"] == 100 and stats["lost"] == 200
    writer.stop(0.5)
    # Nothing was written: every row submitted is counted lost, none vanished silently.
    assert writer.counts["queued"] == 100 and writer.counts["lost"] == 300
    assert writer.counts["written"] == writer.counts["spilled"] == 0


def test_offer_refuses_a_request_the_full_queue_cannot_take_and_drops_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spill folder should be")
    writer = PredictionLogWriter(
        _unreachable_store(), blocker, max_queue=100, batch_size=50, flush_seconds=0.05
    )
    writer.start()
    try:
        taken = [writer.offer(_records(10)) for _ in range(10)]
        time.sleep(0.3)
        # Full: the eleventh request is refused whole (the route waits, then answers 503).
        assert all(taken) and not writer.offer(_records(10))
        assert not writer.offer(_records(1))
        writer.refuse(10)
        stats = writer.stats()
        assert stats["queue_depth"] == 100 and stats["lost"] == 0 and stats["refused"] == 10
    finally:
        writer.stop(0.5)
    # After stop nothing is taken: a request then is refused, never queued and forgotten.
    assert not writer.offer(_records(1))


def test_offer_takes_a_request_larger_than_the_queue_when_it_is_empty(ctx, tmp_path: Path) -> None:
    writer = PredictionLogWriter(PredictionStore(ctx.db), tmp_path / "spill", max_queue=100)
    writer.start()
    try:
        assert writer.offer(_records(250))
        assert writer.flush(20.0)
    finally:
        writer.stop()
    assert writer.counts["written"] == 250 and writer.counts["lost"] == 0


def test_acknowledged_submit_answers_once_the_rows_are_in_the_table(ctx, tmp_path: Path) -> None:
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(
        store, tmp_path / "spill", batch_size=100, flush_seconds=5.0, acknowledged=True
    )
    writer.start()
    answers: list[str | None] = []
    seen: list[int] = []

    def done(error: str | None) -> None:
        # Called by the writer thread: the rows must be committed already.
        seen.append(store.count("churn"))
        answers.append(error)

    try:
        started = time.monotonic()
        assert writer.submit_acknowledged(_records(3), done)
        while not answers and time.monotonic() - started < 10:
            time.sleep(0.01)
        # Group commit: no waiting for the 5 s flush window.
        assert time.monotonic() - started < 2.0
    finally:
        writer.stop()
    assert answers == [None] and seen == [3]


def test_acknowledged_submit_reports_an_error_when_nothing_takes_the_rows(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    writer = PredictionLogWriter(_unreachable_store(), blocker, acknowledged=True)
    writer.start()
    answers: list[str | None] = []
    try:
        assert writer.submit_acknowledged(_records(2), answers.append)
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        writer.stop(0.5)
    assert answers and answers[0] and answers[0].startswith("not logged:")
    # An unanswered prediction is not a lost one.
    assert writer.counts["lost"] == 0 and writer.depth == 0


def test_stop_drains_the_queue_into_the_spill_file_when_the_database_is_gone(
    tmp_path: Path,
) -> None:
    writer = PredictionLogWriter(
        _unreachable_store(), tmp_path / "spill", batch_size=50, flush_seconds=0.05
    )
    writer.start()
    for _ in range(20):
        writer.submit(_records(10))
    writer.stop(5.0)
    assert writer.counts["spilled"] == 200 and writer.counts["lost"] == 0
    lines = writer.spill_path.read_bytes().splitlines()
    assert len(lines) == 200


def test_a_spill_file_of_unreadable_lines_does_not_count_as_the_database_recovering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    # A dead process's file holding only a torn line: replaying it writes nothing.
    (spill / "predictions-999999999.jsonl").write_bytes(b'{"id":"0190')
    writer = PredictionLogWriter(_unreachable_store(), spill, batch_size=50, flush_seconds=0.05)
    writer.submit(_records(10))  # the first batch finds the database gone
    caplog.set_level("INFO", logger="pgmlops.services.serving.prediction_log")
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while writer.counts["quarantined"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = writer.stats()
    finally:
        writer.stop(0.5)
    assert writer.counts["quarantined"] == 1 and writer.counts["spilled"] == 10
    assert not [r for r in caplog.records if "recovered" in r.getMessage()]
    assert any("database writes failing" in r for r in stats["reasons"])


def _hold_rows_then_die(spill: str) -> None:
    """A serving process whose writer holds 120 rows in its queue when it is killed."""
    import signal

    writer = PredictionLogWriter(_unreachable_store(), spill, batch_size=10_000, flush_seconds=60.0)
    writer.start()
    for _ in range(12):
        assert writer.offer(_records(10))
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)


def test_rows_a_killed_process_held_are_counted_lost_by_the_next_writer(
    ctx, tmp_path: Path
) -> None:
    import multiprocessing

    spill = tmp_path / "spill"
    victim = multiprocessing.get_context("fork").Process(target=_hold_rows_then_die, args=(spill,))
    victim.start()
    victim.join(30)
    assert victim.exitcode == -9
    assert len(list(spill.glob("ledger-*.bin"))) == 1
    survivor = PredictionLogWriter(PredictionStore(ctx.db), spill)
    survivor.start()
    try:
        deadline = time.monotonic() + 10
        while survivor.counts["lost"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = survivor.stats()
    finally:
        survivor.stop()
    assert stats["lost"] == stats["lost_dead_worker"] == 120
    # Claimed once: the dead process's ledger is gone, the survivor's closed at its stop.
    assert list(spill.glob("ledger-*.bin")) == []


def test_spill_and_quarantine_files_are_for_the_owner_only(tmp_path: Path) -> None:
    # They hold feature values: 0600 whatever the umask, also a file an older version made.
    spill = tmp_path / "spill"
    spill.mkdir()
    orphan = spill / "predictions-999999999.jsonl"
    orphan.write_bytes(b"not json at all\n")
    quarantine = spill / f"quarantine-{os.getpid()}.jsonl"
    quarantine.write_bytes(b"")
    quarantine.chmod(0o644)
    old_umask = os.umask(0o022)
    writer = PredictionLogWriter(_unreachable_store(), spill, batch_size=50, flush_seconds=0.05)
    try:
        writer.start()
        writer.submit(_records(10))
        deadline = time.monotonic() + 10
        while writer.counts["quarantined"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop(0.5)
        os.umask(old_umask)
    assert writer.counts["quarantined"] == 1 and writer.counts["spilled"] == 10
    assert quarantine.read_bytes() == b"not json at all\n"
    for path in (quarantine, writer.spill_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_health_clears_the_spill_error_once_the_folder_takes_rows_again(
    ctx, tmp_path: Path
) -> None:
    # The folder cannot be made (a file in its place) while the database takes every row:
    # nothing is ever spilled, so only a look at the folder can tell it was repaired.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spill folder should be")
    store = PredictionStore(ctx.db)
    writer = PredictionLogWriter(store, blocker / "spill", batch_size=50, flush_seconds=0.05)
    writer.start()
    try:
        writer.submit(_records(10))
        assert writer.flush(10.0)
        broken = writer.stats()
        blocker.unlink()
        deadline = time.monotonic() + 10
        while writer.stats()["spill_error"] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        repaired = writer.stats()
    finally:
        writer.stop()
    assert "Not a directory" in broken["spill_error"]
    assert repaired["spill_error"] is None, repaired
    assert store.count("churn") == 10
    assert not list((blocker / "spill").glob(".probe-*"))  # the look leaves nothing behind
