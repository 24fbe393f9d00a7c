// The service's page: routes and explains a query (POST /explain), shows traffic, the
// abilities map (GET /ui/state) and, for an admin key, feedback, reloads and spend
// (GET /admin/state). Plain DOM and inline SVG; every text goes in as textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#bab0ac"];
let key = sessionStorage.getItem("irt-jax-key") || "";
let timer = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function sv(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(x, digits = 3) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }

async function api(path, body) {
  const headers = {};
  if (key) headers["Authorization"] = "Bearer " + key;
  const init = {headers};
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return {status: response.status, data};
}

function errorText(r) {
  return (r.data && r.data.error && r.data.error.message) || ("HTTP " + r.status);
}

function showLogin(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-message").textContent = message;
  if (timer) { clearInterval(timer); timer = null; }
}

async function start() {
  const r = await api("/ui/state");
  if (r.status === 401) {
    showLogin(key ? "That key was refused (401): enter a key from the service's keys file."
                  : "This service needs an API key: enter one from its keys file.");
    return;
  }
  if (r.status !== 200) { showLogin("The service answered: " + errorText(r)); return; }
  $("login").hidden = true;
  $("main").hidden = false;
  renderState(r.data);
  refreshAdmin();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  const r = await api("/ui/state");
  if (r.status === 401) { showLogin("That key is no longer valid (401): sign in again."); return; }
  if (r.status === 200) renderState(r.data);
  refreshAdmin();
}

function renderState(s) {
  $("router-name").textContent = s.router + " · " + s.models.length + " LLMs";
  $("status").textContent = "updated " + new Date(s.time * 1000).toLocaleTimeString();
  $("cost-weight-label").hidden = !s.has_costs;
  renderTraffic(s.traffic, s.upstreams);
  renderAbilities(s.abilities);
}

// ------------------------------------------------------------------ explain
function barChart(e) {
  const models = e.models, rowH = 22, labelW = 190, barW = 300, width = labelW + barW + 230;
  const height = rowH * models.length + 24;
  const chart = sv("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": "P(correct) per LLM"});
  chart.append(sv("text", {x: labelW, y: 12}, "P(correct)"));
  chart.append(sv("text", {x: labelW + barW + 60, y: 12}, models[0].cost === null ? "" : "cost"));
  models.forEach((m, i) => {
    const y = 20 + i * rowH, chosen = m.model === e.choice.model;
    const cls = !m.allowed ? "bar off" : chosen ? "bar chosen"
              : m.model === e.choice.runner_up ? "bar runner-up" : "bar";
    const row = sv("g", {"data-model": m.model, class: chosen ? "row chosen" : "row"});
    row.append(sv("text", {x: labelW - 8, y: y + 14, "text-anchor": "end"}, m.model));
    row.append(sv("rect", {class: cls, x: labelW, y: y + 3, height: rowH - 6,
                           width: Math.max(1, m.p_correct * barW)}));
    row.append(sv("text", {x: labelW + barW + 6, y: y + 14}, fmt(m.p_correct)));
    if (m.cost !== null) row.append(sv("text", {x: labelW + barW + 60, y: y + 14}, fmt(m.cost, 4)));
    if (chosen) row.append(sv("text", {class: "mark", x: labelW + barW + 130, y: y + 14}, "◀ chosen"));
    else if (m.model === e.choice.runner_up) {
      row.append(sv("text", {x: labelW + barW + 130, y: y + 14}, "runner-up"));
    }
    chart.append(row);
  });
  chart.append(sv("line", {class: "axis", x1: labelW, x2: labelW, y1: 16, y2: height}));
  chart.append(sv("line", {class: "axis", x1: labelW + barW, x2: labelW + barW, y1: 16, y2: height}));
  return chart;
}

function table(head, rows, numeric) {
  const t = el("table");
  t.append(el("tr", {}, ...head.map((h, i) => el("th", numeric && numeric[i] ? {class: "num"} : {}, h))));
  for (const r of rows) {
    t.append(el("tr", {}, ...r.map((c, i) => el("td", numeric && numeric[i] ? {class: "num"} : {}, c))));
  }
  return t;
}

function renderWhy(e) {
  const why = $("why");
  why.replaceChildren();
  const ir = e.item_response;
  const box = el("div", {}, el("h3", {}, "The query"));
  if (ir.skipped) box.append(el("p", {class: "muted"}, ir.skipped));
  else {
    const pct = (p) => p === null ? "" : ` (${fmt(p, 1)}th percentile of training queries)`;
    box.append(el("p", {}, `difficulty b = ${fmt(ir.b)}${pct(ir.b_percentile)}`),
               el("p", {}, `discrimination |a| = ${fmt(ir.a_norm)}${pct(ir.a_norm_percentile)}`),
               el("p", {class: "muted"}, `from ${ir.source}; P(correct) = sigmoid(a·θ − b)`));
    if (ir.reference) box.append(el("p", {class: "muted"}, ir.reference));
  }
  why.append(box);
  const near = el("div", {}, el("h3", {}, "Nearest training queries"));
  if (!Array.isArray(e.neighbours)) near.append(el("p", {class: "muted"}, e.neighbours.skipped));
  else near.append(table(["similarity", "benchmark", "query", "answered right"], e.neighbours.map(
      (n) => [fmt(n.similarity), n.benchmark, n.prompt || n.query_id,
              `${n.correct.length} of ${n.correct.length + n.wrong.length}`]), [true]));
  why.append(near);
  if (e.members) {
    const m = el("div", {}, el("h3", {}, "Ensemble members"));
    const head = ["LLM", ...e.members.map((x) => `${x.member} ${x.kind} P (weight)`)];
    m.append(table(head, e.models.map((row) => [row.model, ...row.member_p_correct.map(
        (p, k) => `${fmt(p)} (${fmt(row.member_weight[k], 2)})`)])));
    why.append(m);
  }
}

async function explainQuery(event) {
  event.preventDefault();
  const text = $("query").value.trim();
  $("explain-error").textContent = "";
  if (!text) { $("explain-error").textContent = "Type a query first."; return; }
  const body = {queries: [text]};
  if (!$("cost-weight-label").hidden) body.cost_weight = Number($("cost-weight").value || 0);
  const r = await api("/explain", body);
  if (r.status === 401) { showLogin("That key was refused (401): enter a key from the service's keys file."); return; }
  if (r.status !== 200) { $("explain-error").textContent = errorText(r); return; }
  const e = r.data.explanations[0], c = e.choice;
  const choice = $("choice");
  choice.replaceChildren("Routed to ", el("b", {id: "chosen-model"}, c.model),
      ` with P(correct) ${fmt(c.p_correct)}`,
      c.runner_up ? `; runner-up ${c.runner_up}, margin ${fmt(c.margin, 4)} (${e.rule.score})` : "");
  $("chart").replaceChildren(barChart(e));
  renderWhy(e);
}

// ------------------------------------------------------------------ traffic, map, admin
function renderTraffic(t, upstreams) {
  const covers = t.covers_s === null ? "since start" : `last ${Math.round(t.covers_s / 60 * 10) / 10} min`;
  $("traffic-window").textContent = `(${covers}; ${t.answered} answers)`;
  const rows = t.models.map((m) => {
    const up = upstreams[m.model];
    const state = !up ? "no upstream" : up.state === "cooling_down"
        ? `cooling ${fmt(up.cooldown_left_s, 0)} s` : m.cooled_down ? "cooled down" : "ok";
    const bar = el("span", {class: "share", style: `width:${Math.round(m.share * 80)}px`});
    return [m.model, el("span", {}, bar, ` ${fmt(100 * m.share, 1)}%`), m.answered, m.fallbacks,
            m.errors, el("span", {class: state.startsWith("cool") ? "cooling" : ""}, state)];
  });
  $("traffic").replaceChildren(table(["LLM", "share", "answers", "fallbacks", "errors", "upstream"],
                                     rows, [false, false, true, true, true, false]));
}

function renderAbilities(a) {
  const box = $("abilities");
  if (a.skipped) { box.replaceChildren(el("p", {class: "muted"}, a.skipped)); return; }
  $("abilities-note").textContent = `(PCA of θ, ${fmt(100 * (a.variance_share[0] + a.variance_share[1]), 0)}% of variance; ${a.source})`;
  const W = 460, H = 300, pad = 30;
  const span = (v) => [Math.min(...v), Math.max(...v) + 1e-9];
  const [x0, x1] = span(a.x), [y0, y1] = span(a.y);
  const px = (x) => pad + (x - x0) / (x1 - x0) * (W - 2 * pad - 90);
  const py = (y) => H - pad - (y - y0) / (y1 - y0) * (H - 2 * pad);
  const benches = [...new Set((a.strength || []).filter(Boolean).map((s) => s.benchmark))].sort();
  const plot = sv("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
                          "aria-label": "abilities map"});
  a.models.forEach((m, i) => {
    const s = a.strength && a.strength[i];
    const colour = s ? PALETTE[benches.indexOf(s.benchmark) % PALETTE.length] : "#888";
    const dot = sv("circle", {cx: px(a.x[i]), cy: py(a.y[i]), r: 5, fill: colour});
    dot.append(sv("title", {}, s ? `${m}: strongest on ${s.benchmark} (${fmt(s.accuracy)}, +${fmt(s.lead)})` : m));
    plot.append(dot, sv("text", {x: px(a.x[i]) + 7, y: py(a.y[i]) + 4}, m));
  });
  benches.forEach((b, i) => {
    plot.append(sv("circle", {cx: W - 80, cy: 14 + i * 16, r: 5, fill: PALETTE[i % PALETTE.length]}),
                sv("text", {x: W - 70, y: 18 + i * 16}, b));
  });
  box.replaceChildren(plot, el("p", {class: "muted"}, "colour: the benchmark where the LLM leads the mean LLM most (training accuracy)"));
}

async function refreshAdmin() {
  const r = await api("/admin/state");
  if (r.status !== 200) {
    const why = r.status === 403 ? errorText(r) : "Needs an admin key (sign in with one).";
    for (const id of ["spend", "feedback"]) $(id).textContent = why;
    $("reload").textContent = "";
    return;
  }
  const s = r.data, sp = s.spend, fb = s.feedback, last = s.reloads.last;
  if (sp.none) $("spend").textContent = "None: " + sp.none + ".";
  else {
    $("spend").replaceChildren(table(["key", "spent (USD)", "budget (USD)"], Object.entries(sp.keys).map(
        ([k, v]) => [k, fmt(v.spent_usd, 4), v.budget_usd === undefined ? "–" : fmt(v.budget_usd, 2)]),
        [false, true, true]));
  }
  if (fb.off) $("feedback").textContent = fb.off;
  else {
    const rows = Object.entries(fb.per_model).map(([m, c]) => [m, c.correct, c.wrong]);
    $("feedback").replaceChildren(el("p", {}, `${fb.records} records in the feedback log`));
    if (rows.length) $("feedback").append(table(["LLM", "right", "wrong"], rows, [false, true, true]));
  }
  $("reload").replaceChildren(el("p", {}, !last ? `No reload since start (${s.reloads.count}).`
      : `Last reload ${new Date(last.time * 1000).toLocaleString()}: ${last.result}` +
        (last.workdir ? ` (${last.workdir})` : "") + (last.error ? `: ${last.error}` : "") +
        `; ${s.reloads.count} in all.`));
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem("irt-jax-key", key);
  start();
});
$("query-form").addEventListener("submit", explainQuery);
start();
