"""`pgmlops serve` and `pgmlops demo`: the HTTP API, alone or after the demo loop."""

from __future__ import annotations

from typing import Annotated

import typer

from pgmlops import errors
from pgmlops.cli.options import ConfigOpt, actor, handled, open_context


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

    ctx = open_context(config)
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


@handled
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    model_names: Annotated[
        list[str] | None,
        typer.Option(
            "--model-name",
            "-m",
            help="Model to serve; repeat to serve several (the first answers /predict).",
        ),
    ] = None,
    all_models: Annotated[
        bool,
        typer.Option(
            "--all-models", help="Serve every registered model that has a production version."
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Serve the production version over HTTP (also: uvicorn pgmlops.api:app)."""
    from pgmlops.api.server import run_server
    from pgmlops.config import load_settings
    from pgmlops.services.serving.load import served_model_names

    settings = load_settings(config)
    s = settings.serving
    if port is not None and not 1 <= port <= 65535:
        raise errors.ConfigError(f"--port {port} is not a TCP port (1-65535)")
    if workers is not None and not 1 <= workers <= 64:
        raise errors.ConfigError(f"--workers {workers} must be between 1 and 64")
    check = open_context(config)  # fail early on a bad database URL or an old schema
    try:
        check.db.ensure_schema()
        names = served_model_names(check, model_names or None, all_models=all_models or None)
    finally:
        check.close()
    run_server(
        settings,
        host=host or s.host,
        port=port or s.port,
        workers=workers or s.workers,
        config_file=str(config) if config else None,
        model_names=names if (model_names or all_models or len(names) > 1) else None,
    )


def register(app: typer.Typer) -> None:
    """Add `demo` and `serve` to the main app."""
    app.command()(demo)
    app.command()(serve)
