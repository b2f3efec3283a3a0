"""Progress on a terminal: a spinner with elapsed time for each step, a bar where counts exist.

Services know nothing of rich: they call a plain `step(message)` callback (and batch scoring
an `update(done, total)` one). On a terminal each running step shows a spinner and its elapsed
time, and stays behind as one line with its duration. When stdout is not a terminal (a cron
job, CI, `| tee log`) each step is one plain line on stderr, with no control characters, so a
log still says what ran; under --json or --quiet nothing is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from rich.console import Console

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress display, only the result.")
]


# "live": spinners and bars on a terminal; "lines": one plain line a step; "": nothing.
Display = Literal["live", "lines", ""]


def wanted(as_json: bool = False, quiet: bool = False) -> Display:
    """How to show progress: live on a terminal, plain lines off one, nothing for --json/--quiet."""
    if as_json or quiet:
        return ""
    return "live" if sys.stdout.isatty() else "lines"


class _Lines:
    """The step callback off a terminal: one plain line a step on stderr."""

    def __call__(self, message: str) -> None:
        typer.echo(f"› {message}", err=True)

    def advance(self, done: int, total: int | None) -> None:
        """Iterations are not worth a log line each."""


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
def steps(
    enabled: Display | bool, console: Console | None = None
) -> Iterator[_Steps | _Lines | None]:
    """A step callback on stderr (spinners live, plain lines off a terminal); None when off."""
    if not enabled:
        yield None
        return
    if enabled == "lines":
        yield _Lines()
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
def spinner(enabled: Display | bool, message: str) -> Iterator[None]:
    """One step that has no sub-steps to report (a monitoring run, writing a report)."""
    with steps(enabled) as step:
        if step is not None:
            step(message)
        yield


@contextmanager
def rows_bar(
    enabled: Display | bool, what: str = "scoring"
) -> Iterator[Callable[[int, int | None], None] | None]:
    """A bar with rows/s and elapsed time on a terminal; None otherwise (no line per batch)."""
    if not enabled or enabled == "lines":
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
