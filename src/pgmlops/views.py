"""Terminal rendering for the CLI (rich); no logic beyond layout."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def say(message: str) -> None:
    console.print(message)


def fitting_table(title: str, columns: tuple[str, ...], whole: tuple[str, ...] = ()) -> Table:
    """A table whose long cells wrap to fit the terminal; `whole` columns are never split."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        # Numbers ('roc_auc=0.8301', one a line) stay whole; text wraps at spaces, else folds.
        table.add_column(col, overflow="fold", no_wrap=col in whole)
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_trained(result: dict[str, Any]) -> None:
    for warning in result.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(
        f"registered [bold]{result['model_name']} v{result['version']}[/bold] "
        f"({result['task']}, {result['estimator'].rsplit('.', 1)[-1]}) in {result['seconds']:.1f}s"
    )
    metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in result["all_metrics"].items())
    console.print(f"holdout: {metrics}")
    onnx = result["onnx_detail"]
    if onnx["present"]:
        rows = onnx.get("checked_rows")
        on = f" on {rows:,} holdout rows" if rows else ""
        console.print(f"ONNX copy stored (max |diff| {onnx['max_abs_diff']:.1e} vs pipeline{on})")
    elif not result["engine"].startswith("pipeline (onnx rejected"):  # already a warning
        console.print(f"no ONNX copy: {onnx.get('reason')}")
    console.print(
        f"next: pgmlops promote --model-name {result['model_name']} --version {result['version']}"
    )


def print_promotion(result: dict[str, Any]) -> None:
    decision = result.get("decision")
    if decision:
        for gate in decision["gates"]:
            mark = "[green]PASS[/green]" if gate["passed"] else "[red]FAIL[/red]"
            console.print(f"  {mark} {gate['name']}: {gate['detail']}")
    verb = "forced to" if result["action"] == "force" else "promoted to"
    console.print(
        f"{result['model_name']} v{result['candidate_version']} {verb} production "
        f"(was {('v' + str(result['previous_version'])) if result['previous_version'] else 'none'})"
    )


def print_models(result: dict[str, Any]) -> None:
    for model in result["models"]:
        tasks = sorted({v["task"] for v in model["versions"]})
        table = fitting_table(
            f"{model['name']} ({', '.join(tasks)})" if tasks else model["name"],
            ("version", "aliases", "key metrics", "engine", "rows", "created"),
            whole=("aliases", "key metrics", "rows"),
        )
        notes = []
        for v in model["versions"]:
            # One metric a line: a narrow terminal wraps the table, never cuts a number.
            metrics = "\n".join(f"{k}={_fmt(x)}" for k, x in v["metrics"].items())
            engine = v.get("engine") or ("onnx" if v["onnx"] else "pipeline")
            if ":" in engine:  # the why is a sentence: below the table, where it has room
                notes.append(f"v{v['version']} engine: {engine}")
                engine = engine.split(":", 1)[0] + ")"
            table.add_row(
                str(v["version"]),
                ",".join(v["aliases"]),
                metrics,
                engine,
                f"{v['rows']:,}",
                v["created_at"][:16].replace("T", " "),
            )
        console.print(table)
        live = model.get("challenger")
        if live:
            console.print(f"challenger: v{live['version']} ({live['describe']})", markup=False)
        for note in notes:
            console.print(note, markup=False, highlight=False)
        if "history" in model:
            hist = fitting_table(
                "alias history", ("at", "alias", "action", "from", "to", "actor", "reason")
            )
            for e in model["history"]:
                hist.add_row(
                    e["at"][:19],
                    e.get("alias", "production"),
                    e["action"],
                    _fmt(e["from"]),
                    _fmt(e["to"]),
                    e["actor"],
                    e["reason"] or "",
                )
            console.print(hist)
        if "production_at" in model:
            p = model["production_at"]
            console.print(
                f"production at {p['at']}: v{p['version']}"
                if p["version"]
                else f"no production at {p['at']}"
            )


def print_card(card: Any, version: int) -> None:
    """A version's card: what it is, its holdout metrics and its feature importance as bars."""
    console.print(
        f"[bold]{card.model_name} v{version}[/bold]: {card.task}, target {card.target}, "
        f"{card.estimator.rsplit('.', 1)[-1]}, trained {str(card.created_at)[:19]} on "
        f"{card.data.rows:,} rows"
    )
    console.print("holdout: " + ", ".join(f"{k}={_fmt(v)}" for k, v in card.metrics.items()))
    imp = card.feature_importance
    if imp is None:
        console.print("feature importance: not computed for this version (trained before it)")
        return
    console.print(
        f"feature importance: fall of {imp.metric} when the feature is shuffled "
        f"({imp.rows:,} holdout rows, {imp.repeats} repeats)"
    )
    top = max((abs(v) for v in imp.values.values()), default=0.0) or 1.0
    width = max((len(n) for n in imp.values), default=0)
    for name, value in imp.values.items():
        bar = "█" * max(0, round(24 * value / top))
        console.print(f"  {name:<{width}} {value:>9.4f} [cyan]{bar}[/cyan]", highlight=False)


def print_overview(result: dict[str, Any]) -> None:
    """One row per registered model (`pgmlops models` without a name)."""
    if not result["models"]:
        console.print("no models registered yet: `pgmlops train --data ... --target ...`")
        return
    table = fitting_table(
        "registered models",
        ("model", "production", "versions", "last trained", "primary metric"),
        whole=("primary metric",),
    )
    for m in result["models"]:
        metric = m["primary_metric"]
        table.add_row(
            m["name"],
            f"v{m['production_version']}" if m["production_version"] else "-",
            str(m["versions"]),
            (m["last_trained"] or "-")[:19],
            f"{metric}={_fmt(m['primary_value'])}" if metric else "-",
        )
    console.print(table)
