"""`pgmlops monitor`: drift, confidence and performance of logged traffic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgmlops.cli.options import ConfigOpt, JsonOpt, ModelOpt, handled, open_client, print_json
from pgmlops.cli.progress import QuietOpt, spinner, wanted

if TYPE_CHECKING:
    from pgmlops.model import MonitoringResult
    from pgmlops.services.monitoring.run import HistoryPoint


@handled
def monitor(
    model_name: ModelOpt = None,
    last: Annotated[
        int | None,
        typer.Option("--last", help="Window: the newest N logged predictions."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Window: predictions of the last 30m, 24h, 7d, ..."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Version to monitor (default: production).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record this run in monitoring_runs.")
    ] = False,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit with code 10 when the run's status is at least this level "
            "(warning or degraded), for CI.",
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare live traffic with the training reference: drift, confidence, performance."""
    from pgmlops.errors import ConfigError

    if fail_on is not None and fail_on not in ("warning", "degraded"):
        raise ConfigError(f"--fail-on must be 'warning' or 'degraded', got {fail_on!r}")

    from pgmlops.services.monitoring.run import check_window

    # A bad window is refused before any step line, named by the flag that set it.
    try:
        check_window(last, since)
    except ConfigError as exc:
        flags = " and ".join(f for f, v in (("--last", last), ("--since", since)) if v is not None)
        raise ConfigError(f"{flags}: {exc.message}") from exc
    if html is not None and not html.resolve().parent.is_dir():
        raise ConfigError(f"--html: folder {html.resolve().parent} does not exist")
    client = open_client(config)
    with spinner(wanted(as_json, quiet), "monitoring: reading the window, testing drift"):
        result = client.monitor(
            model_name,
            window=last if last is not None else since,
            version=version,
            store=not no_store,
        )
    if html is not None:
        with spinner(wanted(as_json, quiet), f"writing the report to {html}"):
            _write_report(result, html, client.monitoring_history(result.model_name))
    if as_json:
        print_json(result.to_json())
        if html is not None:
            typer.echo(f"report written to {html}", err=True)
    else:
        _print_result(result)
        if html is not None:
            typer.echo(f"report written to {html}")
    status = result.status
    if fail_on is not None and status.fails(fail_on):  # type: ignore[arg-type]
        typer.echo(f"status {status.level} (--fail-on {fail_on}): exit {FAIL_ON_EXIT}", err=True)
        raise typer.Exit(FAIL_ON_EXIT)


# Not one of the error codes (2-9): CI can tell "monitoring found a problem" from "it failed".
FAIL_ON_EXIT = 10


def _write_report(result: MonitoringResult, path: Path, history: list[HistoryPoint]) -> None:
    from pgmlops.errors import ConfigError

    try:
        path.write_text(result.to_html(history), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html: cannot write {path}: {exc.strerror}") from exc


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: float | None) -> str:
    """A p-value in scientific notation: 0.000 would hide how small it is."""
    return "-" if value is None else f"{value:.1e}"


def _change(drop: float, down: str, up: str) -> str:
    """A relative drop as words: '12.0% lower' or '1.5% higher'."""
    return f"{drop:.1%} {down}" if drop >= 0 else f"{-drop:.1%} {up}"


def _mark(flagged: bool, bad: str = "DEGRADED") -> str:
    return f"[bold red]{bad}[/bold red]" if flagged else "[green]ok[/green]"


def _print_result(result: MonitoringResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    w = result.window
    first, last = (str(w.get(k) or "-")[:19] for k in ("first_at", "last_at"))
    table = Table(
        title=(
            f"{result.model_name} v{result.version}: {w['rows']:,} predictions "
            f"({first} → {last}) vs {result.drift.n_reference:,} reference rows"
        ),
        title_justify="left",
    )
    for col in ("feature", "test", "statistic", "p-value", "corrected p", "effect size", "PSI"):
        table.add_column(col, justify="left" if col in ("feature", "test") else "right")
    table.add_column("verdict")
    for f in result.drift.features:
        effect = (
            f"W/σ {_num(f.wasserstein_norm, 3)}"
            if f.wasserstein_norm is not None
            else f"JS {_num(f.js, 3)}"
            if f.js is not None
            else "-"
        )
        table.add_row(
            f.name,
            f.test,
            _num(f.statistic),
            _p(f.p_value),
            _p(f.p_adjusted),
            effect,
            _num(f.psi, 3),
            _mark(f.drifted, "DRIFT"),
        )
    console.print(table)
    drift = result.drift
    console.print(f"dataset: {_mark(result.dataset_drift, 'DRIFT')} — {drift.reason}")
    if drift.multivariate is not None:
        multi = drift.multivariate
        console.print(f"multivariate: {_mark(multi.drifted, 'DRIFT')} — {multi.reason}")
    elif drift.multivariate_note:
        console.print(f"multivariate: {drift.multivariate_note}")
    if drift.output is not None:
        out = drift.output
        console.print(
            f"prediction drift ({out.output}): {_mark(out.drifted, 'DRIFT')} — {out.test} "
            f"{_num(out.statistic)}, p {_p(out.p_value)}, PSI {_num(out.psi, 3)}"
        )
    conf = result.confidence
    if conf.get("current") is not None:
        drop = conf.get("drop")
        console.print(
            f"confidence: {_mark(conf['degraded'])} — mean {_num(conf['current'], 3)} vs "
            f"{_num(conf.get('reference'), 3)} at training"
            + (
                f", {_change(drop, 'lower', 'higher')} (limit {conf['limit']:.0%})"
                if drop is not None
                else ""
            )
        )
    _print_performance(console, "estimated performance", result.estimated_performance)
    _print_performance(console, "labelled performance", result.labelled_performance)
    status = result.status
    colour = {"ok": "green", "warning": "yellow", "degraded": "bold red"}[status.level]
    console.print(f"status: [{colour}]{status.level}[/{colour}]")
    for reason in status.reasons:
        console.print(f"[red]•[/red] {reason}")
    for warning in status.warnings:
        console.print(f"[yellow]•[/yellow] {warning}")
    if result.run_id is not None:
        console.print(f"[dim]stored as monitoring run {result.run_id}[/dim]")


def _print_performance(console: Any, title: str, perf: dict[str, Any]) -> None:
    metric = perf.get("metric")
    metrics = perf.get("metrics") or {}
    labels = perf.get("n_labels")
    count = f" on {labels:,} labels" if labels is not None else ""
    if not metric or not metrics:
        note = perf.get("note") or "no labelled rows in the window"
        console.print(f"{title}: - {note}")
        return
    reference = (perf.get("reference") or {}).get(metric)
    drop = perf.get("drop")
    line = (
        f"{title}: {_mark(perf['degraded'])} — {metric} {_num(metrics.get(metric), 3)}{count} "
        f"vs {_num(reference, 3)} reference"
    )
    if drop is not None:
        line += f", {_change(drop, 'worse', 'better')} (limit {perf['limit']:.0%})"
    if labels is not None and labels < perf.get("min_labels", 0):
        line += f"; needs {perf['min_labels']:,} labels to alarm"
    console.print(line)
    bad = perf.get("bad_labels") or {}
    if bad.get("count"):
        shown = ", ".join(repr(x) for x in bad.get("examples", []))
        console.print(
            f"  [yellow]{bad['count']:,} labels not usable for this model[/yellow] ({shown})"
        )


def register(app: typer.Typer) -> None:
    """Add `monitor` to the main app."""
    app.command()(monitor)
