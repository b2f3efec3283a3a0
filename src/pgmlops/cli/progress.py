"""Progress on a terminal: a spinner with elapsed time for each step, a bar where counts exist.

Services know nothing of rich: they call a plain `step(message)` callback (and batch scoring
an `update(done, total)` one). On a terminal each running step shows a spinner and its elapsed
time, and stays behind as one line with its duration; when stdout is not a terminal, or under
--json/--quiet, nothing is shown at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress display, only the result.")
]


def wanted(as_json: bool = False, quiet: bool = False) -> bool:
    """Whether to show progress: on a terminal, and neither --json nor --quiet."""
    return not (as_json or quiet) and sys.stdout.isatty()


class _Steps:
    """The step callback: each call starts a spinner line; `advance` fills in a count."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tasks: list[Any] = []

    def __call__(self, message: str) -> None:
        self.finish()
        self.tasks.append(self.bar.add_task(message, total=None, count=""))

    def advance(self, done: int, total: int | None) -> None:
        """Iterations of the running step (boosting rounds), shown as 'done/total'."""
        if self.tasks:
            count = f"{done:,}/{total:,}" if total else f"{done:,}"
            self.bar.update(self.tasks[-1], count=count)

    def fail(self) -> None:
        if self.tasks:
            task = self.tasks[-1]
            description = self.bar.tasks[-1].description
            self.bar.update(task, description=f"{description} [red](failed)[/red]")
            self.bar.stop_task(task)

    def finish(self) -> None:
        if self.tasks:
            self.bar.update(self.tasks[-1], total=1, completed=1)
            self.bar.stop_task(self.tasks[-1])


@contextmanager
def steps(enabled: bool, console: Console | None = None) -> Iterator[_Steps | None]:
    """A step callback drawing a spinner per step on stderr; None when not enabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("{task.description}"),
        TextColumn("[cyan]{task.fields[count]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True)) as bar:
        callback = _Steps(bar)
        try:
            yield callback
        except BaseException:
            callback.fail()  # the error line follows; the step it broke says so
            raise
        callback.finish()


@contextmanager
def spinner(enabled: bool, message: str) -> Iterator[None]:
    """One step that has no sub-steps to report (a monitoring run, writing a report)."""
    with steps(enabled) as step:
        if step is not None:
            step(message)
        yield


@contextmanager
def rows_bar(
    enabled: bool, what: str = "scoring"
) -> Iterator[Callable[[int, int | None], None] | None]:
    """A bar with rows/s and elapsed time for a job that counts rows; None when not enabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("rows", total=None, rate="-")

        def update(done: int, total: int | None) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
            bar.update(task, completed=done, total=total, rate=rate)

        yield update
