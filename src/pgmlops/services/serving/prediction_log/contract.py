"""What the serving side may ask of a prediction log writer, whichever kind runs.

`PredictionLogWriter` (a writer thread in the serving process) and `ProcessLogWriter` (a
logging process fed through a pipe) both satisfy `PredictionLog`; only the thread writer
settles each request's rows one by one, so only it is an `AcknowledgedLog`. The route and
the app are typed against these protocols, not against either class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pgmlops.domain.registry.records import PredictionRecord

# Called once per acknowledged request: None when its rows are committed or spilled, else why not.
Done = Callable[[str | None], None]


@runtime_checkable
class PredictionLog(Protocol):
    """A bounded queue of log rows that a background writer drains into the database."""

    # True only for a writer whose submit_acknowledged reports each request's fate.
    acknowledged: bool
    # Rows it holds at the most; beyond, offer refuses and submit drops (counted as lost).
    max_queue: int

    def submit(self, records: list[PredictionRecord]) -> None:
        """Queue the rows; those beyond max_queue are dropped and counted as lost."""
        ...

    def offer(self, records: list[PredictionRecord]) -> bool:
        """Queue the rows if they all fit; False (nothing queued) when they do not."""
        ...

    def refuse(self, n: int) -> None:
        """Count n rows whose request was refused because the log had no room."""
        ...

    def start(self) -> None:
        """Start the background writer."""
        ...

    def stop(self, timeout: float | None = None) -> None:
        """Drain what it can within the drain time, spill the rest, and stop."""
        ...

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written or spilled; False on timeout."""
        ...

    @property
    def depth(self) -> int:
        """Rows queued and not yet written."""
        ...

    @property
    def alive(self) -> bool:
        """Whether the background writer is running."""
        ...

    def stats(self) -> dict[str, object]:
        """Counters and health reasons for /health and /metrics."""
        ...


@runtime_checkable
class AcknowledgedLog(PredictionLog, Protocol):
    """A log that tells each request when its rows are committed or spilled."""

    def submit_acknowledged(self, records: list[PredictionRecord], done: Done) -> bool:
        """Queue the rows and call done once they are settled; False (not queued) when full."""
        ...
