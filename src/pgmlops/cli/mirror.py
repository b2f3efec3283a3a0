"""`pgmlops mlflow sync`: make MLflow's registered-model aliases what pgmlops says."""

from __future__ import annotations

import typer

from pgmlops.cli.options import ConfigOpt, JsonOpt, ModelOpt, handled, open_context, print_json

mlflow_app = typer.Typer(help="The MLflow mirror of versions and aliases.", no_args_is_help=True)


@mlflow_app.command("sync")
@handled
def sync(model_name: ModelOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Re-sync a model's aliases to MLflow (after a mirror failure); registers missing versions."""
    from pgmlops.services.mlflow_sync import sync_command

    ctx = open_context(config)
    try:
        result = sync_command(ctx.mlflow_mirror, model_name or ctx.settings.model_name)
    finally:
        ctx.close()
    if as_json:
        print_json(result)
        return
    aliases = ", ".join(
        f"{alias} -> v{a['version']} (MLflow version {a['mlflow_version']})"
        for alias, a in result["aliases"].items()
    )
    line = f"{result['model_name']} in MLflow: {aliases or 'no aliases'}"
    if result["registered"]:
        line += f"; registered v{', v'.join(map(str, result['registered']))}"
    if result["removed"]:
        line += f"; removed {', '.join(result['removed'])}"
    typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add the `mlflow` command group to the main app."""
    app.add_typer(mlflow_app, name="mlflow")
