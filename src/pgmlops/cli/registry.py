"""`pgmlops promote`, `rollback` and `models`: the registry and its production alias."""

from __future__ import annotations

from typing import Annotated

import typer

from pgmlops.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    actor,
    handled,
    open_client,
    print_json,
)


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
    from pgmlops.services.commands import promotion_summary

    result = open_client(config).promote(
        model_name, version, force=force, reason=reason, actor=actor()
    )
    summary = promotion_summary(result)
    if as_json:
        print_json(summary)
        return
    from pgmlops import views

    views.print_promotion(summary)


@handled
def rollback(
    model_name: ModelOpt = None,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit trail.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move production back to the previous production version."""
    from pgmlops.services.commands import rollback_summary

    result = rollback_summary(
        open_client(config).rollback(model_name, reason=reason, actor=actor())
    )
    if as_json:
        print_json(result)
        return
    typer.echo(
        f"rolled back {result['model_name']}: production v{result['previous_version']} "
        f"-> v{result['new_version']}"
    )


@handled
def models(
    model_name: ModelOpt = None,
    history: Annotated[
        bool, typer.Option("--history", help="Show who moved production, when, why.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Which version was production at this ISO time.")
    ] = None,
    card: Annotated[
        str | None,
        typer.Option(
            "--card",
            help="Show one version's model card with its feature importance: a version "
            "number or an alias (production).",
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every registered model; with --model-name, its versions, aliases, metrics and dates.

    --history, --at and --card describe one model (the default model without --model-name).
    """
    from pgmlops import views
    from pgmlops.services.commands import model_detail, overview_summary

    client = open_client(config)
    if card is not None:
        name = model_name or client.settings.model_name
        sep = "/" if card.isdigit() else "@"
        mv = client.version(f"{name}{sep}{card}")
        if as_json:
            print_json(mv.card.model_dump(mode="json"))
        else:
            views.print_card(mv.card, mv.version)
        return
    if model_name is None and (history or at):
        # History is one model's: the default model, as promote and rollback use.
        model_name = client.settings.model_name
    if model_name is None:
        overview = overview_summary(client.models())
        if as_json:
            print_json(overview)
        else:
            views.print_overview(overview)
        return
    events = client.history(model_name, alias=None) if history or at else None
    states = client.aliases(model_name)
    refusals = client.refused_rollbacks(model_name) if events is not None else None
    detail = model_detail(model_name, client.versions(model_name), events, at, states, refusals)
    result = {"models": [detail]}
    if as_json:
        print_json(result)
        return
    views.print_models(result)
    uri = client.settings.mlflow_tracking_uri
    if uri:
        from pgmlops.domain.redact import redact_secrets

        typer.echo(
            f"aliases mirrored to MLflow at {redact_secrets(uri)}; after a move warned that "
            f"MLflow missed it: pgmlops mlflow sync --model-name {model_name}"
        )


def register(app: typer.Typer) -> None:
    """Add the registry commands to the main app."""
    app.command()(promote)
    app.command()(rollback)
    app.command()(models)
    app.command()(deploy)


@handled
def deploy(
    model_name: ModelOpt = None,
    version: Annotated[
        int | None,
        typer.Option(help="Version to deploy (default: the deployed challenger, else latest)."),
    ] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Score beside production; production answers.")
    ] = False,
    canary: Annotated[
        str | None, typer.Option("--canary", help="Share answered by the challenger: 10% or 0.1.")
    ] = None,
    sticky_key: Annotated[
        str | None, typer.Option("--sticky-key", help="Canary by the hash of this field.")
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Remove the challenger.")] = False,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Point another alias (e.g. staging) instead.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit trail.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a challenger (--shadow or --canary SHARE), --stop it, or set --alias NAME."""
    from pgmlops.services.live.deployment import deploy_summary

    event = open_client(config).deploy(
        model_name,
        version,
        shadow=shadow,
        canary=canary,
        sticky_key=sticky_key,
        stop=stop,
        alias=alias,
        reason=reason,
        actor=actor(),
    )
    result = deploy_summary(event)
    if as_json:
        print_json(result)
        return
    was = f"v{result['previous_version']}" if result["previous_version"] else "none"
    now = f"v{result['new_version']}" if result["new_version"] else "none"
    mode = f" ({result['mode']})" if result["mode"] else ""
    typer.echo(f"{result['model_name']} {result['alias']}: {was} -> {now}{mode}")
