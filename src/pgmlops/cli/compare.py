"""`pgmlops compare --live`: production against the challenger on logged live traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pgmlops.cli.options import ConfigOpt, JsonOpt, ModelOpt, handled, open_client, print_json
from pgmlops.errors import ConfigError


@handled
def compare(
    model_name: ModelOpt = None,
    live: Annotated[
        bool, typer.Option("--live", help="Compare on logged live traffic (shadow, canary).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only traffic since: 24h, 7d or an ISO time (default: all)."),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="Challenger version (default: the deployed challenger)."),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Production against the challenger: traffic, errors, latency, agreement, labelled gain."""
    if not live:
        raise ConfigError(
            "compare needs --live: versions are compared offline by the promotion gates "
            "(`pgmlops promote`)"
        )
    if html is not None and not html.resolve().parent.is_dir():
        raise ConfigError(f"--html: folder {html.resolve().parent} does not exist")
    result = open_client(config).compare(model_name, live=True, since=since, version=version)
    summary = result.to_dict()
    if html is not None:
        from pgmlops.services.monitoring.report.live import render_live_html

        html.write_text(render_live_html(summary), encoding="utf-8")
        typer.echo(f"report written to {html}", err=as_json)
    if as_json:
        print_json(summary)
        return
    print_comparison(summary)


def _num(value: Any, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def print_comparison(summary: dict[str, Any]) -> None:
    """The comparison as text: a row per version and role, then shadow and canary."""
    mode = f" ({summary['deployment']})" if summary["deployment"] else ""
    since = f" since {summary['since']}" if summary["since"] else ""
    typer.echo(
        f"{summary['model_name']}: production v{summary['production_version']} vs "
        f"challenger v{summary['challenger_version']}{mode}{since}"
    )
    typer.echo(
        f"  {'version':<8}{'role':<12}{'rows':>8}{'requests':>10}{'errors':>8}"
        f"{'err rate':>10}{'p50 ms':>10}{'p99 ms':>10}"
    )
    for v in summary["versions"]:
        typer.echo(
            f"  v{v['version']:<7}{v['role']:<12}{v['rows']:>8}{_num(v['requests'], 'd'):>10}"
            f"{_num(v['errors'], 'd'):>8}{_num(v['error_rate'], '.2%'):>10}"
            f"{_num(v['p50_latency_ms'], '.2f'):>10}{_num(v['p99_latency_ms'], '.2f'):>10}"
        )
    if not summary["versions"]:
        typer.echo("  no logged traffic of either version in this window")
    else:
        typer.echo(
            "  errors: a shadow row's are production rows it missed; failed production and "
            "canary requests are not logged (see /metrics)"
        )
    for kind in ("shadow", "canary"):
        part = summary[kind]
        if part is None:
            continue
        counts = ", ".join(f"{k} {n}" for k, n in part["records"].items())
        typer.echo(f"{kind} ({part['pairing']}): {counts}")
        if part["agreement"] is not None:
            typer.echo(f"  agreement: {part['agreement']:.2%} of records got the same class")
        if part["mean_abs_difference"] is not None:
            typer.echo(f"  mean absolute difference: {part['mean_abs_difference']:.4g}")
        distance = part["score_distance"]
        if distance:
            ks = f", KS {distance['ks_statistic']:.3f}" if distance["ks_statistic"] else ""
            typer.echo(
                f"  score distance: Jensen-Shannon {distance['js_distance']:.3f}{ks} "
                f"({distance['basis']})"
            )
        labelled = part["labelled"]
        if labelled:
            typer.echo(
                f"  {labelled['metric']}: production {_num(labelled['production_value'])}, "
                f"challenger {_num(labelled['challenger_value'])}"
            )
            typer.echo(f"  gain: {labelled['describe']}")
            if labelled["favours"]:
                typer.echo(f"  the interval excludes 0: {labelled['favours']} is better")
    if summary["shadow"] is None and summary["canary"] is None:
        typer.echo("no shadow or canary traffic of the challenger in this window")


def register(app: typer.Typer) -> None:
    """Add `compare` to the main app."""
    app.command()(compare)
