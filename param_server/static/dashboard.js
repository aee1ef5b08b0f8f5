// owtrain dashboard: polls the parameter server's open JSON endpoints once a second and redraws
// its charts (uPlot, vendored in vendor/ with its licence: zoom by dragging, values on hover).
// /status gives the current counters (version, workers, applied/rejected, staleness histogram,
// the run's target and epoch size); /api/history?since=T gives only the samples newer than T, so
// a long job costs the same per poll. A static copy of the page (param_server/dashboard.py,
// `render_static`) defines window.OWTRAIN_SNAPSHOT = {status, history, test, written} instead:
// it is drawn once from that data and polls nothing, so it opens after the servers have stopped.
"use strict";

const POLL_MS = 1000;
const MAX_POINTS = 5000; // keep the page light on very long jobs
const RATE_WINDOW_S = 30; // samples/s for the time-left estimate: over the last half minute
const COLORS = { train: "#2563eb", val: "#dc2626", acc: "#059669", target: "#6b7280", rate: "#2563eb",
  stale: "#d97706", bars: "#7c3aed" };
// /api/history answers one array per field (HISTORY_FIELDS in param_server/telemetry.py), one
// element per sample (about one a second): time, version, loss (workers' loss, moving average),
// accuracy and eval_loss (latest validation-set evaluation), updates_per_s, staleness (mean), workers.
const state = {
  since: 0,   // server time of the newest sample we hold; the next poll asks only for newer ones
  rows: [],   // samples as objects {time, version, loss, accuracy, eval_loss, updates_per_s, ...}
  t0: null,   // server time of the first sample: time axes are seconds since then
  seen: [],   // [page time s, samples trained] of recent polls, for the rate in the time-left estimate
  status: null,
};
const charts = {};           // name → uPlot instance
window.owtrainCharts = charts; // the browser test reads each chart's data arrays from here

const $ = (id) => document.getElementById(id);
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const SNAPSHOT = window.OWTRAIN_SNAPSHOT || null;

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

function duration(s) {
  if (s < 60) { return `${Math.ceil(s)} s`; }
  if (s < 3600) { return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`; }
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function trainedSamples(status) {
  return Object.values(status.workers || {}).reduce((a, w) => a + (num(w.samples) ?? 0), 0);
}

// Epoch = samples trained / samples in one epoch over all shards; time left = what remains of the
// epoch limit at the recent rate (an upper bound: the target accuracy may stop the run sooner).
function progress(status) {
  const run = status.run || {};
  const perEpoch = num(run.samples_per_epoch);
  const trained = trainedSamples(status);
  const now = performance.now() / 1000;
  state.seen.push([now, trained]);
  while (state.seen.length > 2 && state.seen[0][0] < now - RATE_WINDOW_S) { state.seen.shift(); }
  if (!perEpoch) { return { epoch: "–", eta: "–" }; }
  const maxEpochs = num(run.max_epochs);
  const epoch = `${(trained / perEpoch).toFixed(2)}${maxEpochs ? ` / ${maxEpochs}` : ""}`;
  if (SNAPSHOT || status.closed) { return { epoch, eta: "run over" }; }
  const [t1, s1] = state.seen[0];
  const rate = now > t1 ? (trained - s1) / (now - t1) : 0;
  if (!maxEpochs || rate <= 0) { return { epoch, eta: "–" }; }
  return { epoch, eta: duration(Math.max(0, maxEpochs * perEpoch - trained) / rate) };
}

function renderCards(status, test) {
  const rejected = status.updates?.rejected || {};
  const ev = status.eval || {};
  const last = state.rows[state.rows.length - 1] || {};
  const { epoch, eta } = progress(status);
  text("job", status.job ? `· job ${status.job}` : "");
  // a sharded job: the job's version (the minimum over the shards, as shard 0's evaluator last saw them)
  const shard = status.shard || {};
  text("stat-version", shard.job_version != null
    ? `${shard.job_version} (shards ${shard.versions.join(" / ")})` : status.version ?? "–");
  text("stat-epoch", epoch);
  text("stat-eta", eta);
  text("stat-accuracy", num(ev.accuracy) !== null ? (100 * ev.accuracy).toFixed(2) + " %" : "–");
  text("stat-loss", num(ev.loss) !== null ? ev.loss.toFixed(4) : "–");
  text("stat-test", test && num(test.accuracy) !== null
    ? `${(100 * test.accuracy).toFixed(2)} % (v${test.version})` : "at the end");
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
  const now = SNAPSHOT ? SNAPSHOT.written : Date.now() / 1000;
  const workers = Object.entries(status.workers || {}).sort(([a], [b]) => a.localeCompare(b));
  renderTable("workers", workers.map(([name, w]) => [
    name,
    w.active === false ? "left" : "active",
    w.pushes ?? 0,
    w.samples ?? 0,
    num(w.last_loss) !== null ? w.last_loss.toFixed(4) : "–",
    num(w.last_seen) !== null ? `${Math.max(0, now - w.last_seen).toFixed(1)} s ago` : "–",
  ]));
  // Phase totals come from each finished activation's POST /reportPhases (owtrain/phases.py).
  const PHASES = ["download", "verify", "register", "pull", "compute", "push", "sync_wait"];
  const timed = workers.filter(([, w]) => (w.activations ?? 0) > 0);
  renderTable("phases", timed.length ? timed.map(([name, w]) => {
    const secs = PHASES.map((p) => num(w.phases?.[p]?.s) ?? 0);
    const covered = secs.reduce((a, b) => a + b, 0);
    return [name, w.activations, ...secs.map((s) => s.toFixed(2)), Math.max(0, w.wall_s - covered).toFixed(2)];
  }) : [["none yet", 0, ...PHASES.map(() => "–"), "–"]]);
  const rejected = Object.entries(status.updates?.rejected || {}).filter(([, n]) => n > 0);
  renderTable("rejected", rejected.length ? rejected : [["none", 0]]);
}

// ---------------------------------------------------------------- charts

// The accuracy range that matters: from a little under the lowest accuracy once training is
// under way (the first fifth of the evaluations, near chance level, would squash the rest) or the
// target, whichever is lower, to a little over the highest. Unticked: the whole 0–1.
function accuracyRange(u) {
  if (!$("acc-zoom").checked) { return [0, 1]; }
  const values = u.data[1].filter((v) => num(v) !== null);
  const target = num(state.status?.run?.target_accuracy);
  if (!values.length) { return [0, 1]; }
  const later = values.slice(Math.floor(values.length / 5));
  let lo = Math.min(...later, target ?? 1);
  let hi = Math.max(...later, target ?? 0);
  const pad = Math.max(0.005, (hi - lo) * 0.08);
  lo = Math.max(0, lo - pad);
  hi = Math.min(1, hi + pad);
  return [lo, hi];
}

function chartWidth(el) { return Math.max(280, el.clientWidth - 4); }

function makeChart(name, series, scales, axes) {
  const el = $(`chart-${name}`);
  const opts = {
    width: chartWidth(el), height: 230, scales, axes, series,
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
  };
  charts[name] = new uPlot(opts, series.map(() => []), el);
  return charts[name];
}

const line = (label, stroke, extra = {}) => ({ label, stroke, width: 1.5, spanGaps: true, points: { show: false },
  value: (u, v) => (v == null ? "–" : v.toPrecision(4)), ...extra });

function createCharts() {
  const logY = { x: { time: false }, y: { distr: 3 } };
  const accScale = { x: { time: false }, y: { range: accuracyRange } };
  const target = () => line("target", COLORS.target, { dash: [6, 4], width: 1 });
  for (const [suffix, xlabel] of [["version", "version"], ["time", "s"]]) {
    makeChart(`loss-${suffix}`, [{ label: xlabel }, line("train loss (moving avg)", COLORS.train),
      line("validation loss", COLORS.val)], logY, [{}, { label: "loss" }]);
    makeChart(`acc-${suffix}`, [{ label: xlabel }, line("validation accuracy", COLORS.acc), target()],
      accScale, [{}, { label: "accuracy" }]);
  }
  makeChart("rate", [{ label: "s" }, line("updates/s", COLORS.rate), line("mean staleness", COLORS.stale,
    { scale: "stale" })], { x: { time: false }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] },
    stale: { range: (u, lo, hi) => [0, Math.max(1, hi)] } }, [{}, { label: "updates/s" },
    { scale: "stale", side: 1, label: "staleness", grid: { show: false } }]);
  makeChart("staleness", [{ label: "versions behind" }, { label: "applied updates", fill: COLORS.bars + "aa",
    stroke: COLORS.bars, paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } }],
    { x: { time: false, range: (u, lo, hi) => [Math.min(lo, 0) - 0.5, Math.max(hi, 1) + 0.5] }, y: { range: (u, lo, hi) => [0, hi * 1.1 || 1] } },
    [{ label: "versions behind", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { label: "updates" }]);
  $("acc-zoom").addEventListener("change", () => { renderCharts(state.status || {}); });
  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) {
      chart.setSize({ width: chartWidth($(`chart-${name}`)), height: 230 });
    }
  });
}

function renderCharts(status) {
  const t0 = state.t0 ?? 0;
  const rows = state.rows;
  const col = (key) => rows.map((r) => num(r[key]));
  const target = num(status.run?.target_accuracy);
  const targets = rows.map(() => target);
  for (const [suffix, x] of [["version", rows.map((r) => r.version)], ["time", rows.map((r) => r.time - t0)]]) {
    charts[`loss-${suffix}`].setData([x, col("loss"), col("eval_loss")]);
    charts[`acc-${suffix}`].setData([x, col("accuracy"), targets]);
  }
  charts.rate.setData([rows.map((r) => r.time - t0), col("updates_per_s"), col("staleness")]);
  const hist = Object.entries(status.staleness_histogram || {})
    .map(([k, v]) => [parseFloat(k), v]).sort((a, b) => a[0] - b[0]);
  charts.staleness.setData([hist.map((h) => h[0]), hist.map((h) => h[1])]);
  // the legends show the newest values unless the pointer is over a chart (then: the values there);
  // after uPlot's own redraw of the new data, which resets them
  setTimeout(() => {
    for (const chart of Object.values(charts)) {
      if (chart.cursor.left == null || chart.cursor.left < 0) { chart.setLegend({ idx: chart.data[0].length - 1 }); }
    }
  }, 0);
}

function render(status, test) {
  state.status = status;
  renderCards(status, test);
  renderTables(status);
  renderCharts(status);
}

async function poll() {
  try {
    const [status, history] = await Promise.all([
      getJSON("/status"),
      getJSON(`/api/history?since=${encodeURIComponent(state.since)}`),
    ]);
    absorbHistory(history);
    render(status, null);
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

createCharts();
// The last evaluation may be newer than the last history point (the copy is written right after
// the final evaluation): it becomes the curves' last point, so they end where the cards do.
function withFinalEvaluation(history, status) {
  const ev = status.eval || {};
  const times = history.time || [];
  if (num(ev.time) === null || num(ev.accuracy) === null || (times.length && times[times.length - 1] >= ev.time)) {
    return history;
  }
  const last = (key) => (history[key] && history[key].length ? history[key][history[key].length - 1] : null);
  const point = { time: ev.time, version: ev.evaluated_version, loss: status.loss ?? last("loss"),
    accuracy: ev.accuracy, eval_loss: ev.loss, updates_per_s: 0, staleness: 0, workers: last("workers") };
  const out = {};
  for (const key of Object.keys(history)) { out[key] = [...history[key], point[key] ?? null]; }
  return out;
}

if (SNAPSHOT) {
  absorbHistory(withFinalEvaluation(SNAPSHOT.history || {}, SNAPSHOT.status || {}));
  render(SNAPSHOT.status || {}, SNAPSHOT.test);
  $("conn").textContent = "static copy";
  $("conn").className = "badge";
  text("source", "a copy written when the run ended; it polls nothing");
  text("updated", `written ${new Date(SNAPSHOT.written * 1000).toLocaleString()}`);
} else {
  poll();
}
