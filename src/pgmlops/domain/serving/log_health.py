"""Whether prediction-log rows are at risk right now, and why: live facts in, reasons out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogFacts:
    """What one process's prediction-log writer knows at this moment."""

    writer_running: bool
    failing_for_s: float | None  # seconds since database writes began to fail; None: they work
    spill_error: str | None  # why the spill folder last refused rows; None: it took them
    held_rows: int  # rows neither the database nor the spill folder has taken
    queue_depth: int
    queue_limit: int
    spill_bytes: int  # spilled rows on disk awaiting replay


def log_risks(f: LogFacts) -> list[str]:
    """One reason per way rows are at risk now; empty when the log is healthy.

    Nothing here is sticky: once the database takes rows again and the spill files are
    replayed, every reason is gone.
    """
    reasons: list[str] = []
    if not f.writer_running:
        reasons.append("prediction log writer is not running")
    if f.failing_for_s is not None:
        reasons.append(f"prediction log: database writes failing for {f.failing_for_s:.0f} s")
    # A refusing spill folder matters only while the database is not taking rows either.
    if f.spill_error is not None and (f.failing_for_s is not None or f.held_rows):
        reasons.append(f"prediction log: spill folder refuses rows: {f.spill_error}")
    if f.held_rows:
        reasons.append(
            f"prediction log: {f.held_rows} rows held in memory only; "
            f"beyond {f.queue_limit} queued rows, new ones are lost"
        )
    if f.spill_bytes:
        reasons.append(f"prediction log: {f.spill_bytes} bytes of spilled rows await replay")
    if f.queue_depth > f.queue_limit // 2:
        reasons.append(f"prediction log: queue at {f.queue_depth} of {f.queue_limit} rows")
    return reasons
