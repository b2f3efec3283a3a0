"""The live comparison as a self-contained HTML report (`compare --live --html`, /compare/report).

Drawn from the comparison's JSON (LiveComparison.to_dict), with the monitoring report's
stylesheet: no script, font or CDN.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pgmlops.services.monitoring.report.document import _CSS


def _num(value: Any, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def render_live_html(summary: dict[str, Any]) -> str:
    """The whole report page of one live comparison."""
    title = (
        f"Live comparison — {summary['model_name']} v{summary['production_version']} "
        f"(production) vs v{summary['challenger_version']} (challenger)"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            live_section(summary),
            "</body></html>",
        ]
    )


def live_section(summary: dict[str, Any]) -> str:
    """The comparison's tables, for the report page (or another page to hold)."""
    mode = summary["deployment"] or "not deployed now"
    since = summary["since"] or "all logged traffic"
    parts = [
        f'<p class="muted">challenger: {escape(mode)} · window: {escape(since)} · primary '
        f"metric: {escape(summary['primary_metric'])}</p>",
        "<h2>Traffic, errors and latency</h2>",
        '<div class="scroll"><table id="live-traffic"><tr><th>version</th><th>role</th>'
        "<th>rows</th><th>requests</th><th>errors</th><th>error rate</th><th>p50 ms</th>"
        "<th>p99 ms</th></tr>",
    ]
    for v in summary["versions"]:
        parts.append(
            f"<tr><td>v{v['version']}</td><td>{escape(v['role'])}</td><td>{v['rows']}</td>"
            f"<td>{_num(v['requests'], 'd')}</td><td>{_num(v['errors'], 'd')}</td>"
            f"<td>{_num(v['error_rate'], '.2%')}</td><td>{_num(v['p50_latency_ms'], '.2f')}</td>"
            f"<td>{_num(v['p99_latency_ms'], '.2f')}</td></tr>"
        )
    parts.append("</table></div>")
    bases = {v["role"]: v["error_basis"] for v in summary["versions"]}
    parts.append(
        '<p class="muted">What the errors count: '
        + "; ".join(f"<b>{escape(r)}</b>: {escape(b)}" for r, b in bases.items() if b)
        + "</p>"
    )
    for kind in ("shadow", "canary"):
        part = summary[kind]
        if part is not None:
            parts.append(_traffic(kind, part))
    if summary["shadow"] is None and summary["canary"] is None:
        parts.append("<p>No shadow or canary traffic of the challenger in this window.</p>")
    return "\n".join(parts)


def _traffic(kind: str, part: dict[str, Any]) -> str:
    how = (
        "the same records scored by both versions: compared record by record, the metric's "
        "difference bootstrapped <b>paired</b>"
        if part["pairing"] == "paired"
        else "each record answered by one version: the two sides bootstrapped "
        "<b>unpaired</b> (wider for the same labels)"
    )
    counts = ", ".join(f"{escape(k)} {n}" for k, n in part["records"].items())
    rows = [f'<h2 id="live-{kind}">{kind.capitalize()} traffic</h2>']
    rows.append(f'<p class="muted">{how}; {counts}</p><table>')
    if part["agreement"] is not None:
        rows.append(f"<tr><td>agreement (same class)</td><td>{part['agreement']:.2%}</td></tr>")
    if part["mean_abs_difference"] is not None:
        rows.append(
            f"<tr><td>mean absolute difference</td><td>{part['mean_abs_difference']:.4g}</td></tr>"
        )
    distance = part["score_distance"]
    if distance:
        rows.append(
            f"<tr><td>score distance, Jensen-Shannon ({escape(distance['basis'])})</td>"
            f"<td>{distance['js_distance']:.3f}</td></tr>"
        )
        if distance["ks_statistic"] is not None:
            rows.append(
                f"<tr><td>Kolmogorov-Smirnov statistic</td><td>{distance['ks_statistic']:.3f}"
                "</td></tr>"
            )
    gain = part["labelled"]
    if gain:
        metric = escape(gain["metric"])
        rows.append(
            f"<tr><td>{metric}, production (n={gain['production_n']})</td>"
            f"<td>{_num(gain['production_value'])}</td></tr>"
            f"<tr><td>{metric}, challenger (n={gain['challenger_n']})</td>"
            f"<td>{_num(gain['challenger_value'])}</td></tr>"
        )
        if gain["interval"] is None:
            shown = escape(gain["note"] or "no interval")
        else:
            low, high = gain["interval"]
            verdict = f" — {gain['favours']} better" if gain["favours"] else " — contains 0"
            shown = (
                f"{gain['gain']:+.4f} [{low:+.4f}, {high:+.4f}] "
                f"({gain['confidence'] * 100:g}%, {gain['pairing']}){verdict}"
            )
        rows.append(f"<tr><td>challenger's gain</td><td class='gain'>{shown}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)
