// The analyst console: plain JavaScript over the service's own API (/predict, /explain,
// /model/info, /drift/*, /performance, /review, /feedback). Files are checked here before anything is sent, so a bad file is
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

// A duration in the unit a person would say it in: "2.1 s", "14 min", "3.5 h", "2.0 days".
const UNITS = [[1, "s", 60], [60, "min", 60], [3600, "h", 24], [86400, "days", Infinity]];

function humanDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "n/a";
  for (const [size, unit, next] of UNITS) {
    const value = Math.max(0, seconds) / size;
    const shown = value < 9.95 ? value.toFixed(1) : String(Math.round(value));
    if (Number(shown) < next) return `${shown} ${unit}`;  // 59.97 s reads "1.0 min"
  }
}

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
  const base = state.config.base_fraud_rate;
  const sample = info.metrics.prevalence;
  const atBase = atBaseRate(info, base);
  const sampleRate = sample === undefined ? "" : ` (${percent(sample)} fraud)`;
  $("model-metrics").innerHTML = `<thead><tr><th scope="col">metric</th>`
    + `<th scope="col">${source}${sampleRate}</th>`
    + `<th scope="col">at the deployment base rate (${percent(base)} fraud)</th>`
    + `<th scope="col">calibration rows</th></tr></thead><tbody>`
    + Object.entries(info.metrics).map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${fmt(v)}</td>`
      + `<td>${atBase.cells[k] === undefined ? "" : atBase.cells[k]}</td>`
      + `<td>${k in info.validation_metrics ? fmt(info.validation_metrics[k]) : ""}</td></tr>`).join("")
    + "</tbody>";
  $("model-metrics-note").innerHTML = atBase.note;
}

const percent = (x) => `${(100 * x).toPrecision(4)}%`;

// The card's metrics at fraud prevalence `base` instead of the sample's, as the quality
// harness weighs it: every genuine row counts (1 - base) / base * frauds / genuines times.
// Recall, false-positive rate, ROC AUC and recall at 1% FPR do not depend on prevalence;
// precision and F1 at the threshold are reweighted from the card's confusion counts (or from
// its precision, recall and prevalence, which give the same false-positive rate). AUPRC needs
// every score, which the card does not keep.
function atBaseRate(info, base) {
  const m = info.metrics;
  const out = {};
  let recall = m.recall;
  let fpr = null;
  const cm = info.confusion_matrix;
  if (Array.isArray(cm)) {
    const [[tn, fp], [fn, tp]] = cm;
    if (tp + fn > 0 && tn + fp > 0) {
      recall = tp / (tp + fn);
      fpr = fp / (tn + fp);
    }
  } else if (m.precision > 0 && m.prevalence > 0 && m.prevalence < 1 && m.recall !== undefined) {
    fpr = m.recall * (1 - m.precision) / m.precision * m.prevalence / (1 - m.prevalence);
  }
  const same = (k) => { if (k in m) out[k] = `${fmt(m[k])} <span class="note">(same)</span>`; };
  ["recall", "roc_auc", "recall_at_1pct_fpr", "threshold"].forEach(same);
  let reweighted = [];
  let note;
  if (fpr !== null && recall !== undefined) {
    const caught = recall * base;
    const alarms = fpr * (1 - base);
    const precision = caught + alarms > 0 ? caught / (caught + alarms) : null;
    if (precision !== null && "precision" in m) out.precision = `${fmt(precision)} <span class="note">(reweighted)</span>`;
    if (precision !== null && "f1" in m) {
      const f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
      out.f1 = `${fmt(f1)} <span class="note">(reweighted)</span>`;
    }
    reweighted = ["Precision", "F1"];
    note = `At ${percent(base)} fraud, about <strong>${Math.round(1e5 * (caught + alarms))}</strong> `
      + `of every 100,000 transactions are flagged at this threshold, `
      + `${Math.round(1e5 * alarms)} of them false alarms (reweighted). `;
  } else {
    note = "Precision and F1 at the base rate need false positives the card does not give. ";
  }
  if (fpr === 0) {
    note += "The card's rows had no false alarm, so precision stays 1 at any fraud rate; "
      + "more genuine rows would show how many alarms a busy day brings. ";
  }
  if ("prevalence" in m) out.prevalence = base.toPrecision(4);
  if ("average_precision" in m) out.average_precision = '<span class="note">not in the card</span>';
  note += (reweighted.length ? `${reweighted.join(" and ")} are reweighted: each genuine row `
    + `counts so that frauds are ${percent(base)} of transactions, as the quality harness `
    + "(<code>make quality</code>) weighs them. " : "")
    + "Recall, ROC AUC and recall at 1% FPR do not depend on the fraud rate. AUPRC at the base "
    + "rate needs every score, which the model card does not keep: the quality harness reports it.";
  return { cells: out, note };
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
const HEALTH_ROWS = [
  ["labelled (frauds)", (m) => `${m.labelled} (${m.frauds})`],
  ["AUPRC", (m) => (m.auprc === null ? "n/a" : fmt(m.auprc))],
  ["precision at threshold", (m) => (m.precision === null ? "n/a" : fmt(m.precision))],
  ["recall at threshold", (m) => (m.recall === null ? "n/a" : fmt(m.recall))],
  ["validation recall", (m) => (m.validation_recall === null ? "n/a" : fmt(m.validation_recall))],
  ["expected cost per transaction", (m) => (m.expected_cost_per_transaction === null ? "n/a"
    : fmt(m.expected_cost_per_transaction))],
];
const ALERT_ROW = ["recall alert", (m) => (m.recall_alert.firing ? "FIRING"
  : m.recall_alert.enough_frauds ? "ok" : "too few frauds")];

function healthTable(caption, models, header, rows) {
  return `<caption>${caption}</caption><thead><tr><th scope="col">metric</th>`
    + models.map((m) => `<th scope="col">${header(m)}</th>`).join("") + "</tr></thead><tbody>"
    + rows.map(([name, cell]) => `<tr><td>${name}</td>`
      + models.map((m) => `<td>${cell(m)}</td>`).join("") + "</tr>").join("")
    + "</tbody>";
}

async function loadHealth() {
  const source = $("health-source").value;
  const response = await api(`/performance${source ? `?source=${source}` : ""}`);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const why = body.database ? `score database unavailable: ${body.database.error}` : (body.detail || body.error);
    $("health-summary").textContent = why || `performance unavailable (${response.status})`;
    $("health-table").innerHTML = "";
    $("health-paired").hidden = true;
    return;
  }
  const coverage = body.label_coverage === null ? "n/a" : `${(100 * body.label_coverage).toFixed(1)}%`;
  const days = body.label_delay_days;
  const delay = days.median === null ? "n/a"
    : `${humanDuration(days.median * 86400)} (90th percentile ${humanDuration(days.p90 * 86400)})`;
  const bySource = body.labels_by_source ? `; labels from analysts ${body.labels_by_source.analyst}, `
    + `from chargebacks ${body.labels_by_source.chargeback}` : "";
  const alert = body.models.some((m) => m.recall_alert.firing)
    ? '<span class="tag fraud">RECALL ALERT</span> recall below validation recall minus the margin. ' : "";
  $("health-summary").innerHTML = `${alert}${body.labelled} labelled of ${body.scored} scored `
    + `(${coverage}); median label delay ${delay}${bySource}`;
  const paired = body.paired;
  $("health-paired").hidden = !paired;
  if (paired) {
    // The comparison: both models on the transactions both scored, so the same frauds.
    $("health-paired").innerHTML = healthTable(
      `Champion and challenger on the same ${paired.labelled} labelled transactions (both scored them)`,
      [paired.champion, paired.challenger],
      (m) => `${m.role}<br>${escapeHtml(m.model)}`, HEALTH_ROWS,
    );
  }
  $("health-table").innerHTML = healthTable(
    paired ? "Each model on every labelled transaction it scored: the recall alert's rows "
      + "(different transactions; compare the models in the table above)"
      : "The champion on the window's labelled transactions",
    body.models,
    (m) => `${m.role}<br>${escapeHtml(m.model)}<br>on ${m.labelled} transactions`,
    [...HEALTH_ROWS, ALERT_ROW],
  );
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

// ---- Panel 5: the review queue ---------------------------------------------------------
// GET /review leases the items it returns to this reviewer for FRAUD_REVIEW_LEASE_SECONDS, so
// two analysts never work the same item; GET /review/{id} gives an item's features and the
// scored model's reasons; a label is a POST /feedback with source "analyst".

const REVIEWER_KEY = "fraud-console-reviewer";
const REVIEW_SETTINGS_KEY = "fraud-console-review";
const REVIEWER = /^[A-Za-z0-9_.@-]{1,64}$/;
const review = {
  items: [],  // the rows shown, in queue order; a labelled one stays, marked
  index: -1,  // the selected row
  cursor: null,  // the next page of the same queue
  fetchedAt: 0,
  busy: false,  // a label on its way: F/G wait for it, so one key press is one label
  loading: false,
  detail: null,  // the selected item's GET /review/{id}, once it arrived
  open: null,
  today: null,
};

// A name per browser profile: two profiles (or two browser contexts) are two reviewers.
function reviewerName() {
  let name = localStorage.getItem(REVIEWER_KEY);
  if (!name || !REVIEWER.test(name)) {
    // Leases are matched by name: 6 random bytes, so two browsers never share one.
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    name = `analyst-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    localStorage.setItem(REVIEWER_KEY, name);
  }
  return name;
}

function announce(text) {
  $("review-announce").textContent = text;
}

function reviewError(text) {
  if (text) show("review-error", text);
  else hide("review-error");
}

function reviewQuery(extra = {}) {
  const query = new URLSearchParams({ reviewer: reviewerName(), ...extra });
  return query.toString();
}

async function reviewJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

// The first page of the queue (or, with `more`, the next one appended).
async function loadQueue(more = false) {
  if (review.loading) return;
  review.loading = true;
  reviewError("");
  try {
    const extra = { limit: $("review-limit").value, order: $("review-order").value };
    if (more && review.cursor) extra.cursor = review.cursor;
    const page = await reviewJson(`/review?${reviewQuery(extra)}`);
    review.fetchedAt = Date.now();
    const known = new Set(review.items.map((item) => item.transaction_id));
    const fresh = page.items.map((item) => ({ ...item, label: null, fetchedAt: review.fetchedAt }));
    review.items = more ? [...review.items, ...fresh.filter((i) => !known.has(i.transaction_id))] : fresh;
    review.cursor = page.next_cursor;
    review.open = page.open;
    review.today = page.reviewed_today;
    if (!more) review.index = -1;
    renderQueue();
    const next = more ? firstOpen(review.index + 1) : firstOpen(0);
    if (next >= 0) selectItem(next, false);
    else if (!more) showItem(null);
    return fresh.length;
  } catch (error) {
    reviewError(error.message);
    return 0;
  } finally {
    review.loading = false;
  }
}

function firstOpen(from) {
  for (let i = Math.max(0, from); i < review.items.length; i++) {
    if (review.items[i].label === null) return i;
  }
  return -1;
}

function itemAge(item) {
  return item.age_seconds + (Date.now() - item.fetchedAt) / 1000;
}

function labelText(label) {
  return label === null ? "" : label === 1 ? "fraud" : "genuine";
}

// A model tag with its version cut to 6 characters: the row names the model, the item the tag.
const shortTag = (tag) => tag.replace(/:(.{6}).+$/, ":$1…");

// `Time`: seconds since the first transaction of the data set, shown whole.
const timeText = (t) => Math.round(t).toLocaleString("en-US");

function renderQueue() {
  $("review-open").textContent = review.open ?? "–";
  $("review-today").textContent = review.today ?? "–";
  $("review-empty").hidden = review.items.length > 0;
  $("review-table").querySelector("tbody").innerHTML = review.items.map((item, i) => {
    const selected = i === review.index;
    return `<tr data-index="${i}" tabindex="${selected ? 0 : -1}" aria-selected="${selected}"`
      + ` class="${[item.is_fraud ? "flagged" : "", selected ? "selected" : "", item.label === null ? "" : "done"].join(" ").trim()}">`
      + `<td><code>${escapeHtml(item.transaction_id)}</code></td>`
      + `<td>${item.probability.toPrecision(3)} ${item.is_fraud ? decisionTag(true) : ""}</td>`
      + `<td>${item.amount.toFixed(2)}</td><td class="col-time">${timeText(item.time)}</td>`
      + `<td class="col-model" title="${escapeHtml(item.model)}">${escapeHtml(shortTag(item.model))}</td>`
      + `<td>${humanDuration(itemAge(item))}</td>`
      + `<td>${labelText(item.label)}</td></tr>`;
  }).join("");
}

function selectItem(i, focus = true) {
  if (i < 0 || i >= review.items.length) return;
  review.index = i;
  renderQueue();
  const row = $("review-table").querySelector(`tr[data-index="${i}"]`);
  if (focus) row.focus();
  else row.scrollIntoView({ block: "nearest" });
  loadItem(review.items[i]);
}

function showItem(item) {
  $("review-item").hidden = !item;
  if (!item) review.detail = null;
}

async function loadItem(item) {
  showItem(item);
  review.detail = null;
  $("review-item").dataset.loaded = "";
  $("review-item-title").innerHTML = `<code>${escapeHtml(item.transaction_id)}</code> `
    + `${item.is_fraud ? decisionTag(true) : '<span class="tag near">below threshold</span>'} `
    + `probability ${item.probability.toPrecision(4)}`;
  $("review-item-facts").textContent = "Loading its reasons…";
  $("review-reasons").innerHTML = "";
  Plotly.purge($("review-chart"));
  try {
    const detail = await reviewJson(
      `/review/${encodeURIComponent(item.transaction_id)}?${reviewQuery()}`);
    if (review.items[review.index] !== item) return;  // the analyst moved on meanwhile
    review.detail = detail;
    const lease = detail.lease;
    const leaseText = !lease || !lease.reviewer ? "not leased"
      : lease.yours ? `leased to you until ${new Date(lease.until * 1000).toLocaleTimeString()}`
      : `leased to ${lease.reviewer} until ${new Date(lease.until * 1000).toLocaleTimeString()}`
        + " (a label from you is stored anyway)";
    const label = detail.label ? `; labelled ${detail.label.label === 1 ? "fraud" : "genuine"} by `
      + `${detail.label.reviewer || "(no reviewer)"} (${detail.label.source}) `
      + `${humanDuration(Date.now() / 1000 - detail.label.labelled_at)} ago` : "";
    $("review-item-facts").textContent = `Amount ${item.amount.toFixed(2)}, Time ${timeText(item.time)}, `
      + `scored ${humanDuration(itemAge(item))} ago by ${item.model}; ${leaseText}${label}.`;
    drawExplanation("review-chart", "review-reasons", detail.explanation
      || { unexplained: detail.explanation_unavailable || "no explanation for this item" });
    $("review-feature-list").innerHTML = Object.entries(detail.features)
      .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${fmt(v)}</dd>`).join("");
    $("review-item").dataset.loaded = item.transaction_id;
  } catch (error) {
    if (review.items[review.index] === item) $("review-item-facts").textContent = error.message;
  }
}

async function labelSelected(label) {
  const item = review.items[review.index];
  if (!item || review.busy) return;
  review.busy = true;
  $("panel-review").dataset.busy = "1";  // until the next item is selected (tests wait on it)
  const reviewer = reviewerName();
  const word = label === 1 ? "fraud" : "genuine";
  try {
    const answer = await postJson("/feedback", [{
      transaction_id: item.transaction_id, label, reviewer, source: "analyst",
    }]);
    const notes = (answer.lease_notes || []).filter((n) => n.transaction_id === item.transaction_id);
    if (item.label === null) {
      if (review.open !== null) review.open = Math.max(0, review.open - 1);
      if (review.today !== null) review.today += 1;
    }
    item.label = label;
    const said = `${item.transaction_id} labelled ${word} by ${reviewer}`
      + (notes.length ? ` (stored; ${notes.map((n) => n.note).join(", ")})` : "");
    announce(`${said}. ${review.open ?? "?"} open.`);
    const next = firstOpen(review.index + 1);
    if (next >= 0) selectItem(next);
    else await nextPage();
    if (firstOpen(0) < 0) announce(`${said}. The queue is empty.`);
  } catch (error) {
    reviewError(`${item.transaction_id} not labelled: ${error.message}`);
    renderQueue();
  } finally {
    review.busy = false;
    delete $("panel-review").dataset.busy;
  }
}

// Past the last open row: the next page of this queue, or, when this page is done, the
// queue again from its start (labelled items have left it; new ones may have come).
async function nextPage() {
  if (review.cursor && (await loadQueue(true)) > 0) {
    $("review-table").querySelector(`tr[data-index="${review.index}"]`)?.focus();
    return;
  }
  if (firstOpen(0) < 0) {
    await loadQueue(false);
    const row = $("review-table").querySelector(`tr[data-index="${review.index}"]`);
    if (row) row.focus();
    else renderQueue();
  } else {
    renderQueue();
    $("review-table").querySelector(`tr[data-index="${review.index}"]`)?.focus();
  }
}

function moveSelection(step) {
  if (!review.items.length) return;
  const i = review.index + step;
  if (i >= review.items.length) {
    nextPage();
    return;
  }
  selectItem(Math.max(0, i));
}

const TYPING = new Set(["INPUT", "SELECT", "TEXTAREA"]);

function reviewKeys(event) {
  if ($("panel-review").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if ($("token-dialog").open || TYPING.has(event.target.tagName) || event.target.isContentEditable) return;
  const action = {
    f: () => labelSelected(1), g: () => labelSelected(0),
    j: () => moveSelection(1), arrowdown: () => moveSelection(1),
    k: () => moveSelection(-1), arrowup: () => moveSelection(-1),
  }[event.key.toLowerCase()];
  if (!action) return;
  event.preventDefault();
  if (!event.repeat || !["f", "g"].includes(event.key.toLowerCase())) action();
}

function saveReviewSettings() {
  localStorage.setItem(REVIEW_SETTINGS_KEY, JSON.stringify({
    order: $("review-order").value, limit: $("review-limit").value,
  }));
}

function setupReview() {
  const input = $("review-reviewer");
  input.value = reviewerName();
  const saved = JSON.parse(localStorage.getItem(REVIEW_SETTINGS_KEY) || "{}");
  if (saved.order) $("review-order").value = saved.order;
  if (saved.limit) $("review-limit").value = saved.limit;
  $("review-settings").onsubmit = (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!REVIEWER.test(name)) {
      reviewError("Reviewer: 1 to 64 letters, digits or _ . @ -");
      input.focus();
      return;
    }
    localStorage.setItem(REVIEWER_KEY, name);
    saveReviewSettings();
    loadQueue(false);
  };
  input.onchange = () => $("review-settings").requestSubmit();
  $("review-order").onchange = () => $("review-settings").requestSubmit();
  $("review-limit").onchange = () => $("review-settings").requestSubmit();
  $("review-table").onclick = (event) => {
    const row = event.target.closest("tr[data-index]");
    if (row) selectItem(Number(row.dataset.index));
  };
  $("review-fraud").onclick = () => labelSelected(1);
  $("review-genuine").onclick = () => labelSelected(0);
  document.addEventListener("keydown", reviewKeys);
}

// ---- Wiring ----------------------------------------------------------------------------

function showPanel(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.panel === name);
    if (button.dataset.panel === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = panel.id !== `panel-${name}`;
  }
  if (name === "monitoring") {
    loadDrift();
    loadHealth();
  }
  if (name === "review") loadQueue(false);
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
  $("health-source").onchange = loadHealth;
  setupReview();
  await loadModel();
  // The example, scored and explained at once: the analyst sees what a result looks like,
  // and the service's first explanation (shap's compile, seconds) is paid on opening.
  await scoreForm();
  document.body.dataset.ready = "1";
}

start();
