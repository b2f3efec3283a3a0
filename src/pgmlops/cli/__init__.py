"""The `pgmlops` command line: parse flags, call the Python API (pgmlops.client), print.

One module per command group; what they share (option types, the error wrapper that turns
our errors into one line and an exit code, JSON printing) is in `cli.options`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pgmlops.cli import (
    artifacts,
    compare,
    db,
    feedback,
    mirror,
    monitor,
    predict,
    registry,
    retrain,
    serve,
    train,
)
from pgmlops.cli.options import EXIT_CODES, exit_code, handled, json_error

__all__ = ["EXIT_CODES", "app", "exit_code", "handled", "main"]

app = typer.Typer(
    name="pgmlops",
    help="Train, register, promote, serve, monitor and retrain tabular models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from pgmlops import __version__

        typer.echo(f"pgmlops {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Train, register, promote, serve, monitor and retrain tabular models."""


# The order of --help's command list.
for _group in (
    train,
    registry,
    compare,
    serve,
    predict,
    feedback,
    monitor,
    retrain,
    artifacts,
    mirror,
    db,
):
    _group.register(app)


def main() -> None:
    """Console-script entry point."""
    if "--json" not in sys.argv[1:]:
        app(prog_name="pgmlops")
        return
    # Under --json even the parser's own refusals (unknown option, missing --target) are JSON.
    # Typer vendors click, so its ClickException is recognised by what it carries.
    try:
        code = app(prog_name="pgmlops", standalone_mode=False)
    except typer.Abort:
        json_error("interrupted", "interrupted", 130)
        code = 130
    except Exception as exc:
        message = getattr(exc, "format_message", None)
        if message is None:
            raise
        code = getattr(exc, "exit_code", 2)
        json_error(message(), "usage_error", code)
    sys.exit(code if isinstance(code, int) else 0)
