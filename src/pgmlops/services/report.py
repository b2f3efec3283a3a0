"""A self-contained HTML monitoring report: inline CSS and SVG drawn here, nothing fetched.

The machine that opens it may have no internet, so there is no CDN, script or font: bars
are SVG rectangles computed from the run's stored distributions, which makes any stored run
(not only a fresh one) renderable.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from pgmlops.domain.drift import FeatureDrift
from pgmlops.domain.schema import MISSING_CATEGORY
from pgmlops.services.monitoring import MonitoringResult

_REF, _CUR = "#4c78a8", "#f58518"
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 210, 44, 58, 12

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#1d2733;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 4px}.muted{color:#5b6675;font-size:13px}
.verdict{padding:14px 18px;border-radius:8px;margin:16px 0;font-size:16px}
.bad{background:#fdecea;border:1px solid #e0a39c}.good{background:#e9f6ec;border:1px solid #9fd3ab}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px}
.card{border:1px solid #d8dee6;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:13px;color:#5b6675;font-weight:600}
.card span{font-size:18px}.flag{color:#b3261e;font-weight:600}.ok{color:#1e7b34}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e4e8ee;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f6f9}
.feature{border-top:1px solid #e4e8ee;padding-top:6px}
.legend i{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;vertical-align:-1px}
ul{margin:6px 0 0 18px;padding:0}
"""


def render_html(result: MonitoringResult) -> str:
    """The report of one monitoring run as one HTML document."""
    title = f"Monitoring report — {result.model_name} v{result.version}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(_window_line(result))}</p>',
        _verdict(result),
        _cards(result),
        "<h2>Features</h2>",
        _feature_table(result),
        _legend(),
        *(_feature_section(result, f) for f in result.drift.features),
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
    drift = result.drift
    if result.dataset_drift:
        head = f"Dataset drift detected: {escape(drift.reason)}"
    else:
        head = f"No dataset drift: {escape(drift.reason)}"
    css = "bad" if result.reasons else "good"
    if result.reasons:
        items = "".join(f"<li>{escape(r)}</li>" for r in result.reasons)
        body = f"<ul>{items}</ul>"
    else:
        body = '<div class="muted">No degraded signal.</div>'
    return f'<div class="verdict {css}"><strong>{head}</strong>{body}</div>'


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
            "-" if output is None else f"{output.test} p={_num(output.p_value)}",
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


def _effect(f: FeatureDrift) -> str:
    if f.wasserstein_norm is not None:
        return f"W/σ {_num(f.wasserstein_norm)}"
    if f.js is not None:
        return f"JS {_num(f.js)}"
    return "-"


def _feature_table(result: MonitoringResult) -> str:
    head = (
        "<tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>corrected p</th><th>effect size</th><th>PSI</th><th>missing ref → cur</th>"
        "<th>verdict</th></tr>"
    )
    rows = []
    for f in result.drift.features:
        verdict = '<span class="flag">drift</span>' if f.drifted else '<span class="ok">ok</span>'
        rows.append(
            f'<tr><td><a href="#f-{_anchor(f.name)}">{escape(f.name)}</a></td>'
            f"<td>{f.kind}</td><td>{f.test}</td><td>{_num(f.statistic)}</td>"
            f"<td>{_num(f.p_value)}</td><td>{_num(f.p_adjusted)}</td><td>{_effect(f)}</td>"
            f"<td>{_num(f.psi)}</td><td>{f.missing_rate_reference:.1%} → "
            f"{f.missing_rate_current:.1%}</td><td>{verdict}</td></tr>"
        )
    correction = "Benjamini-Hochberg" if result.drift.policy.correction == "bh" else "Bonferroni"
    note = (
        f'<p class="muted">p-values corrected with {correction}; a feature drifts when its '
        f"corrected p-value is below {result.drift.policy.alpha:g} and an effect size reaches "
        f"its floor (W/σ ≥ {result.drift.policy.wasserstein_floor:g}, "
        f"JS ≥ {result.drift.policy.js_floor:g} or PSI ≥ {result.drift.policy.psi_floor:g}).</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{note}"


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def _legend() -> str:
    return (
        f'<p class="legend muted">share of rows per bin:<i style="background:{_REF}"></i>'
        f'reference (training)<i style="background:{_CUR}"></i>current window</p>'
    )


def _feature_section(result: MonitoringResult, f: FeatureDrift) -> str:
    dist = result.distributions.get(f.name)
    verdict = "drifted" if f.drifted else "no drift"
    head = (
        f'<div class="feature" id="f-{_anchor(f.name)}"><h3>{escape(f.name)} — {verdict}</h3>'
        f'<div class="muted">{escape(f.test)} statistic {_num(f.statistic)}, corrected p '
        f"{_num(f.p_adjusted)}, {_effect(f)}, PSI {_num(f.psi)}: {escape(f.reason)}</div>"
    )
    chart = bar_chart(dist, f.name) if dist else '<p class="muted">no distribution stored</p>'
    return f"{head}{chart}</div>"


def _output_section(result: MonitoringResult) -> str:
    output = result.drift.output
    if output is None:
        return ""
    dist = result.distributions.get("__output__")
    what = {"probability": "P(positive)", "class": "predicted class", "prediction": "prediction"}
    verdict = "drifted" if output.drifted else "no drift"
    chart = bar_chart(dist, "model output") if dist else ""
    return (
        f"<h2>Prediction drift — {verdict}</h2>"
        f'<div class="muted">{escape(what[output.output])}: {output.test} statistic '
        f"{_num(output.statistic)}, p {_num(output.p_value)}, PSI {_num(output.psi)}: "
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
    parts.append(_metric_table(lab, "labelled window", "holdout labels"))
    return "\n".join(parts)


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


def bar_chart(dist: dict[str, Any], title: str) -> str:
    """Reference and current shares side by side per bin or category, as inline SVG."""
    labels = [_label(x) for x in dist.get("labels", [])]
    ref, cur = list(dist.get("reference", [])), list(dist.get("current", []))
    n = min(len(labels), len(ref), len(cur))
    if n == 0:
        return '<p class="muted">no data</p>'
    top = max(max(ref[:n]), max(cur[:n]), 1e-9)
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    slot = plot_w / n
    bar = max(slot * 0.38, 1.0)
    out = [
        # HTML5 inline SVG needs no xmlns, and the report holds no URL at all.
        f'<svg width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}: reference vs current">'
    ]
    for frac in (0.0, 0.5, 1.0):
        y = _PAD_T + plot_h * (1 - frac)
        out.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - 8}" y2="{y:.1f}" stroke="#e4e8ee"/>'
            f'<text x="{_PAD_L - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#5b6675">{top * frac:.0%}</text>'
        )
    rotate = n > 8
    for i in range(n):
        x0 = _PAD_L + i * slot + slot * 0.1
        for j, (share, color, who) in enumerate(((ref[i], _REF, "ref"), (cur[i], _CUR, "cur"))):
            h = plot_h * share / top
            out.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{_PAD_T + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(labels[i])} {who} '
                f"{share:.1%}</title></rect>"
            )
        cx, cy = _PAD_L + (i + 0.5) * slot, _PAD_T + plot_h + 12
        anchor = (
            f'text-anchor="end" transform="rotate(-40 {cx:.1f} {cy:.1f})"'
            if rotate
            else 'text-anchor="middle"'
        )
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" fill="#1d2733" {anchor}>'
            f"{escape(_short(labels[i]))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _label(value: Any) -> str:
    text = str(value)
    return "(missing)" if text == MISSING_CATEGORY else "(other)" if text == "__other__" else text


def _short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
