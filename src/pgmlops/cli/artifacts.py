"""`pgmlops artifacts sign`: sign existing versions' artifacts."""

from __future__ import annotations

import typer

from pgmlops import errors
from pgmlops.cli.options import ConfigOpt, JsonOpt, ModelOpt, handled, open_context, print_json

artifacts_app = typer.Typer(help="Artifact signatures.", no_args_is_help=True)


@artifacts_app.command("sign")
@handled
def sign(model_name: ModelOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Sign existing versions' artifacts with the signing key (all models by default)."""
    from pgmlops.services.commands import sign_artifacts_command

    result = sign_artifacts_command(open_context(config), model_name=model_name)
    if as_json:
        print_json(result)
    else:
        typer.echo(
            f"signed {result['files_signed']} file(s) of {len(result['signed'])} version(s) "
            f"with {result['key']} (key id {result['key_id']}); "
            f"{result['already_signed']} already signed"
        )
    if result["refused"]:
        first = result["refused"][0]
        more = len(result["refused"]) - 1
        raise errors.ArtifactError(
            f"{len(result['refused'])} file(s) left unsigned: {first}"
            + (f" (+{more} more, see --json)" if more else "")
        )


def register(app: typer.Typer) -> None:
    """Add the `artifacts` command group to the main app."""
    app.add_typer(artifacts_app, name="artifacts")
