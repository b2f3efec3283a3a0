"""`pgmlops feedback`: true labels for logged predictions, from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgmlops.cli.options import ConfigOpt, JsonOpt, handled, open_context, print_json


@handled
def feedback(
    file: Annotated[Path, typer.Option("--file", help="CSV with prediction_id and label columns.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load true labels for logged predictions from a CSV file."""
    from pgmlops.services.feedback_files import load_feedback_file

    result = load_feedback_file(open_context(config), file)
    if as_json:
        print_json(result)
        return
    typer.echo(
        f"stored {result['stored']} label(s); {result['replaced']} replaced an earlier label"
    )


def register(app: typer.Typer) -> None:
    """Add `feedback` to the main app."""
    app.command()(feedback)
