"""`pgmlops train`: train, evaluate and register a candidate version."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pgmlops.cli.options import (
    ConfigOpt,
    DecimalOpt,
    EncodingOpt,
    JsonOpt,
    ModelOpt,
    SepOpt,
    actor,
    cli_message,
    handled,
    open_client,
    print_json,
)
from pgmlops.cli.progress import QuietOpt, steps, wanted


@handled
def train(
    data: Annotated[
        str, typer.Option("--data", help="CSV/Parquet path, or a DB URL with --query.")
    ],
    target: Annotated[str, typer.Option("--target", help="Column to predict.")],
    model_name: ModelOpt = None,
    query: Annotated[
        str | None, typer.Option(help="SQL query to run against --data (a DB URL).")
    ] = None,
    estimator: Annotated[str | None, typer.Option(help="Estimator class by dotted path.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Estimator parameter k=v (repeatable).")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="binary, multiclass or regression (inferred if omitted).")
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option("--drop", help="Column to leave out (repeatable).")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Custom feature step 'module:function'.")
    ] = None,
    imbalance: Annotated[str | None, typer.Option(help="none, class_weight or smote.")] = None,
    outliers: Annotated[
        str | None, typer.Option(help="Training-only outliers: none, clip or remove.")
    ] = None,
    cv: Annotated[
        int | None, typer.Option("--cv", help="Cross-validation folds (0 = off).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    no_onnx: Annotated[bool, typer.Option("--no-onnx", help="Skip the ONNX copy.")] = False,
    sep: SepOpt = None,
    encoding: EncodingOpt = None,
    decimal: DecimalOpt = None,
    engine: Annotated[
        str | None, typer.Option(help="local, or dask (see training.dask_address).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train, evaluate and register a candidate version."""
    from pgmlops.services.commands import train_summary

    # The command prints every note below, in flag terms; without a handler, training's own
    # log line reaches stderr through logging's last resort and says it a second time.
    logging.getLogger("pgmlops.services.training").addHandler(logging.NullHandler())
    with steps(wanted(as_json, quiet)) as progress:
        result = open_client(config).train_run(
            data,
            target=target,
            model_name=model_name,
            query=query,
            params=param or [],
            drop=drop or [],
            onnx=not no_onnx,
            actor=actor(),
            progress=progress,
            estimator=estimator,
            task=task,
            features=features,
            imbalance=imbalance,
            outliers=outliers,
            cv_folds=cv,
            seed=seed,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            engine=engine,
        )
    summary = train_summary(result)
    # Training's notes speak Python ("sep= overrides"); here they name the flags.
    summary["warnings"] = [cli_message(note) for note in summary["warnings"]]
    if as_json:
        print_json(summary)
        return
    from pgmlops import views

    views.print_trained(summary)


def register(app: typer.Typer) -> None:
    """Add `train` to the main app."""
    app.command()(train)
