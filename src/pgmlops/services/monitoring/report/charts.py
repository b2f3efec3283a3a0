"""Inline SVG charts for the report: bars per bin, lines over dated runs, a confusion matrix,
a residual scatter. Drawn here from stored numbers, so the file needs nothing fetched.

Every chart scales to its container (``width="100%"`` with a viewBox): a phone shows the whole
chart, smaller, instead of a sideways scroll.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from pgmlops.domain.schema import MISSING_CATEGORY

REF, CUR = "#4c78a8", "#f58518"
SERIES = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
_W, _H, _PAD_L, _PAD_R, _PAD_B, _PAD_T = 640, 210, 48, 12, 58, 12
_TEXT = 'font-size="11" fill="#5b6675"'


def _svg(width: int, height: int, label: str) -> str:
    # HTML5 inline SVG needs no xmlns, and the report holds no URL at all.
    return (
        f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" '
        f'style="max-width:{width}px" role="img" aria-label="{escape(label)}">'
    )


def bar_chart(dist: dict[str, Any], title: str) -> str:
    """Reference and current shares side by side per bin or category, as inline SVG.

    A "missing" bin empty in both the reference and the window is left out: a bar of 0%
    beside every numeric feature says nothing.
    """
    labels = [_label(x) for x in dist.get("labels", [])]
    edges = dist.get("edges")
    if dist.get("kind") == "numeric" and edges and len(labels) == len(edges) + 2:
        # Bin labels from the edges, compact: "55.6k–81.3k" reads where "5.555e+04–…" did not.
        cuts = [_compact(e) for e in edges]
        inner = [f"{a}–{b}" for a, b in itertools.pairwise(cuts)]
        labels = [f"≤{cuts[0]}", *inner, f">{cuts[-1]}", labels[-1]]
    ref, cur = list(dist.get("reference", [])), list(dist.get("current", []))
    n = min(len(labels), len(ref), len(cur))
    keep = [i for i in range(n) if not (labels[i] == "(missing)" and not ref[i] and not cur[i])]
    labels, ref, cur = [labels[i] for i in keep], [ref[i] for i in keep], [cur[i] for i in keep]
    n = len(keep)
    if n == 0:
        return '<p class="muted">no data</p>'
    top = max(max(ref), max(cur), 1e-9)
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_B - _PAD_T
    slot = plot_w / n
    bar = max(slot * 0.38, 1.0)
    out = [_svg(_W, _H, f"{title}: reference vs current")]
    for frac in (0.0, 0.5, 1.0):
        y = _PAD_T + plot_h * (1 - frac)
        out.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#e4e8ee"/>'
            f'<text x="{_PAD_L - 4}" y="{y + 4:.1f}" {_TEXT} text-anchor="end">'
            f"{top * frac:.0%}</text>"
        )
    rotate = n > 8
    for i in range(n):
        x0 = _PAD_L + i * slot + slot * 0.1
        for j, (share, color, who) in enumerate(((ref[i], REF, "ref"), (cur[i], CUR, "cur"))):
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


def line_chart(
    times: Sequence[datetime],
    series: Sequence[tuple[str, Sequence[float | None]]],
    title: str,
    *,
    percent: bool = False,
    marks: Sequence[bool] | None = None,
) -> str:
    """Lines over dated runs with a dated x axis and a labelled y axis; ``marks`` ring points red.

    Needs two runs; a line skips runs where its value is missing.
    """
    stamps = [t.timestamp() for t in times]
    values = [v for _, ys in series for v in ys if _finite(v)]
    if len(stamps) < 2 or not values:
        return '<p class="muted">Fewer than two stored runs: nothing to draw over time yet.</p>'
    lo, hi = (0.0, max(1.0, max(values))) if percent else _padded(min(values), max(values))
    t0, t1 = min(stamps), max(stamps)
    t1 = t1 if t1 > t0 else t0 + 1
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - 40 - _PAD_T

    def px(t: float) -> float:
        return _PAD_L + (t - t0) / (t1 - t0) * plot_w

    def py(v: float) -> float:
        return _PAD_T + plot_h * (1 - (v - lo) / (hi - lo))

    out = [_svg(_W, _H, title)]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        text = f"{v:.0%}" if percent else f"{v:.3g}"
        out.append(
            f'<line x1="{_PAD_L}" y1="{py(v):.1f}" x2="{_W - _PAD_R}" y2="{py(v):.1f}" '
            f'stroke="#e4e8ee"/><text x="{_PAD_L - 4}" y="{py(v) + 4:.1f}" {_TEXT} '
            f'text-anchor="end">{text}</text>'
        )
    base = _PAD_T + plot_h
    out.append(f'<line x1="{_PAD_L}" y1="{base}" x2="{_W - _PAD_R}" y2="{base}" stroke="#9aa5b1"/>')
    for k in range(4):
        t = t0 + (t1 - t0) * k / 3
        anchor = "start" if k == 0 else "end" if k == 3 else "middle"
        out.append(
            f'<line x1="{px(t):.1f}" y1="{base}" x2="{px(t):.1f}" y2="{base + 4}" '
            f'stroke="#9aa5b1"/><text class="tick" x="{px(t):.1f}" y="{base + 16}" {_TEXT} '
            f'text-anchor="{anchor}">{_date(t, t1 - t0)}</text>'
        )
    for n, (name, ys) in enumerate(series):
        color = SERIES[n % len(SERIES)]
        pts = [(px(t), py(v), v) for t, v in zip(stamps, ys, strict=True) if _finite(v)]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
        out.append(
            f'<polyline class="series" data-name="{escape(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{path}"/>'
        )
        for x, y, v in pts:
            shown = f"{v:.1%}" if percent else f"{v:.4g}"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>'
                f"{escape(name)} {shown}</title></circle>"
            )
    for t, flagged in zip(stamps, marks or [], strict=False):
        if flagged:
            out.append(
                f'<circle cx="{px(t):.1f}" cy="{_PAD_T + 4}" r="4" fill="#b3261e">'
                f"<title>degraded run</title></circle>"
            )
    legend_y = _H - 8
    x = _PAD_L
    keys = [(name, SERIES[n % len(SERIES)]) for n, (name, _) in enumerate(series)]
    if any(marks or []):
        keys.append(("degraded run", "#b3261e"))
    for name, color in keys:
        out.append(
            f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{legend_y}" {_TEXT}>{escape(name)}</text>'
        )
        x += 26 + 6.5 * len(name)
    out.append("</svg>")
    return "".join(out)


def confusion_chart(view: dict[str, Any]) -> str:
    """A confusion matrix as a shaded grid of counts (rows: true class, columns: predicted)."""
    labels, matrix = view.get("labels") or [], view.get("matrix") or []
    k = len(labels)
    if k == 0:
        return ""
    cell = max(28, min(64, 360 // k))
    left, top = 110, 40
    width, height = left + cell * k + 10, top + cell * k + 10
    peak = max((c for row in matrix for c in row), default=0) or 1
    out = [_svg(width, height, "confusion matrix: true class by predicted class")]
    out.append(
        f'<text x="{left + cell * k / 2:.0f}" y="12" {_TEXT} text-anchor="middle">predicted</text>'
    )
    for j, name in enumerate(labels):
        out.append(
            f'<text x="{left + (j + 0.5) * cell:.1f}" y="{top - 6}" font-size="11" '
            f'fill="#1d2733" text-anchor="middle">{escape(_short(str(name), 8))}</text>'
        )
    for i, name in enumerate(labels):
        y = top + i * cell
        out.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" font-size="11" fill="#1d2733" '
            f'text-anchor="end">true {escape(_short(str(name), 10))}</text>'
        )
        for j in range(k):
            count = matrix[i][j] if i < len(matrix) and j < len(matrix[i]) else 0
            shade = count / peak
            fill = f"rgba(76,120,168,{0.08 + 0.85 * shade:.2f})"
            ink = "#fff" if shade > 0.55 else "#1d2733"
            out.append(
                f'<rect class="cell" x="{left + j * cell}" y="{y}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{fill}"/><text x="{left + (j + 0.5) * cell - 1:.1f}" '
                f'y="{y + cell / 2 + 4:.1f}" font-size="12" fill="{ink}" text-anchor="middle">'
                f"{count:,}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def residual_chart(view: dict[str, Any]) -> str:
    """Residual (truth - prediction) against prediction, with the zero line."""
    xs, ys = view.get("predicted") or [], view.get("residual") or []
    if not xs:
        return ""
    x_lo, x_hi = _padded(min(xs), max(xs))
    bound = max(abs(min(ys)), abs(max(ys)), 1e-9) * 1.1
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - 40 - _PAD_T

    def px(v: float) -> float:
        return _PAD_L + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return _PAD_T + plot_h * (1 - (v + bound) / (2 * bound))

    out = [_svg(_W, _H, "residuals against predictions")]
    for v in (-bound, 0.0, bound):
        out.append(
            f'<line x1="{_PAD_L}" y1="{py(v):.1f}" x2="{_W - _PAD_R}" y2="{py(v):.1f}" '
            f'stroke="{"#9aa5b1" if v == 0 else "#e4e8ee"}"/><text x="{_PAD_L - 4}" '
            f'y="{py(v) + 4:.1f}" {_TEXT} text-anchor="end">{v:.3g}</text>'
        )
    for k in range(4):
        v = x_lo + (x_hi - x_lo) * k / 3
        out.append(
            f'<text x="{px(v):.1f}" y="{_PAD_T + plot_h + 16}" {_TEXT} text-anchor="middle">'
            f"{v:.4g}</text>"
        )
    out.append(
        f'<text x="{_PAD_L + plot_w / 2:.0f}" y="{_H - 6}" {_TEXT} text-anchor="middle">'
        f"prediction (residual = truth − prediction)</text>"
    )
    for x, y in zip(xs, ys, strict=False):
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="{REF}" opacity=".6"/>')
    out.append("</svg>")
    return "".join(out)


def _compact(value: float) -> str:
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi <= lo:
        return lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _date(stamp: float, span: float) -> str:
    # Runs are stored in UTC and the report says so; a short span needs the hour too.
    moment = datetime.fromtimestamp(stamp, UTC)
    return moment.strftime("%Y-%m-%d" if span > 3 * 86_400 else "%m-%d %H:%M")


def _label(value: Any) -> str:
    text = str(value)
    if text in (MISSING_CATEGORY, "missing"):
        return "(missing)"
    return "(other)" if text == "__other__" else text


def _short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
