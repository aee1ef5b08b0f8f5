// owtrain dashboard: polls the parameter server's open JSON endpoints once a second and redraws.
// /status gives the current counters (version, workers, applied/rejected, staleness histogram);
// /api/history?since=T gives only the samples newer than T, so a long job costs the same per poll.
"use strict";

const POLL_MS = 1000;
const MAX_POINTS = 5000; // keep the page light on very long jobs
// /api/history answers one array per field (HISTORY_FIELDS in param_server/telemetry.py), one
// element per sample (about one a second): time, version, loss (workers' loss, moving average),
// accuracy and eval_loss (latest test-set evaluation), updates_per_s, staleness (mean), workers.
const state = {
  since: 0,   // server time of the newest sample we hold; the next poll asks only for newer ones
  rows: [],   // samples as objects {time, version, loss, accuracy, eval_loss, updates_per_s, ...}
  t0: null,   // server time of the first sample: time axes are seconds since then
};

const $ = (id) => document.getElementById(id);
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

// A server started with --protect-reads wants a token for these reads: open the page as
// /dashboard#token=<token> (the part after # never leaves the browser, so it is not logged).
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");

async function getJSON(path) {
  const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
  const response = await fetch(path, { cache: "no-store", headers });
  if (response.status === 401 || response.status === 403) {
    throw new Error(`${path}: HTTP ${response.status}; open the page as /dashboard#token=<token>`);
  }
  if (!response.ok) { throw new Error(`${path}: HTTP ${response.status}`); }
  return response.json();
}

function absorbHistory(history) {
  const times = history.time || [];
  const fields = Object.keys(history);
  for (let i = 0; i < times.length; i++) {
    const row = {};
    for (const f of fields) { row[f] = history[f][i]; }
    state.rows.push(row);
    state.since = Math.max(state.since, row.time);
    if (state.t0 === null) { state.t0 = row.time; }
  }
  if (state.rows.length > MAX_POINTS) { state.rows.splice(0, state.rows.length - MAX_POINTS); }
}

function text(id, value) { $(id).textContent = value; }

// The strategy as "name (k=v, …)" from /status's {"name", …parameters}.
function describe(strategy) {
  if (!strategy || typeof strategy !== "object") { return strategy ?? "–"; }
  const { name, ...params } = strategy;
  const extra = Object.entries(params).map(([k, v]) => `${k}=${v}`).join(", ");
  return extra ? `${name} (${extra})` : String(name);
}

function renderCards(status) {
  const rejected = status.updates?.rejected || {};
  const ev = status.eval || {};
  const last = state.rows[state.rows.length - 1] || {};
  text("job", status.job ? `· job ${status.job}` : "");
  text("stat-version", status.version ?? "–");
  text("stat-accuracy", num(ev.accuracy) !== null ? (100 * ev.accuracy).toFixed(2) + " %" : "–");
  text("stat-loss", num(ev.loss) !== null ? ev.loss.toFixed(4) : "–");
  text("stat-rate", num(last.updates_per_s) !== null ? last.updates_per_s.toFixed(1) : "–");
  text("stat-staleness", num(last.staleness) !== null ? last.staleness.toFixed(2) : "–");
  text("stat-applied", status.updates?.applied ?? "–");
  text("stat-rejected", Object.values(rejected).reduce((a, b) => a + b, 0));
  text("stat-strategy", describe(status.strategy));
  text("stat-model", status.model ?? "–");
}

function renderTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    return tr;
  }));
}

function renderTables(status) {
  // The server and this page usually share a clock; "ago" is only a rough guide otherwise.
  const now = Date.now() / 1000;
  const workers = Object.entries(status.workers || {}).sort(([a], [b]) => a.localeCompare(b));
  renderTable("workers", workers.map(([name, w]) => [
    name,
    w.active === false ? "left" : "active",
    w.pushes ?? 0,
    w.samples ?? 0,
    num(w.last_loss) !== null ? w.last_loss.toFixed(4) : "–",
    num(w.last_seen) !== null ? `${Math.max(0, now - w.last_seen).toFixed(1)} s ago` : "–",
  ]));
  const rejected = Object.entries(status.updates?.rejected || {}).filter(([, n]) => n > 0);
  renderTable("rejected", rejected.length ? rejected : [["none", 0]]);
}

function renderPlots(status) {
  const t0 = state.t0 ?? 0;
  const series = (x, key) => state.rows.map((r) => [x(r), r[key]]);
  const byVersion = (r) => r.version;
  const byTime = (r) => r.time - t0;
  for (const [suffix, x] of [["version", byVersion], ["time", byTime]]) {
    OwPlot.linePlot($(`plot-loss-${suffix}`), [
      { name: "train loss (moving avg)", points: series(x, "loss") },
      { name: "test loss", points: series(x, "eval_loss") },
    ], { yMin: 0 });
    OwPlot.linePlot($(`plot-acc-${suffix}`), [{ name: "test accuracy", points: series(x, "accuracy") }]);
  }
  OwPlot.linePlot($("plot-rate"), [
    { name: "updates/s", points: series(byTime, "updates_per_s") },
    { name: "mean staleness", points: series(byTime, "staleness") },
  ], { yMin: 0 });
  const hist = Object.entries(status.staleness_histogram || {})
    .map(([k, v]) => ({ label: k, value: v }))
    .sort((a, b) => parseFloat(a.label) - parseFloat(b.label));
  OwPlot.barPlot($("plot-staleness"), hist);
}

async function poll() {
  try {
    const [status, history] = await Promise.all([
      getJSON("/status"),
      getJSON(`/api/history?since=${encodeURIComponent(state.since)}`),
    ]);
    absorbHistory(history);
    renderCards(status);
    renderTables(status);
    renderPlots(status);
    $("conn").textContent = "live";
    $("conn").className = "badge ok";
    text("updated", `updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    $("conn").textContent = `unreachable: ${err.message}`;
    $("conn").className = "badge down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
