"""A self-contained HTML monitoring report: inline CSS and SVG drawn here, nothing fetched.

The machine that opens it may have no internet, so there is no CDN, script or font: charts
are SVG computed from the run's stored numbers, which makes any stored run (not only a fresh
one) renderable. The banner is the run's one overall status (domain/monitoring/status.py), the same
one the JSON, the page and `pgmlops monitor --fail-on` read.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from pgmlops.domain.monitoring.drift import FeatureDrift
from pgmlops.services.monitoring.report.charts import (
    CUR,
    REF,
    bar_chart,
    confusion_chart,
    line_chart,
    residual_chart,
)
from pgmlops.services.monitoring.run import HistoryPoint, MonitoringResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#1d2733;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 4px}.muted{color:#5b6675;font-size:13px}
.verdict{padding:14px 18px;border-radius:8px;margin:16px 0;font-size:16px}
.verdict small{display:block;font-size:13px;color:#5b6675;margin-top:4px}
.degraded{background:#fdecea;border:1px solid #e0a39c}
.warning{background:#fff6e0;border:1px solid #e8c56d}
.ok-box{background:#e9f6ec;border:1px solid #9fd3ab}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px}
.card{border:1px solid #d8dee6;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:13px;color:#5b6675;font-weight:600}
.card span{font-size:18px}.flag{color:#b3261e;font-weight:600}.ok{color:#1e7b34}
.warn{color:#8a5a00;font-weight:600}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e4e8ee;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f6f9}
.feature{border-top:1px solid #e4e8ee;padding-top:6px}
details{margin:12px 0}summary{cursor:pointer;font-weight:600}
.scroll svg.chart{min-width:520px}
.legend i{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;vertical-align:-1px}
ul{margin:6px 0 0 18px;padding:0}svg.chart{display:block;height:auto}
"""


def render_html(result: MonitoringResult, history: list[HistoryPoint] | None = None) -> str:
    """The report of one monitoring run (and, with ``history``, its runs over time)."""
    title = f"Monitoring report — {result.model_name} v{result.version}"
    drifted = [f for f in result.drift.features if f.drifted]
    steady = [f for f in result.drift.features if not f.drifted]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(_window_line(result))}</p>',
        _verdict(result),
        _cards(result),
        _over_time(history or []),
        "<h2>Features</h2>",
        _feature_table(drifted + steady, result),
        _legend(),
        *(_feature_section(result, f) for f in drifted),
        _collapsed(result, steady),
        _output_section(result),
        _performance_section(result),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _window_line(result: MonitoringResult) -> str:
    w = result.window
    span = f"from {_time(w.get('first_at'))} to {_time(w.get('last_at'))}"
    run = f"run {result.run_id}, " if result.run_id is not None else ""
    return (
        f"{run}{_time(result.created_at)} · window of {w.get('rows', 0):,} logged predictions "
        f"{span} · {w.get('labelled', 0):,} with labels · "
        f"{result.drift.n_reference:,} reference rows"
    )


def _time(value: Any) -> str:
    if value is None:
        return "-"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text[:19].replace("T", " ") + " UTC"


def _verdict(result: MonitoringResult) -> str:
    status = result.status
    css = {"ok": "ok-box", "warning": "warning", "degraded": "degraded"}[status.level]
    body = ""
    if status.reasons:
        items = "".join(f'<li class="reason">{escape(r)}</li>' for r in status.reasons)
        body += f"<ul>{items}</ul>"
    if status.warnings:
        items = "".join(f'<li class="warning-line">{escape(w)}</li>' for w in status.warnings)
        head = "<small>Also worth a look:</small>" if status.reasons else ""
        body += f"{head}<ul>{items}</ul>"
    if not result.dataset_drift:
        # A degraded run already says why the dataset drifted; otherwise say it does not.
        body += f"<small>No dataset drift: {escape(result.drift.reason)}</small>"
    return (
        f'<div id="status" class="verdict {css}" data-status="{status.level}">'
        f"<strong>{escape(status.headline)}</strong>{body}</div>"
    )


def _cards(result: MonitoringResult) -> str:
    conf, est, lab = (
        result.confidence,
        result.estimated_performance,
        result.labelled_performance,
    )
    output = result.drift.output
    cards = [
        (
            "Dataset drift",
            f"{len(result.drift.drifted_features)} of {len(result.drift.features)} features",
            result.dataset_drift,
        ),
        (
            "Prediction drift",
            "-" if output is None else f"{output.test} p={_p(output.p_value)}",
            bool(result.prediction_drift),
        ),
        (
            "Mean confidence",
            f"{_num(conf.get('current'))} (ref {_num(conf.get('reference'))})",
            bool(conf.get("degraded")),
        ),
        (
            f"Estimated {est.get('metric') or 'performance'}",
            _metric_pair(est),
            bool(est.get("degraded")),
        ),
        (
            f"Labelled {lab.get('metric') or 'performance'} ({lab.get('n_labels', 0):,} labels)",
            _metric_pair(lab),
            bool(lab.get("degraded")),
        ),
    ]
    html = []
    for name, value, flagged in cards:
        mark = '<span class="flag">degraded</span>' if flagged else '<span class="ok">ok</span>'
        html.append(
            f'<div class="card"><b>{escape(name)}</b><span>{escape(value)}</span> {mark}</div>'
        )
    return f'<div class="cards">{"".join(html)}</div>'


def _metric_pair(perf: dict[str, Any]) -> str:
    metric = perf.get("metric")
    if not metric:
        return perf.get("note") or "-"
    current = (perf.get("metrics") or {}).get(metric)
    reference = (perf.get("reference") or {}).get(metric)
    return f"{_num(current)} (ref {_num(reference)})"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: Any) -> str:
    """A p-value in scientific notation: "0.000" would hide how small it is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.1e}"


def _effect(f: FeatureDrift) -> str:
    if f.wasserstein_norm is not None:
        return f"W/σ {_num(f.wasserstein_norm)}"
    if f.js is not None:
        return f"JS {_num(f.js)}"
    return "-"


def _feature_table(features: list[FeatureDrift], result: MonitoringResult) -> str:
    head = (
        "<tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>corrected p</th><th>effect size</th><th>PSI</th><th>missing ref → cur</th>"
        "<th>verdict</th></tr>"
    )
    rows = []
    for f in features:
        verdict = '<span class="flag">drift</span>' if f.drifted else '<span class="ok">ok</span>'
        rows.append(
            f'<tr><td><a href="#f-{_anchor(f.name)}">{escape(f.name)}</a></td>'
            f"<td>{f.kind}</td><td>{f.test}</td><td>{_num(f.statistic)}</td>"
            f"<td>{_p(f.p_value)}</td><td>{_p(f.p_adjusted)}</td><td>{_effect(f)}</td>"
            f"<td>{_num(f.psi)}</td><td>{f.missing_rate_reference:.1%} → "
            f"{f.missing_rate_current:.1%}</td><td>{verdict}</td></tr>"
        )
    policy = result.drift.policy
    correction = "Benjamini-Hochberg" if policy.correction == "bh" else "Bonferroni"
    note = (
        f'<p class="muted">Drifted features first. p-values corrected with {correction}; a '
        f"feature drifts when its corrected p-value is below {policy.alpha:g} and an effect "
        f"size reaches its floor (W/σ ≥ {policy.wasserstein_floor:g}, "
        f"JS ≥ {policy.js_floor:g} or PSI ≥ {policy.psi_floor:g}).</p>"
    )
    return f'<div class="scroll"><table id="features">{head}{"".join(rows)}</table></div>{note}'


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def _legend() -> str:
    return (
        f'<p class="legend muted">share of rows per bin:<i style="background:{REF}"></i>'
        f'reference (training)<i style="background:{CUR}"></i>current window</p>'
    )


def _feature_section(result: MonitoringResult, f: FeatureDrift) -> str:
    dist = result.distributions.get(f.name)
    verdict = "drifted" if f.drifted else "no drift"
    head = (
        f'<div class="feature" id="f-{_anchor(f.name)}"><h3>{escape(f.name)} — {verdict}</h3>'
        f'<div class="muted">{escape(f.test)} statistic {_num(f.statistic)}, corrected p '
        f"{_p(f.p_adjusted)}, {_effect(f)}, PSI {_num(f.psi)}: {escape(f.reason)}</div>"
    )
    chart = (
        f'<div class="scroll">{bar_chart(dist, f.name)}</div>'
        if dist
        else '<p class="muted">no distribution stored</p>'
    )
    return f"{head}{chart}</div>"


def _collapsed(result: MonitoringResult, steady: list[FeatureDrift]) -> str:
    """The features without drift, folded away: a page per feature hides the ones that moved."""
    if not steady:
        return ""
    charts = "".join(_feature_section(result, f) for f in steady)
    return (
        f'<details id="steady"><summary>{len(steady)} feature{"s" if len(steady) != 1 else ""} '
        f"without drift</summary>{charts}</details>"
    )


def _over_time(history: list[HistoryPoint]) -> str:
    """Drift and performance across stored runs, on dated axes."""
    if not history:
        return ""
    times = [p.created_at for p in history]
    marks = [p.status == "degraded" for p in history]
    drift = line_chart(
        times,
        [("share of drifted features", [p.share_drifted for p in history])],
        "share of drifted features over time",
        percent=True,
        marks=marks,
    )
    metric = next((p.primary_metric for p in reversed(history) if p.primary_metric), "metric")
    perf = line_chart(
        times,
        [
            (f"estimated {metric}", [p.estimated_primary for p in history]),
            (f"labelled {metric}", [p.labelled_primary for p in history]),
            ("mean confidence", [p.mean_confidence for p in history]),
        ],
        "performance over time",
    )
    return (
        f'<h2>Over time</h2><p class="muted">The last {len(history)} stored runs (UTC); a red '
        f'dot on top marks a degraded run.</p><h3>Drift</h3><div id="drift-over-time" '
        f'class="scroll">{drift}</div><h3>Performance</h3><div id="performance-over-time" '
        f'class="scroll">{perf}</div>'
    )


def _output_section(result: MonitoringResult) -> str:
    output = result.drift.output
    if output is None:
        return ""
    dist = result.distributions.get("__output__")
    what = {"probability": "P(positive)", "class": "predicted class", "prediction": "prediction"}
    verdict = "drifted" if output.drifted else "no drift"
    chart = f'<div class="scroll">{bar_chart(dist, "model output")}</div>' if dist else ""
    return (
        f"<h2>Prediction drift — {verdict}</h2>"
        f'<div class="muted">{escape(what[output.output])}: {output.test} statistic '
        f"{_num(output.statistic)}, p {_p(output.p_value)}, PSI {_num(output.psi)}: "
        f"{escape(output.reason)}</div>{chart}"
    )


def _performance_section(result: MonitoringResult) -> str:
    conf = result.confidence
    parts = ["<h2>Confidence</h2>"]
    if conf.get("current") is None:
        parts.append('<p class="muted">No confidence is logged for this model.</p>')
    else:
        parts.append(
            f"<p>Mean confidence {_num(conf.get('current'))} against {_num(conf.get('reference'))}"
            f" on the holdout: a drop of {_pct(conf.get('drop'))} (degraded above "
            f"{_pct(conf.get('limit'))}).</p>"
        )
    est, lab = result.estimated_performance, result.labelled_performance
    parts.append("<h2>Estimated performance (no labels)</h2>")
    parts.append(_metric_table(est, "estimate on the window", est.get("reference_source")))
    parts.append("<h2>Labelled performance (feedback)</h2>")
    bad = lab.get("bad_labels") or {}
    note = f"{lab.get('n_labels', 0):,} usable labels (degraded needs {lab.get('min_labels')})"
    if bad.get("count"):
        shown = ", ".join(repr(x) for x in bad.get("examples", []))
        note += f"; {bad['count']:,} labels not usable for this model, e.g. {shown}"
    parts.append(f'<p class="muted">{escape(note)}</p>')
    if lab.get("judged"):
        parts.append(_judged_table(lab))
    else:
        parts.append(_metric_table(lab, "labelled window", "holdout labels"))
    parts.append(_labelled_view(lab))
    return "\n".join(parts)


def _judged_table(perf: dict[str, Any]) -> str:
    """Every labelled metric with its own verdict: the primary, the promotion guards, the rest."""
    marks = {
        "ok": '<span class="ok">ok</span>',
        "warning": '<span class="warn">warning</span>',
        "degraded": '<span class="flag">degraded</span>',
        "undefined": '<span class="muted">undefined</span>',
    }
    rows = "".join(
        f'<tr data-verdict="{r["verdict"]}"><td>{escape(r["metric"])}'
        f"{'' if r['role'] == 'other' else ' (' + r['role'] + ')'}</td>"
        f"<td>{_num(r['current']) if r['verdict'] != 'undefined' else escape(r['note'])}</td>"
        f"<td>{_num(r['reference'])}</td>"
        f"<td>{_pct(r['drop'])}</td><td>{_p(r['p_value'])}</td><td>{marks[r['verdict']]}</td></tr>"
        for r in perf["judged"]
    )
    return (
        '<div class="scroll"><table id="labelled-metrics"><tr><th>metric</th>'
        "<th>labelled window</th><th>reference (holdout labels)</th><th>drop</th>"
        f"<th>p-value</th><th>verdict</th></tr>{rows}</table></div>"
        f'<p class="muted">A metric is judged when it falls by more than '
        f"{_pct(perf.get('limit'))}: the primary and promotion guards are degraded when the "
        f"fall is significant (p ≤ {perf.get('alpha', 0.01):g}) with at least "
        f"{perf.get('min_labels')} labels; any other significant fall is a warning.</p>"
    )


def _labelled_view(perf: dict[str, Any]) -> str:
    view = perf.get("view") or {}
    if view.get("kind") == "confusion":
        return (
            '<h3>Confusion matrix of the labelled window</h3><div id="confusion">'
            f"{confusion_chart(view)}</div>"
        )
    if view.get("kind") == "residuals":
        shown = len(view.get("predicted") or [])
        return (
            f'<h3>Residuals of the labelled window</h3><p class="muted">{shown:,} of '
            f'{view.get("n", shown):,} labelled rows.</p><div id="residuals" class="scroll">'
            f"{residual_chart(view)}</div>"
        )
    return ""


def _metric_table(perf: dict[str, Any], current: str, reference: str | None) -> str:
    metrics = perf.get("metrics") or {}
    if not metrics:
        return f'<p class="muted">{escape(perf.get("note") or "Nothing to measure yet.")}</p>'
    ref = perf.get("reference") or {}
    rows = "".join(
        f"<tr><td>{escape(k)}{' (primary)' if k == perf.get('metric') else ''}</td>"
        f"<td>{_num(v)}</td><td>{_num(ref.get(k))}</td></tr>"
        for k, v in metrics.items()
    )
    verdict = "degraded" if perf.get("degraded") else "within tolerance"
    return (
        f"<table><tr><th>metric</th><th>{escape(current)}</th>"
        f"<th>reference ({escape(reference or 'holdout')})</th></tr>{rows}</table>"
        f'<p class="muted">{escape(str(perf.get("metric")))} drop {_pct(perf.get("drop"))}, '
        f"limit {_pct(perf.get('limit'))}: {verdict}.</p>"
    )


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"
