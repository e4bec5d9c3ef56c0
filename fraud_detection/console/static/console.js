// The analyst console: plain JavaScript over the service's own API (/predict, /explain,
// /model/info, /drift/*). Files are checked here before anything is sent, so a bad file is
// refused whole, with the row and column named, and never scored in part.
"use strict";

const TOKEN_KEY = "fraud-console-token";
const API = "..";  // the console is served at /ui/, the API at the root
const state = { config: null, model: null, file: null, sort: null };

const $ = (id) => document.getElementById(id);

function show(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = false;
}

function hide(id) {
  $(id).hidden = true;
}

// ---- HTTP, with the bearer token when the service asks for one -------------------------

function askToken(message) {
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    const error = $("token-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token-input").value = "";
    $("token-form").onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      resolve();
    };
    dialog.showModal();
  });
}

async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method: options.method || "GET", headers };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    }
    const response = await fetch(`${API}${path}`, init);
    if (response.status === 401 && attempt < 5) {
      await askToken(token ? "That token was refused; try again." : "");
      continue;
    }
    return response;
  }
}

async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    // BentoML's validation errors: {"error": summary, "detail": [{loc, msg}, ...]}
    const details = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n") : body.detail;
    return `${response.status}: ${[body.error, details].filter(Boolean).join("\n") || text}`;
  } catch {
    return `${response.status}: ${text}`;
  }
}

async function postJson(path, payload) {
  const response = await api(path, { method: "POST", json: payload });
  if (!response.ok) {
    const error = new Error(await errorText(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// Scores with reasons; an image built without explanations (404) still scores, and says so.
async function explainOne(transaction) {
  try {
    const [explanation] = await postJson("/explain", { transactions: [transaction] });
    return explanation;
  } catch (error) {
    if (error.status !== 404) throw error;
    const [prediction] = await postJson("/predict", { transactions: [transaction] });
    return { ...prediction, unexplained: error.message };
  }
}

// ---- Numbers the way the API accepts them --------------------------------------------

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function checkNumber(column, raw) {
  const text = raw.trim();
  if (text === "") return { error: "empty cell" };
  if (!NUMBER.test(text)) return { error: `not a number: "${raw}"` };
  const value = Number(text);
  const limit = state.config.feature_limit;
  if (state.config.non_negative.includes(column) && value < 0) {
    return { error: `must be >= 0, got ${text}` };
  }
  if (Math.abs(value) > limit) return { error: `must be within ±${limit}, got ${text}` };
  return { value };
}

const fmt = (x, digits = 4) => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3)
  ? x.toExponential(2) : x.toFixed(digits));

// ---- Explanations ----------------------------------------------------------------------

function drawExplanation(chartId, tableId, explanation) {
  if (explanation.unexplained) {
    Plotly.purge($(chartId));
    $(tableId).innerHTML = `<caption class="error">${escapeHtml(explanation.unexplained)}</caption>`;
    return;
  }
  const pairs = Object.entries(explanation.shap_values)
    .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 10).reverse();
  Plotly.react($(chartId), [{
    type: "bar",
    orientation: "h",
    x: pairs.map((p) => p[1]),
    y: pairs.map((p) => p[0]),
    marker: { color: pairs.map((p) => (p[1] > 0 ? "#b3261e" : "#1e7a3c")) },
    hovertemplate: "%{y}: %{x:.3f}<extra></extra>",
  }], {
    title: { text: "Top reasons (Shapley value on the logit; red pushes toward fraud)", font: { size: 13 } },
    margin: { l: 70, r: 20, t: 40, b: 40 },
    height: 300,
    xaxis: { zeroline: true },
  }, { displayModeBar: false, responsive: true });
  const rows = explanation.reasons.map((r) => `<tr><td>${r.feature}</td><td>${fmt(r.value)}</td>`
    + `<td>${fmt(r.typical_value)}</td><td>${r.contribution > 0 ? "+" : ""}${r.contribution.toFixed(3)}</td></tr>`);
  $(tableId).innerHTML = "<thead><tr><th>feature</th><th>value</th><th>typical</th>"
    + `<th>contribution</th></tr></thead><tbody>${rows.join("")}</tbody>`
    + `<tfoot><tr><td>base value</td><td colspan="3">${explanation.base_value.toFixed(3)}`
    + ` + contributions = logit ${explanation.logit.toFixed(3)}</td></tr></tfoot>`;
}

function decisionTag(isFraud) {
  return isFraud ? '<span class="tag fraud">FRAUD</span>' : '<span class="tag ok">OK</span>';
}

// ---- Panel 1: one transaction ----------------------------------------------------------

function fillForm(values) {
  for (const name of state.config.features) {
    const input = $(`field-${name}`);
    input.value = values[name];
    input.classList.remove("invalid");
  }
}

function buildForm() {
  $("score-fields").innerHTML = state.config.features.map((name) => `<label>${name}`
    + `<input id="field-${name}" name="${name}" inputmode="decimal" autocomplete="off"></label>`)
    .join("");
  fillForm(state.config.example);
}

async function scoreForm(event) {
  if (event) event.preventDefault();
  hide("score-error");
  hide("score-result");  // an earlier result must not pass for this one
  const transaction = {};
  const problems = [];
  for (const name of state.config.features) {
    const input = $(`field-${name}`);
    const checked = checkNumber(name, input.value);
    input.classList.toggle("invalid", "error" in checked);
    if ("error" in checked) problems.push(`${name}: ${checked.error}`);
    else transaction[name] = checked.value;
  }
  if (problems.length) {
    show("score-error", problems.join("\n"));
    return;
  }
  const button = $("score-submit");
  button.disabled = true;
  button.textContent = "Scoring… (the service's first explanation takes a few seconds)";
  try {
    const explanation = await explainOne(transaction);
    $("score-decision").innerHTML = decisionTag(explanation.is_fraud);
    $("score-probability").textContent = explanation.fraud_probability.toPrecision(4);
    $("score-threshold").textContent = state.model ? fmt(state.model.threshold.value, 6) : "?";
    $("score-result").hidden = false;
    drawExplanation("score-chart", "score-reasons", explanation);
  } catch (error) {
    show("score-error", error.message);
  } finally {
    button.disabled = false;
    button.textContent = "Score and explain";
  }
}

// ---- Panel 2: a file -------------------------------------------------------------------

// RFC 4180: quoted fields may hold commas, newlines and doubled quotes.
function parseCsv(text) {
  const records = [];
  let field = "";
  let record = [];
  let line = 1;
  let recordLine = 1;
  let quoted = false;
  let quoteLine = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else { if (c === "\n") line++; field += c; }
    } else if (c === '"') {
      if (field !== "") throw new Error(`malformed CSV: a quote inside an unquoted field on line ${line}`);
      quoted = true;
      quoteLine = line;
    } else if (c === ",") {
      record.push(field); field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      record.push(field); field = "";
      if (!(record.length === 1 && record[0] === "")) records.push({ line: recordLine, cells: record });
      record = [];
      line++;
      recordLine = line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new Error(`malformed CSV: the quote opened on line ${quoteLine} is never closed`);
  record.push(field);
  if (!(record.length === 1 && record[0] === "")) records.push({ line: recordLine, cells: record });
  return records;
}

function readTransactions(text) {
  const records = parseCsv(text.replace(/^\uFEFF/, ""));
  if (records.length === 0) throw new Error("the file is empty");
  const header = records[0].cells.map((h) => h.trim());
  const seen = new Set();
  for (const name of header) {
    if (seen.has(name)) throw new Error(`column "${name}" appears twice in the header`);
    seen.add(name);
  }
  const missing = state.config.features.filter((f) => !seen.has(f));
  if (missing.length) throw new Error(`missing columns: ${missing.join(", ")}`);
  const rows = records.slice(1);
  if (rows.length === 0) throw new Error("the file has a header but no rows");
  if (rows.length > state.config.max_rows) {
    throw new Error(`the file has ${rows.length} rows; the limit per request is ${state.config.max_rows}`);
  }
  const index = Object.fromEntries(header.map((h, i) => [h, i]));
  const extras = header.filter((h) => !state.config.features.includes(h));
  const problems = [];
  const transactions = rows.map((row, r) => {
    const where = `row ${r + 1} (line ${row.line})`;
    if (row.cells.length !== header.length) {
      problems.push(`${where}: ${row.cells.length} fields, the header has ${header.length}`);
      return null;
    }
    const transaction = {};
    for (const name of state.config.features) {
      const checked = checkNumber(name, row.cells[index[name]]);
      if ("error" in checked) problems.push(`${where}, column ${name}: ${checked.error}`);
      else transaction[name] = checked.value;
    }
    return transaction;
  });
  if (problems.length) {
    const more = problems.length > 10 ? `\n…and ${problems.length - 10} more` : "";
    throw new Error(`nothing was sent; fix these cells:\n${problems.slice(0, 10).join("\n")}${more}`);
  }
  return { header, extras, rows, transactions, index };
}

function renderFileTable() {
  const { extras, rows, predictions, index } = state.file;
  const arrow = state.sort === "desc" ? " ▼" : state.sort === "asc" ? " ▲" : "";
  $("file-table").querySelector("thead").innerHTML = "<tr><th>row</th>"
    + extras.map((e) => `<th>${escapeHtml(e)}</th>`).join("")
    + `<th id="sort-probability" class="sortable">fraud_probability${arrow}</th><th>decision</th></tr>`;
  let order = rows.map((_, i) => i);
  if (state.sort) {
    const sign = state.sort === "desc" ? -1 : 1;
    order = order.sort((a, b) => sign * (predictions[a].fraud_probability - predictions[b].fraud_probability));
  }
  $("file-table").querySelector("tbody").innerHTML = order.map((i) => {
    const p = predictions[i];
    return `<tr data-row="${i}" class="${p.is_fraud ? "flagged" : ""}"><td>${i + 1}</td>`
      + extras.map((e) => `<td>${escapeHtml(rows[i].cells[index[e]])}</td>`).join("")
      + `<td>${p.fraud_probability.toPrecision(4)}</td><td>${decisionTag(p.is_fraud)}</td></tr>`;
  }).join("");
  $("sort-probability").onclick = () => {
    state.sort = state.sort === "desc" ? "asc" : "desc";
    renderFileTable();
  };
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

async function scoreFile() {
  hide("file-error");
  $("file-result").hidden = true;
  $("file-explanation").hidden = true;
  const file = $("file-input").files[0];
  if (!file) return;
  try {
    if (file.size > state.config.max_body_bytes) {
      throw new Error(`the file is ${file.size} bytes; the limit is ${state.config.max_body_bytes}`);
    }
    const parsed = readTransactions(await file.text());
    const predictions = await postJson("/predict", { transactions: parsed.transactions });
    state.file = { ...parsed, predictions, name: file.name };
    state.sort = null;
    const flagged = predictions.filter((p) => p.is_fraud).length;
    $("file-rows").textContent = predictions.length;
    $("file-flagged").textContent = flagged;
    $("file-threshold").textContent = state.model ? `(${fmt(state.model.threshold.value, 6)})` : "";
    renderFileTable();
    $("file-result").hidden = false;
  } catch (error) {
    show("file-error", `${file.name}: ${error.message}`);
  }
}

async function explainFileRow(event) {
  const tr = event.target.closest("tr[data-row]");
  if (!tr) return;
  const i = Number(tr.dataset.row);
  document.querySelectorAll("#file-table tr.selected").forEach((r) => r.classList.remove("selected"));
  tr.classList.add("selected");
  $("file-explanation").hidden = false;
  $("file-explanation-title").textContent = `Row ${i + 1}: explaining…`;
  $("file-reasons").innerHTML = "";
  try {
    const explanation = await explainOne(state.file.transactions[i]);
    $("file-explanation-title").innerHTML = `Row ${i + 1}: ${decisionTag(explanation.is_fraud)}`
      + ` probability ${explanation.fraud_probability.toPrecision(4)}`;
    drawExplanation("file-chart", "file-reasons", explanation);
  } catch (error) {
    $("file-explanation-title").textContent = `Row ${i + 1}: ${error.message}`;
  }
}

function csvCell(text) {
  const s = String(text);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function downloadScored() {
  const { header, rows, predictions, name } = state.file;
  const lines = [[...header, "fraud_probability", "is_fraud"].map(csvCell).join(",")];
  rows.forEach((row, i) => {
    lines.push([...row.cells, predictions[i].fraud_probability, predictions[i].is_fraud]
      .map(csvCell).join(","));
  });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  link.download = name.replace(/\.csv$/i, "") + ".scored.csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
}

// ---- Panels 3 and 4: model and monitoring ----------------------------------------------

function facts(id, entries) {
  $(id).innerHTML = entries.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

async function loadModel() {
  const response = await api("/model/info");
  if (!response.ok) {
    show("model-error", await errorText(response));
    $("model-badge").textContent = "model unavailable";
    return;
  }
  const info = await response.json();
  state.model = info;
  const threshold = info.threshold;
  $("model-badge").textContent = `${info.model} (${info.kind})`;
  facts("model-facts", [
    ["model", escapeHtml(info.model)],
    ["kind", info.kind],
    ["threshold rule", escapeHtml(threshold.rule)],
    ["threshold", fmt(threshold.value, 6)],
    ...Object.entries(threshold).filter(([k]) => !["rule", "value"].includes(k))
      .map(([k, v]) => [k.replace(/_/g, " "), escapeHtml(typeof v === "number" ? fmt(v) : JSON.stringify(v))]),
    ["calibration", escapeHtml(info.calibration.method)],
    ["precision", info.onnx_precision],
    ["members", info.ensemble ? `${info.ensemble.members} cross-fitted (logits averaged)` : "1"],
    ...(info.ensemble && info.ensemble.trees ? [["tree member",
      `${info.ensemble.trees.members} ${escapeHtml(info.ensemble.trees.library)} boosters, weight `
      + `${fmt(info.ensemble.trees.tree_weight, 3)} (networks ${fmt(info.ensemble.trees.network_weight, 3)})`]] : []),
  ]);
  const source = info.metrics_source.replace(/_/g, " ");
  $("model-metrics").innerHTML = `<thead><tr><th>metric</th><th>${source}</th><th>calibration rows</th></tr></thead><tbody>`
    + Object.entries(info.metrics).map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${fmt(v)}</td>`
      + `<td>${k in info.validation_metrics ? fmt(info.validation_metrics[k]) : ""}</td></tr>`).join("")
    + "</tbody>";
}

async function loadDrift() {
  hide("drift-error");
  const response = await api("/drift/summary");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("drift-verdict").textContent = body.error || `drift summary unavailable (${response.status})`;
    $("drift-verdict").className = "verdict";
    $("drift-facts").innerHTML = "";
    $("drift-report").disabled = true;
    return;
  }
  $("drift-verdict").innerHTML = body.drift_detected
    ? '<span class="tag fraud">DRIFT</span> detected in the latest window'
    : '<span class="tag ok">NO DRIFT</span> in the latest window';
  facts("drift-facts", [
    ["drifted features", body.drifted_features.length ? body.drifted_features.map(escapeHtml).join(", ") : "none"],
    ["drift share", fmt(body.drift_share)],
    ["prediction drift", body.prediction_drift_detected ? "yes" : "no"],
    ["rows in window", body.window_rows],
    ["workers reporting", Object.keys(body.workers || {}).length],
  ]);
  $("drift-report").disabled = false;
}

// Champion (and challenger) on labelled live transactions: GET /performance.
async function loadHealth() {
  const response = await api("/performance");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const why = body.database ? `score database unavailable: ${body.database.error}` : (body.detail || body.error);
    $("health-summary").textContent = why || `performance unavailable (${response.status})`;
    $("health-table").innerHTML = "";
    return;
  }
  const coverage = body.label_coverage === null ? "n/a" : `${(100 * body.label_coverage).toFixed(1)}%`;
  const delay = body.label_delay_days.median === null ? "n/a" : `${fmt(body.label_delay_days.median, 3)} days`;
  $("health-summary").innerHTML = body.models.some((m) => m.recall_alert.firing)
    ? '<span class="tag fraud">RECALL ALERT</span> recall below validation recall minus the margin'
    : `${body.labelled} labelled of ${body.scored} scored (${coverage}); median label delay ${delay}`;
  const rows = [
    ["labelled (frauds)", (m) => `${m.labelled} (${m.frauds})`],
    ["AUPRC", (m) => fmt(m.auprc)],
    ["precision at threshold", (m) => fmt(m.precision)],
    ["recall at threshold", (m) => fmt(m.recall)],
    ["validation recall", (m) => fmt(m.validation_recall)],
    ["expected cost per transaction", (m) => fmt(m.expected_cost_per_transaction)],
    ["recall alert", (m) => (m.recall_alert.firing ? "FIRING" : m.recall_alert.enough_frauds ? "ok" : "too few frauds")],
  ];
  $("health-table").innerHTML = "<thead><tr><th></th>"
    + body.models.map((m) => `<th>${m.role}<br>${escapeHtml(m.model)}</th>`).join("") + "</tr></thead><tbody>"
    + rows.map(([name, cell]) => `<tr><td>${name}</td>` + body.models.map((m) => `<td>${cell(m)}</td>`).join("") + "</tr>").join("")
    + "</tbody>";
}

async function openReport() {
  const tab = window.open("", "_blank");
  const response = await api("/drift/report");
  if (!response.ok) {
    if (tab) tab.close();
    show("drift-error", await errorText(response));
    return;
  }
  // A blob keeps the bearer token out of the URL when the service has one.
  const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html" }));
  if (tab) tab.location = url;
  else window.location = url;
}

// ---- Wiring ----------------------------------------------------------------------------

function showPanel(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.panel === name);
  }
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = panel.id !== `panel-${name}`;
  }
  if (name === "monitoring") {
    loadDrift();
    loadHealth();
  }
  window.dispatchEvent(new Event("resize"));  // plotly sizes charts drawn while hidden
}

async function start() {
  state.config = await (await fetch("config.json")).json();
  $("file-limit").textContent = `Up to ${state.config.max_rows} rows per file.`;
  buildForm();
  for (const button of document.querySelectorAll("nav button")) {
    button.onclick = () => showPanel(button.dataset.panel);
  }
  $("score-form").onsubmit = scoreForm;
  $("score-reset").onclick = () => fillForm(state.config.example);
  $("file-input").onchange = scoreFile;
  $("file-table").onclick = explainFileRow;
  $("file-download").onclick = downloadScored;
  $("drift-refresh").onclick = () => {
    loadDrift();
    loadHealth();
  };
  $("drift-report").onclick = openReport;
  await loadModel();
  // The example, scored and explained at once: the analyst sees what a result looks like,
  // and the service's first explanation (shap's compile, seconds) is paid on opening.
  await scoreForm();
  document.body.dataset.ready = "1";
}

start();
