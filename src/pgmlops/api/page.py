"""GET /: a self-contained page (no CDN) — a form built from the feature schema, the card."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter()

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgmlops</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:20px;margin:0} header span{opacity:.8}
main{display:grid;grid-template-columns:minmax(320px,1fr) minmax(320px,1fr);gap:20px;padding:20px}
section{background:#fff;border-radius:8px;padding:16px 20px;box-shadow:0 1px 3px #0002}
h2{font-size:16px;margin:0 0 12px}
label{display:block;font-size:13px;margin:8px 0 2px;font-weight:600}
input,select{width:100%;padding:6px;box-sizing:border-box;border:1px solid #bbc;border-radius:4px}
small{color:#667;font-weight:normal}
button{margin-top:14px;padding:8px 18px;background:#2957d6;color:#fff;border:0;border-radius:4px;
cursor:pointer;font-size:15px}
#result{margin-top:14px;padding:12px;border-radius:6px;background:#eef2ff;display:none}
#result.error{background:#fde8e8}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #e3e5ea;padding:4px 6px;text-align:left}
.ok{color:#137333}.bad{color:#b3261e}
</style></head>
<body>
<header><h1>pgmlops</h1><span id="headline">loading…</span></header>
<main>
<section><h2>Predict</h2><form id="form"></form><div id="result" role="status"></div></section>
<section><h2>Model card</h2><div id="card"></div>
<h2 style="margin-top:18px">Promotion history</h2><div id="history"></div>
<h2 style="margin-top:18px">Monitoring</h2><div id="monitoring">no monitoring run yet</div></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const fmt = (v) => typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(4)) : (v ?? "-");

function buildForm(schema) {
  const form = $("form");
  form.innerHTML = "";
  for (const f of schema.features) {
    const id = "f_" + f.name;
    let html = `<label for="${esc(id)}">${esc(f.name)} `;
    if (f.kind === "numeric") {
      html += `<small>(${fmt(f.min)} … ${fmt(f.max)})</small></label>` +
        `<input id="${esc(id)}" name="${esc(f.name)}" type="number" step="any" ` +
        `value="${f.mean !== null ? Number(f.mean.toPrecision(4)) : ""}" ` +
        `placeholder="${fmt(f.min)} … ${fmt(f.max)}">`;
    } else {
      const opts = (f.categories || []).filter(c => c !== "__missing__")
        .map(c => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
      html += `</label><select id="${esc(id)}" name="${esc(f.name)}">${opts}</select>`;
    }
    form.insertAdjacentHTML("beforeend", html);
  }
  form.insertAdjacentHTML("beforeend", '<button type="submit" id="predict">Predict</button>');
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const record = {};
    for (const f of schema.features) {
      const raw = $("f_" + f.name).value;
      record[f.name] = f.kind === "numeric" ? (raw === "" ? null : Number(raw)) : raw;
    }
    const box = $("result");
    box.style.display = "block";
    const resp = await fetch("predict", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(record)});
    const body = await resp.json();
    if (!resp.ok) { box.className = "error"; box.textContent = body.error; return; }
    box.className = "";
    let html = `<div id="prediction"><b>Prediction:</b> ${esc(body.prediction)}</div>`;
    if (typeof body.probability === "number")
      html += `<div><b>Probability:</b> ${body.probability.toFixed(3)} · <b>risk:</b> ${esc(body.risk_level)}</div>`;
    else if (body.probability)
      html += "<div>" + Object.entries(body.probability).map(([k, v]) => `${esc(k)}: ${v.toFixed(3)}`).join(" · ") + "</div>";
    html += `<div><small>v${body.version} · id ${esc(body.prediction_id)}</small></div>`;
    box.innerHTML = html;
  };
}

function showCard(data) {
  const card = data.card;
  const s = data.serving;
  $("headline").textContent = `${s.model} v${s.version} · ${s.engine} engine`;
  const rows = [["version", s.version], ["task", card.task], ["estimator", card.estimator],
    ["trained", card.created_at.slice(0, 19).replace("T", " ")], ["rows", card.data.rows],
    ["threshold", card.threshold], ...Object.entries(card.metrics)];
  $("card").innerHTML = "<table>" + rows.map(([k, v]) =>
    `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("") + "</table>";
  const hist = (data.models[0] || {}).history || [];
  $("history").innerHTML = hist.length ? "<table><tr><th>when</th><th>action</th><th>from</th>" +
    "<th>to</th><th>who</th><th>why</th></tr>" + hist.slice().reverse().map(h =>
    `<tr><td>${esc(h.at.slice(0, 19).replace("T", " "))}</td><td>${esc(h.action)}</td>` +
    `<td>${esc(h.from ?? "-")}</td><td>${esc(h.to)}</td><td>${esc(h.actor)}</td>` +
    `<td>${esc(h.reason ?? "")}</td></tr>`).join("") + "</table>" : "none";
}

function sparkline(values, label) {
  const pts = values.filter(v => typeof v === "number");
  if (pts.length < 2) return "";
  const lo = Math.min(...pts), hi = Math.max(...pts), w = 260, h = 40;
  const xy = pts.map((v, i) => `${(i / (pts.length - 1) * w).toFixed(1)},` +
    `${(h - (hi === lo ? h / 2 : (v - lo) / (hi - lo) * h)).toFixed(1)}`).join(" ");
  return `<div><small>${esc(label)} (${fmt(pts[0])} → ${fmt(pts[pts.length - 1])})</small><br>` +
    `<svg width="${w}" height="${h}"><polyline fill="none" stroke="#2957d6" points="${xy}"/></svg></div>`;
}

async function showMonitoring() {
  const latest = await fetch("monitoring/drift");
  if (!latest.ok) return;
  const run = await latest.json();
  const drift = run.dataset_drift;
  let html = `<div class="${drift ? "bad" : "ok"}"><b>${drift ? "Data drift detected" : "No dataset drift"}</b></div>`;
  if (run.reasons && run.reasons.length) html += "<ul>" + run.reasons.map(r => `<li>${esc(r)}</li>`).join("") + "</ul>";
  const hist = await fetch("monitoring/history");
  if (hist.ok) {
    const series = await hist.json();
    const runs = series.runs || series;
    if (Array.isArray(runs)) {
      const col = (k) => runs.map(r => r[k]);
      html += sparkline(col("share_drifted"), "share of drifted features");
      html += sparkline(col("mean_confidence"), "mean confidence");
      html += sparkline(col("estimated_primary"), "estimated primary metric");
      html += sparkline(col("labelled_primary"), "labelled primary metric");
    }
  }
  $("monitoring").innerHTML = html;
}

async function main() {
  const resp = await fetch("models");
  const data = await resp.json();
  if (!resp.ok || !data.card) {
    $("headline").textContent = data.error || (data.serving && data.serving.error) || "no production model";
    return;
  }
  buildForm(data.card.feature_schema);
  showCard(data);
  showMonitoring().catch(() => {});
}
main();
</script></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_PAGE)
