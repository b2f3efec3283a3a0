"""`pgmlops retrain`, `worker` and `gc`: retraining, the job worker and retention."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgmlops.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    actor,
    handled,
    open_client,
    open_context,
    print_json,
)
from pgmlops.cli.progress import QuietOpt, steps, wanted


@handled
def retrain(
    model_name: ModelOpt = None,
    if_needed: Annotated[
        bool, typer.Option("--if-needed", help="Retrain only if a trigger fires.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Retrain now even when there is nothing new to learn."),
    ] = False,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Show each trigger's progress, recent runs, queued jobs; change nothing.",
        ),
    ] = False,
    allow_feedback_only: Annotated[
        bool,
        typer.Option(
            "--allow-feedback-only",
            help="Train from feedback and live rows when the recorded source is gone.",
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Runs shown by --status.")
    ] = 10,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Retrain a model: triggers decide with --if-needed; the promotion gates always do."""
    from pgmlops.errors import ConfigError

    if status and (force or if_needed or allow_feedback_only):
        raise ConfigError("--status only reports: drop --force/--if-needed/--allow-feedback-only")
    if status:
        result = open_client(config).retrain_status(model_name, limit)
        if as_json:
            print_json(result)
        else:
            _print_status(result)
        return
    with steps(wanted(as_json, quiet)) as progress:
        outcome = open_client(config).retrain(
            model_name,
            force=force,
            if_needed=if_needed,
            allow_feedback_only=allow_feedback_only or None,
            actor=actor(),
            progress=progress,
        )
    if as_json:
        print_json(outcome.to_dict())
        return
    _print_outcome(outcome.to_dict())


@handled
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Drain the queue, run due checks once, exit.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run queued retrain/monitor jobs and the configured schedule until SIGTERM."""
    import signal

    from pgmlops.services.worker import Worker

    ctx = open_context(config)
    loop = Worker(ctx, say=_stamped)

    def graceful(signum: int, _frame: Any) -> None:
        if loop.stopping:
            raise KeyboardInterrupt
        _stamped(f"{signal.Signals(signum).name}: finishing the job in hand, then stopping")
        loop.stop()

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    cfg = ctx.settings.retraining
    _stamped(
        f"worker {loop.identity} on {ctx.db.describe()}: polling every {cfg.poll_seconds:g}s, "
        f"trigger checks every {cfg.check_seconds:g}s"
        + (f", schedule {cfg.schedule}" if cfg.schedule is not None else "")
    )
    stats = loop.run(once=once)
    _stamped(
        "worker stopped: "
        + ", ".join(
            f"{k.replace('_', ' ')} {v if isinstance(v, int) else len(v)}"
            for k, v in stats.to_dict().items()
        )
    )


@handled
def gc(
    model_name: ModelOpt = None,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=0, help="Newest versions without an alias to keep (5)."),
    ] = None,
    recent_days: Annotated[
        float | None,
        typer.Option("--recent-days", min=0, help="Keep versions that served this recently."),
    ] = None,
    predictions_older_than: Annotated[
        str | None,
        typer.Option(
            "--predictions-older-than",
            help="Also drop logged predictions of every model older than this (90d, 12w), "
            "and their labels.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete old unaliased versions and the artifacts only they used."""
    with open_client(config) as client:
        result = client.collect_garbage(
            model_name,
            keep=keep,
            recent_days=recent_days,
            predictions_older_than=predictions_older_than,
            dry_run=dry_run,
        )
    if as_json:
        print_json(result)
        return
    _print_gc(result)


def _stamped(message: str) -> None:
    from datetime import UTC, datetime

    typer.echo(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}")


def _print_checks(triggers: dict[str, Any] | None) -> None:
    for check in (triggers or {}).get("checks", []):
        typer.echo(f"  [{'x' if check['fired'] else ' '}] {check['detail']}")


def _print_outcome(result: dict[str, Any]) -> None:
    _print_checks(result["triggers"])
    run = result["run"]
    if run is None:
        typer.echo(f"no retraining for {result['model_name']}: {result['message']}")
        return
    data = run.get("data") or {}
    for part, numbers in (data.get("parts") or {}).items():
        if numbers["bad"]:
            reasons = "; ".join(f"{k}: {v}" for k, v in numbers["reasons"].items())
            typer.echo(f"  {part}: {numbers['bad']:,} bad row(s) left out ({reasons})")
    for warning in data.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(result["message"])


def _print_triggers(report: dict[str, Any] | None) -> None:
    if report is None:
        return
    run = report.get("monitoring_run_id")
    source = f"; monitoring signals as of monitoring run {run}" if run is not None else ""
    typer.echo(f"triggers of {report['model_name']} now{source}:")
    for check in report["checks"]:
        typer.echo(f"  [{'x' if check['fired'] else ' '}] {check['detail']}")


def _print_status(result: dict[str, Any]) -> None:
    _print_triggers(result.get("triggers"))
    runs, jobs = result["runs"], result["jobs"]
    if not runs:
        typer.echo(f"no retraining runs for {result['model_name']}")
    for r in runs:
        decision = (r.get("decision") or {}).get("decision", "-")
        rows = (r.get("data") or {}).get("training_rows", "-")
        took = f"{r['seconds']:.1f}s" if r["seconds"] is not None else "-"
        typer.echo(
            f"run {r['id']:>4}  {r['status']:<9} {r['started_at'][:19]}  {took:>7}  "
            f"rows {rows}  candidate v{r['candidate_version'] or '-'}  decision {decision}"
        )
        reasons = "; ".join(r["triggers"].get("reasons", []))
        typer.echo(f"          why: {reasons}")
        if r["error"]:
            typer.echo(f"          note: {r['error']}")
    for j in jobs:
        typer.echo(f"job {j['id']:>4}  {j['status']:<9} {j['kind']} {j['model_name']}")


def _print_gc(result: dict[str, Any]) -> None:
    verb = "would delete" if result["dry_run"] else "deleted"
    for m in result["models"]:
        gone = ", ".join(f"v{v}" for v in m["deleted"]) or "nothing"
        typer.echo(f"{m['model_name']}: {verb} {gone}")
        for k in m["kept"]:
            typer.echo(f"  kept v{k['version']}: {'; '.join(k['reasons'])}")
    typer.echo(
        f"{verb} {result['blobs_deleted']} artifact blob(s), {result['bytes_freed']:,} bytes"
    )
    for error in result["blob_errors"]:
        typer.echo(f"warning: {error}", err=True)
    log = result.get("predictions")
    if log is not None:
        _print_log_retention(log, verb)


def _print_log_retention(log: dict[str, Any], verb: str) -> None:
    before = f"predictions before {log['cutoff'][:19]}Z"
    if "partitions_dropped" not in log:  # SQLite: rows
        rows = "some" if log["rows_deleted"] is None else f"{log['rows_deleted']:,}"
        typer.echo(f"{verb} {rows} {before}")
    else:
        for p in log["partitions_dropped"]:
            approx = "" if p["approx_rows"] is None else f", ~{p['approx_rows']:,} rows"
            typer.echo(f"{verb} partition {p['name']} ({p['from'][:10]} to {p['to'][:10]}{approx})")
        if not log["partitions_dropped"]:
            typer.echo(f"no prediction log partition lies wholly before {log['cutoff'][:19]}Z")
        typer.echo(f"kept {log['partitions_kept']} partition(s) from {log['oldest_kept'] or '-'}")
    if log["labels_deleted"] is not None:
        typer.echo(f"deleted {log['labels_deleted']:,} label(s) of deleted predictions")


def register(app: typer.Typer) -> None:
    """Add `retrain`, `worker` and `gc` to the main app."""
    app.command()(retrain)
    app.command()(worker)
    app.command()(gc)
