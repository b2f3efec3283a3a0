"""`pgmlops artifacts sign | new-key | rotate-key`: signatures and the signing key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pgmlops import errors
from pgmlops.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    exit_code,
    handled,
    open_context,
    print_json,
)

artifacts_app = typer.Typer(help="Artifact signatures and the signing key.", no_args_is_help=True)

VersionOpt = Annotated[
    int | None, typer.Option("--version", help="The version to sign (with --digest).")
]
DigestOpt = Annotated[
    str | None,
    typer.Option("--digest", help="The digest `pgmlops artifacts sign` listed for that version."),
]


def _listing(plan: dict[str, Any]) -> str:
    files = ", ".join(
        f"{role} sha256 {f['sha256']} ({f['size']:,} bytes)" for role, f in plan["files"].items()
    )
    runs = ", ".join(f"{k} {v}" for k, v in plan["card"].items())
    return (
        f"{plan['model_name']} v{plan['version']}: unsigned {files or 'card only'}; "
        f"its card says {runs}\n  after checking it: pgmlops artifacts sign --model-name "
        f"{plan['model_name']} --version {plan['version']} --digest {plan['digest']}"
    )


def _refusals(refused: list[str], what: str) -> errors.ArtifactError:
    more = len(refused) - 1
    return errors.ArtifactError(
        f"{len(refused)} file(s) {what}: {refused[0]}"
        + (f" (+{more} more, see --json)" if more else "")
    )


@artifacts_app.command("sign")
@handled
def sign(
    model_name: ModelOpt = None,
    version: VersionOpt = None,
    digest: DigestOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List versions waiting for a signature; sign one named with its listed digest."""
    from pgmlops.services.artifact_signing import sign_artifacts_command

    result = sign_artifacts_command(
        open_context(config), model_name=model_name, version=version, digest=digest
    )
    problem: errors.ArtifactError | None = None
    if result["refused"]:
        problem = _refusals(result["refused"], "left unsigned")
    elif result["to_confirm"]:
        problem = errors.ArtifactError(
            f"{len(result['to_confirm'])} version(s) wait for a signature: check each one listed, "
            "then sign it by name with its --digest; nothing was signed"
        )
    if as_json:
        # One JSON document either way: the listing is what a script needs to confirm.
        print_json({**result, "error": str(problem) if problem else None})
        if problem:
            raise typer.Exit(exit_code(problem))
        return
    for plan in result["to_confirm"]:
        typer.echo(_listing(plan))
    typer.echo(
        f"signed {result['files_signed']} file(s) of {len(result['signed'])} version(s) "
        f"with {result['key']} (key id {result['key_id']}); "
        f"{result['already_signed']} already signed"
    )
    if problem:
        raise problem


@artifacts_app.command("new-key")
@handled
def new_key(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Create the signing key file beside the artifact root (never overwrites one)."""
    from pgmlops.services.artifact_signing import new_key_command

    result = new_key_command(open_context(config))
    if as_json:
        print_json(result)
        return
    typer.echo(f"created {result['key']} (key id {result['key_id']}); back it up")
    for other, n in result["files_signed_by_other_keys"].items():
        typer.echo(
            f"{n} file(s) are signed with key id {other}: restore that key, or re-sign them "
            "with `pgmlops artifacts rotate-key --old-key-file OLD_KEY_FILE`"
        )


@artifacts_app.command("rotate-key")
@handled
def rotate_key(
    old_key_file: Annotated[
        Path, typer.Option("--old-key-file", help="File holding the key being replaced.")
    ],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-sign with the current key every file whose signature verifies under the old key."""
    from pgmlops.services.artifact_signing import rotate_key_command

    result = rotate_key_command(open_context(config), old_key_file)
    problem = None
    if result["left"]:
        problem = _refusals(result["left"], "verify under neither key and were not re-signed")
    if as_json:
        print_json({**result, "error": str(problem) if problem else None})
        if problem:
            raise typer.Exit(exit_code(problem))
        return
    typer.echo(
        f"re-signed {result['files_resigned']} file(s) from key id {result['old_key_id']} "
        f"to {result['key_id']}; {result['already_signed']} already under {result['key_id']}"
    )
    if problem:
        raise problem


def register(app: typer.Typer) -> None:
    """Add the `artifacts` command group to the main app."""
    app.add_typer(artifacts_app, name="artifacts")
