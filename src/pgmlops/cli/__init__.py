"""The `pgmlops` command line: parse flags, call the Python API (pgmlops.client), print.

One module per command group; what they share (option types, the error wrapper that turns
our errors into one line and an exit code, JSON printing) is in `cli.options`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pgmlops.cli import (
    artifacts,
    db,
    feedback,
    monitor,
    predict,
    registry,
    retrain,
    serve,
    train,
)
from pgmlops.cli.options import EXIT_CODES, exit_code, handled

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
for _group in (train, registry, serve, predict, feedback, monitor, retrain, artifacts, db):
    _group.register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="pgmlops")
