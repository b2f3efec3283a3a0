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
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline}
header h1{font-size:20px;margin:0} header span{opacity:.8}
#pick{display:flex;gap:6px;align-items:baseline;margin:0;color:#fff} #pick[hidden]{display:none}
#picker{width:auto;padding:2px 4px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,340px),1fr));gap:20px;padding:20px;
max-width:1200px;margin:0 auto}
section{background:#fff;border-radius:8px;padding:16px 20px;box-shadow:0 1px 3px #0002;min-width:0}
h2{font-size:16px;margin:0 0 12px}
label{display:block;font-size:13px;margin:8px 0 2px;font-weight:600}
input,select{width:100%;padding:6px;box-sizing:border-box;border:1px solid #bbc;border-radius:4px;font:inherit}
small{color:#667;font-weight:normal}
button{margin-top:14px;padding:8px 18px;background:#2957d6;color:#fff;border:0;border-radius:4px;
cursor:pointer;font-size:15px}
button:disabled{opacity:.6;cursor:progress}
#result{margin-top:14px;padding:12px;border-radius:6px;background:#eef2ff;display:none;overflow-wrap:anywhere}
#result.error{background:#fde8e8;color:#7a1a14}
#result .note{margin-top:6px;color:#1d2330}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #e3e5ea;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{white-space:nowrap}
.ok{color:#137333}.bad{color:#b3261e}
</style></head>
<body>
<header><h1>pgmlops</h1><span id="headline">loading…</span>
<label id="pick" hidden>model <select id="picker"></select></label></header>
<main>
<section><h2>Predict</h2><form id="form" novalidate></form><div id="result" role="status"></div></section>
<section><h2>Model card</h2><div id="card" class="table"></div>
<h2 style="margin-top:18px">Promotion history</h2><div id="history" class="table"></div>
<h2 style="margin-top:18px">Monitoring</h2><div id="monitoring">no monitoring run yet</div>
<h2 style="margin-top:18px">Retraining triggers</h2><div id="retraining">-</div></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
// Integers as they are, large numbers without decimals, small ones to four significant digits.
const fmt = (v) => {
  if (typeof v !== "number") return v ?? "-";
  if (Number.isInteger(v) || Math.abs(v) >= 1000) return v.toFixed(0);
  return String(Number(v.toPrecision(Math.abs(v) >= 1 ? 6 : 4)));
};
const when = (iso) => iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "-";
// The version (and schema) the form was built for; a prediction from another version means
// production moved while the page was open.
let shown = null;
// The models this server serves (the first answers /predict) and the one the page shows.
let served = [];
let current = null;
const predictPath = () => current && current !== served[0] ?
  `models/${encodeURIComponent(current)}/predict` : "predict";

function showPicker() {
  if (served.length < 2 || !$("pick").hidden) return;
  $("picker").innerHTML = served.map(n => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  $("picker").value = current;
  $("pick").hidden = false;
  $("picker").onchange = () => {
    current = $("picker").value;
    shown = null;
    $("result").style.display = "none";
    refresh(false).then(() => showRetraining());
  };
}

async function getJSON(url, options) {
  let resp;
  try {
    resp = await fetch(url, options);
  } catch (err) {
    return {ok: false, status: 0, body: {error: `could not reach the server (${err.message})`}};
  }
  const text = await resp.text();
  try {
    return {ok: resp.ok, status: resp.status, body: JSON.parse(text)};
  } catch (err) {
    const snippet = text.replace(/<[^>]*>/g, " ").replace(/\\s+/g, " ").trim().slice(0, 200);
    return {ok: false, status: resp.status,
      body: {error: `HTTP ${resp.status} ${resp.statusText}: ${snippet || "not a JSON answer"}`}};
  }
}

function defaultValue(f) {
  if (typeof f.mean !== "number") return "";
  // Features with whole-number ranges (counts, flags) default to a whole number.
  if (Number.isInteger(f.min) && Number.isInteger(f.max)) return String(Math.round(f.mean));
  return String(Number(f.mean.toPrecision(4)));
}

function buildForm(schema, keep, keyColumn) {
  const form = $("form");
  form.innerHTML = "";
  for (const f of schema.features) {
    const id = "f_" + f.name;
    let html = `<label for="${esc(id)}">${esc(f.name)} `;
    if (f.date) {
      html += `<small>(date)</small></label><input id="${esc(id)}" name="${esc(f.name)}" ` +
        `type="text" value="${esc(f.date.reference)}" placeholder="2024-03-01">`;
    } else if (f.kind === "numeric") {
      const range = typeof f.min === "number" ? `${fmt(f.min)} … ${fmt(f.max)}` : "";
      html += `<small>${range ? "(" + esc(range) + ")" : ""}</small></label>` +
        `<input id="${esc(id)}" name="${esc(f.name)}" type="number" step="any" ` +
        `value="${esc(defaultValue(f))}" placeholder="${esc(range || "empty = missing")}">`;
    } else {
      const opts = (f.categories || []).filter(c => c !== "__missing__")
        .map(c => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
      html += `</label><select id="${esc(id)}" name="${esc(f.name)}">${opts}</select>`;
    }
    form.insertAdjacentHTML("beforeend", html);
    const el = $(id);
    const old = keep && keep[f.name];
    if (old !== undefined && old !== null && old !== "" &&
        (el.tagName !== "SELECT" || [...el.options].some(o => o.value === old))) el.value = old;
  }
  // The key column (an identifier training left out): optional, logged, not used by the model.
  if (keyColumn && !schema.features.some(f => f.name === keyColumn)) {
    form.insertAdjacentHTML("beforeend", `<label for="key">${esc(keyColumn)} <small>(optional: ` +
      `kept in the prediction log as its key, not used by the model)</small></label>` +
      `<input id="key" name="${esc(keyColumn)}" data-key="${esc(keyColumn)}" type="text" maxlength="200">`);
    const old = keep && keep[keyColumn];
    if (old) $("key").value = old;
  }
  form.insertAdjacentHTML("beforeend", '<button type="submit" id="predict">Predict</button>');
  form.onsubmit = (ev) => { ev.preventDefault(); predict(schema); };
}

function formValues() {
  const values = {};
  for (const el of $("form").querySelectorAll("input,select")) values[el.name] = el.value;
  return values;
}

function showResult(html, isError) {
  const box = $("result");
  box.style.display = "block";
  box.className = isError ? "error" : "";
  box.innerHTML = html;
}

async function predict(schema) {
  const record = {};
  for (const f of schema.features) {
    const el = $("f_" + f.name);
    if (f.date) {
      record[f.name] = el.value.trim() === "" ? null : el.value.trim();
    } else if (f.kind === "numeric") {
      // A number input holding text that is not a number reads as "": say so, do not send null.
      if (el.validity.badInput) {
        showResult(`${esc(f.name)}: not a number (leave it empty for a missing value)`, true);
        el.focus();
        return;
      }
      record[f.name] = el.value === "" ? null : Number(el.value);
    } else {
      record[f.name] = el.value;
    }
  }
  const key = $("key");
  if (key && key.value.trim() !== "") record[key.dataset.key] = key.value.trim();
  const button = $("predict");
  button.disabled = true;
  button.textContent = "Predicting…";
  try {
    const {ok, body} = await getJSON(predictPath(), {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(record)});
    if (!ok) {
      const error = body.error || body.reason || "the server refused the request";
      showResult(esc(error), true);
      // A refusal may come from a form built for a version that is no longer in production.
      const before = shown && shown.version;
      await refresh(true);
      if (shown && before !== null && shown.version !== before)
        $("result").insertAdjacentHTML("beforeend", `<div class="note">Production changed from ` +
          `v${esc(before)} to v${esc(shown.version)} while this page was open: the form now ` +
          `follows v${esc(shown.version)}. Check the values and predict again.</div>`);
      return;
    }
    let html = `<div id="prediction"><b>Prediction:</b> ${esc(fmt(body.prediction))}</div>`;
    if (typeof body.probability === "number") {
      const card = shown && shown.card;
      const of = card && card.positive_class != null ? ` of ${esc(card.target)} = ${esc(card.positive_class)}` : "";
      const cut = card && typeof card.threshold === "number" ? ` (threshold ${esc(fmt(card.threshold))})` : "";
      html += `<div><b>Probability${of}:</b> ${body.probability.toFixed(3)}${cut}` +
        (body.risk_level ? ` · <b>risk:</b> ${esc(body.risk_level)}` : "") + "</div>";
    } else if (body.probability) {
      html += "<div>" + Object.entries(body.probability).map(([k, v]) =>
        `${esc(k)}: ${v.toFixed(3)}`).join(" · ") + "</div>";
    }
    const unknown = (body.flags || {}).unknown_categories;
    if (unknown && unknown.length)
      html += `<div><small>unknown categories, treated as missing: ${esc(unknown.join(", "))}</small></div>`;
    html += `<div><small>${esc(body.model)} v${esc(body.version)} · id ${esc(body.prediction_id)}</small></div>`;
    showResult(html, false);
    if (shown && body.version !== shown.version) await refresh(true);
  } finally {
    const again = $("predict");
    if (again) { again.disabled = false; again.textContent = "Predict"; }
  }
}

function showCard(data) {
  const card = data.card;
  const s = data.serving;
  $("headline").textContent = `${s.model} v${s.version} · engine: ${s.engine_detail || s.engine}`;
  const estimator = String(card.estimator);
  const rows = [["version", s.version], ["task", card.task], ["target", card.target],
    ["estimator", estimator.split(".").pop()], ["trained", when(card.created_at)],
    ["rows", card.data.rows], ["threshold", card.threshold],
    // Metrics in name order: the stored card's key order differs between databases.
    ...Object.entries(card.metrics).sort(([a], [b]) => a.localeCompare(b))];
  $("card").innerHTML = "<table>" + rows.map(([k, v]) =>
    `<tr><th>${esc(k)}</th><td${k === "estimator" ? ` title="${esc(estimator)}"` : ""}>` +
    `${esc(fmt(v))}</td></tr>`).join("") + "</table>";
  const hist = (data.models[0] || {}).history || [];
  $("history").innerHTML = hist.length ? "<table><tr><th>when</th><th>action</th><th>from</th>" +
    "<th>to</th><th>who</th><th>why</th></tr>" + hist.slice().reverse().map(h =>
    `<tr><td>${esc(when(h.at))}</td><td>${esc(h.action)}</td>` +
    `<td>${esc(h.from ?? "-")}</td><td>${esc(h.to)}</td><td>${esc(h.actor ?? "-")}</td>` +
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
  const latest = await getJSON("monitoring/drift");
  if (!latest.ok) return;
  const run = latest.body;
  const drift = run.dataset_drift;
  let html = `<div class="${drift ? "bad" : "ok"}"><b>${drift ? "Data drift detected" : "No dataset drift"}</b></div>`;
  if (run.reasons && run.reasons.length) html += "<ul>" + run.reasons.map(r => `<li>${esc(r)}</li>`).join("") + "</ul>";
  const hist = await getJSON("monitoring/history");
  if (hist.ok) {
    const series = hist.body;
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

// Where each retraining trigger stands: "[ ] 30 of 50 new labels (60%)", next due, drift.
async function showRetraining() {
  const name = current ? `?model_name=${encodeURIComponent(current)}` : "";
  const {ok, body} = await getJSON("retrain/triggers" + name);
  if (!ok) return;
  $("retraining").innerHTML = "<ul>" + (body.checks || []).map(c =>
    `<li class="${c.fired ? "bad" : ""}">${c.fired ? "<b>fires:</b> " : ""}${esc(c.detail)}</li>`)
    .join("") + "</ul>";
}

// Load (or reload) the served version: headline, card, history and, when the version changed,
// the form (keeping the values of fields that still exist).
async function refresh(keepValues) {
  const {ok, body} = await getJSON(current ? `models?model_name=${encodeURIComponent(current)}` :
    "models");
  if (ok && body.served) {
    served = body.served;
    current = current || served[0];
    showPicker();
  }
  if (!ok || !body.card) {
    $("headline").textContent = body.error || (body.serving && body.serving.error) || "no production model";
    return;
  }
  const version = body.serving.version;
  if (!shown || shown.version !== version) {
    buildForm(body.card.feature_schema, keepValues && shown ? formValues() : null,
      body.serving.key_column);
    shown = {version, card: body.card};
  }
  showCard(body);
}

refresh(false).then(() => Promise.all([showMonitoring(), showRetraining()])).catch(() => {});
</script></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_PAGE)
