"""The `pgmlops` command line: parse flags, call a service, print the answer."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pgmlops import errors

if TYPE_CHECKING:
    from pgmlops.services.context import Context

app = typer.Typer(
    name="pgmlops",
    help="Train, register, promote, serve, monitor and retrain tabular models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# One table maps every error class to an exit code; the most specific class wins.
EXIT_CODES: dict[type[errors.PgmlopsError], int] = {
    errors.ConfigError: 2,
    errors.DataError: 3,
    errors.ValidationError: 3,
    errors.TrainingError: 4,
    errors.StoreError: 5,
    errors.SchemaOutdatedError: 5,
    errors.ArtifactError: 6,
    errors.NotFoundError: 7,
    errors.ConflictError: 8,
    errors.PromotionRefused: 9,
}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default ./pgmlops.yaml).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model-name", "-m", help="Registered model name (default from settings)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: errors.PgmlopsError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def handled(fn: F) -> F:
    """Turn our errors into one line on stderr and a non-zero exit; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if kwargs.get("model_name") is not None:
                from pgmlops.config import check_model_name

                check_model_name(kwargs["model_name"])
            return fn(*args, **kwargs)
        except errors.PromotionRefused as exc:
            _print_refusal(exc)
            raise typer.Exit(exit_code(exc)) from None
        except errors.PgmlopsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("PGMLOPS_DEBUG"):
                raise
            hint = "set PGMLOPS_DEBUG=1 for a traceback"
            typer.echo(f"internal error: {type(exc).__name__}: {exc} ({hint})", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _print_refusal(exc: errors.PromotionRefused) -> None:
    decision = exc.decision
    typer.echo(f"refused: {exc}", err=True)
    for gate in getattr(decision, "gates", ()):
        mark = "PASS" if gate.passed else "FAIL"
        typer.echo(f"  [{mark}] {gate.name}: {gate.detail}", err=True)


def _context(config: Path | None) -> Context:
    from pgmlops.config import load_settings
    from pgmlops.services.context import Context

    return Context(load_settings(config))


def actor() -> str:
    """Who is acting, for the audit trail."""
    import getpass
    import socket

    if os.environ.get("PGMLOPS_ACTOR"):
        return os.environ["PGMLOPS_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
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
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate and register a candidate version."""
    from pgmlops.services.commands import train_command

    ctx = _context(config)
    overrides = {
        "estimator": estimator,
        "task": task,
        "features": features,
        "imbalance": imbalance,
        "outliers": outliers,
        "cv_folds": cv,
        "seed": seed,
    }
    result = train_command(
        ctx,
        data=data,
        query=query,
        target=target,
        model_name=model_name,
        params=param or [],
        drop=drop or [],
        overrides={k: v for k, v in overrides.items() if v is not None},
        onnx=not no_onnx,
        actor=actor(),
        progress=None if as_json else _progress_printer(),
    )
    if as_json:
        _print_json(result)
        return
    from pgmlops import views

    views.print_trained(result)


def _progress_printer() -> Callable[[str], None]:
    from pgmlops import views

    return views.step_printer()


@app.command()
@handled
def promote(
    model_name: ModelOpt = None,
    version: Annotated[
        int | None, typer.Option(help="Version to promote (default: the latest).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Override the gates (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit trail.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the promotion gates decide whether a version becomes production."""
    from pgmlops.services.commands import promote_command

    ctx = _context(config)
    result = promote_command(
        ctx, model_name=model_name, version=version, force=force, reason=reason, actor=actor()
    )
    if as_json:
        _print_json(result)
        return
    from pgmlops import views

    views.print_promotion(result)


@app.command()
@handled
def rollback(
    model_name: ModelOpt = None,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit trail.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move production back to the previous production version."""
    from pgmlops.services.commands import rollback_command

    result = rollback_command(_context(config), model_name=model_name, reason=reason, actor=actor())
    if as_json:
        _print_json(result)
        return
    typer.echo(
        f"rolled back {result['model_name']}: production v{result['previous_version']} "
        f"-> v{result['new_version']}"
    )


@app.command()
@handled
def models(
    model_name: ModelOpt = None,
    history: Annotated[
        bool, typer.Option("--history", help="Show who moved production, when, why.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Which version was production at this ISO time.")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List versions, aliases, key metrics and dates."""
    from pgmlops.services.commands import models_command

    result = models_command(_context(config), model_name=model_name, history=history, at=at)
    if as_json:
        _print_json(result)
        return
    from pgmlops import views

    views.print_models(result)


@db_app.command("upgrade")
@handled
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply pending schema migrations."""
    ctx = _context(config)
    before, _head = ctx.db.revisions()
    after = ctx.db.upgrade()
    if before == after:
        typer.echo(f"{ctx.db.describe()}: schema already at {after}")
    else:
        typer.echo(f"{ctx.db.describe()}: schema {before or 'empty'} -> {after}")


@db_app.command("current")
@handled
def db_current(config: ConfigOpt = None) -> None:
    """Show the schema revision of the database and the one this pgmlops needs."""
    ctx = _context(config)
    current, head = ctx.db.revisions()
    typer.echo(f"{ctx.db.describe()}: at {current or 'empty'}, code expects {head}")


@app.command()
@handled
def demo(
    rows: Annotated[int, typer.Option(help="Demo rows to generate.")] = 20_000,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by serving the API.")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """The whole loop on the embedded default: data, train, promote, refuse a worse model."""
    from pgmlops import views
    from pgmlops.services.commands import models_command
    from pgmlops.services.demo import run_demo

    ctx = _context(config)
    name = run_demo(ctx, rows=rows, actor=actor(), say=views.say)
    views.print_models(models_command(ctx, model_name=name, history=True, at=None))
    if serve:
        from pgmlops.api.server import run_server

        s = ctx.settings.serving
        run_server(
            ctx.settings,
            host=s.host,
            port=s.port,
            workers=s.workers,
            model_name=name,
            config_file=str(config) if config else None,
            demo=True,
        )


@app.command()
@handled
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    model_name: ModelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the production version over HTTP (also: uvicorn pgmlops.api:app)."""
    from pgmlops.api.server import run_server
    from pgmlops.config import load_settings

    settings = load_settings(config)
    s = settings.serving
    if port is not None and not 1 <= port <= 65535:
        raise errors.ConfigError(f"--port {port} is not a TCP port (1-65535)")
    if workers is not None and not 1 <= workers <= 64:
        raise errors.ConfigError(f"--workers {workers} must be between 1 and 64")
    check = _context(config)  # fail early on a bad database URL or an old schema
    check.db.ensure_schema()
    check.close()
    run_server(
        settings,
        host=host or s.host,
        port=port or s.port,
        workers=workers or s.workers,
        model_name=model_name,
        config_file=str(config) if config else None,
    )


@app.command()
@handled
def feedback(
    file: Annotated[Path, typer.Option("--file", help="CSV with prediction_id and label columns.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load true labels for logged predictions from a CSV file."""
    from pgmlops.services.feedback_files import load_feedback_file

    result = load_feedback_file(_context(config), file)
    if as_json:
        _print_json(result)
        return
    typer.echo(
        f"stored {result['stored']} label(s); {result['replaced']} replaced an earlier label"
    )


def _register_commands() -> None:
    from pgmlops import cli_artifacts, cli_monitor, cli_predict, cli_retrain

    cli_artifacts.register(app)
    cli_monitor.register(app)
    cli_predict.register(app)
    cli_retrain.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="pgmlops")


if __name__ == "__main__":
    main()
