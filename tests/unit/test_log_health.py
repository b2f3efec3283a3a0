"""Prediction-log health: reasons come from facts of now, and the settings that shape the log."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgmlops.config import load_settings
from pgmlops.domain.serving.log_health import LogFacts, log_risks
from pgmlops.errors import ConfigError

HEALTHY = LogFacts(
    writer_running=True,
    failing_for_s=None,
    spill_error=None,
    held_rows=0,
    queue_depth=120,
    queue_limit=200_000,
    spill_bytes=0,
)


def test_a_healthy_log_has_no_reason() -> None:
    assert log_risks(HEALTHY) == []


def test_a_full_spill_folder_matters_only_while_the_database_is_failing() -> None:
    full = replace(HEALTHY, spill_error="No space left on device")
    assert log_risks(full) == []
    reasons = log_risks(replace(full, failing_for_s=3.2))
    assert reasons == [
        "prediction log: database writes failing for 3 s",
        "prediction log: spill folder refuses rows: No space left on device",
    ]


def test_held_rows_spilled_bytes_a_half_full_queue_and_a_dead_writer_are_each_named() -> None:
    facts = replace(
        HEALTHY,
        writer_running=False,
        held_rows=500,
        spill_error="Read-only file system",
        spill_bytes=4096,
        queue_depth=150_000,
    )
    reasons = log_risks(facts)
    assert reasons[0] == "prediction log writer is not running"
    assert "spill folder refuses rows: Read-only file system" in reasons[1]
    assert reasons[2].startswith("prediction log: 500 rows held in memory only")
    assert reasons[3] == "prediction log: 4096 bytes of spilled rows await replay"
    assert reasons[4] == "prediction log: queue at 150000 of 200000 rows"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("PGMLOPS_SERVING__LOG_DURABILITY", "always", "serving.log_durability"),
        ("PGMLOPS_SERVING__LOG_DRAIN_SECONDS", "-1", "serving.log_drain_seconds"),
        ("PGMLOPS_SERVING__LOG_QUEUE_SIZE", "10", "serving.log_queue_size"),
        ("PGMLOPS_SERVING__LOG_WRITER", "fork", "serving.log_writer"),
        ("PGMLOPS_SERVING__LOG_WHEN_FULL", "block", "serving.log_when_full"),
        ("PGMLOPS_SERVING__LOG_WAIT_SECONDS", "-1", "serving.log_wait_seconds"),
        ("PGMLOPS_SERVING__LOG_WAIT_SECONDS", "3601", "serving.log_wait_seconds"),
    ],
)
def test_bad_log_settings_are_refused_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path, env: str, value: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_the_default_log_is_fast_bounded_and_drains_on_shutdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    serving = load_settings().serving
    assert serving.log_durability == "fast" and serving.log_writer == "process"
    assert serving.log_queue_size == 200_000 and serving.log_drain_seconds == 10.0
    # Back-pressure by default: a full log makes requests wait, then 503; never a silent drop.
    assert serving.log_when_full == "wait" and serving.log_wait_seconds == 5.0
