"""CLI command for batch scoring (`pgmlops predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgmlops.cli.options import (
    ConfigOpt,
    DecimalOpt,
    EncodingOpt,
    JsonOpt,
    ModelOpt,
    SepOpt,
    handled,
    open_client,
    print_json,
)
from pgmlops.cli.progress import QuietOpt, rows_bar, wanted


@handled
def predict(
    data: Annotated[
        str,
        typer.Option("--data", help="CSV/Parquet path, or a database URL with --query."),
    ],
    out: Annotated[
        str,
        typer.Option("--out", help="out.parquet, out.csv or postgresql://…?table=NAME."),
    ],
    model_name: ModelOpt = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Version to use (default: production).")
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Alias to use (default: production).")
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="SQL query to run against --data.")
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="Input column copied to the output (a row key)."),
    ] = None,
    canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="Answer the canary's share of rows with the challenger, as /predict does; "
            "adds version and role columns.",
        ),
    ] = False,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not write the rows to the prediction log.")
    ] = False,
    chunk_rows: Annotated[
        int | None,
        typer.Option("--chunk-rows", help="Rows read, scored and written at a time [50,000]."),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option("--on-error", help="A bad row: fail the job, or skip it into --rejects."),
    ] = "fail",
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="CSV for refused rows (with --on-error skip)."),
    ] = None,
    sep: SepOpt = None,
    encoding: EncodingOpt = None,
    decimal: DecimalOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score a file or a query with a registered version; log every row like /predict."""
    with open_client(config) as client, rows_bar(wanted(as_json, quiet)) as progress:
        summary = client.predict_batch(
            data,
            out,
            model_name=model_name,
            version=version,
            alias=alias,
            query=query,
            id_column=id_column,
            log=not no_log,
            chunk_rows=chunk_rows,
            on_error=on_error,  # type: ignore[arg-type]  # checked by the service
            rejects=rejects,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            canary=canary,
            progress=progress,
        )
    if as_json:
        print_json(summary.to_dict())
        return
    line = (
        f"scored {summary.rows} row(s) with {summary.model_name} v{summary.version} "
        f"in {summary.seconds:.1f} s: {summary.written} written to {summary.output}"
    )
    if summary.rejected:
        line += f", {summary.rejected} refused into {summary.rejects}"
    if summary.logged:
        line += f", {summary.logged} logged"
    if summary.canary is not None:
        rows = summary.canary["rows"]
        line += (
            f"; {summary.canary['mode']}: {rows.get('canary', 0)} answered by challenger "
            f"v{summary.canary['challenger_version']}, {rows.get('production', 0)} by production"
        )
        if rows.get("canary_failed"):
            line += f" ({rows['canary_failed']} handed back to production: the challenger failed)"
    typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add `predict` (batch scoring) to the main app."""
    app.command()(predict)
