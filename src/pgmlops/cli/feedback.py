"""`pgmlops feedback`: true labels for logged predictions, from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgmlops.cli.options import ConfigOpt, JsonOpt, ModelOpt, handled, open_client, print_json


@handled
def feedback(
    file: Annotated[
        Path, typer.Option("--file", help="CSV with prediction_id (or the --key column) and label.")
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Join labels by this column (e.g. customer_id) to the model's latest "
            "prediction logged with that key, instead of by prediction_id.",
        ),
    ] = None,
    model_name: ModelOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load true labels for logged predictions from a CSV file."""
    with open_client(config) as client:
        result = client.feedback(file, key=key, model_name=model_name)
    if as_json:
        print_json(result)
        return
    typer.echo(
        f"stored {result['stored']} label(s); {result['replaced']} replaced an earlier label"
    )
    unmatched = result.get("unmatched_keys") or []
    if unmatched:
        shown = ", ".join(unmatched[:10]) + (", ..." if len(unmatched) > 10 else "")
        typer.echo(f"{len(unmatched)} key(s) match no logged prediction, not stored: {shown}")


def register(app: typer.Typer) -> None:
    """Add `feedback` to the main app."""
    app.command()(feedback)
