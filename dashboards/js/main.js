/**
 * The page's controller: builds the panels, owns the time range, loads data, and applies
 * live events (SSE `ingest` / `alert` / `resync`, or polling every 5 s when the stream is
 * down).
 *
 * An `ingest` event carries the newest steps of every chart (computed once by the backend
 * for the page's range and step), the `snapshot` event after it the snapshot numbers: the
 * page draws both without a request. Only the whole-range views (distribution, exemplars, the
 * per-route table) are re-fetched, lazily, at most every SLOW_REFRESH_MS.
 */

import { bootNow } from "./boot.js";
import { dropPrefetched, getJSON, LiveStream, setTokenPrompt, url } from "./api.js";
import { byId, h, replace } from "./dom.js";
import * as f from "./format.js";
import * as Q from "./queries.js";
import { deriveStatus } from "./status.js";
import { TimeRange, readHash } from "./timerange.js";
import { OverviewPanel } from "./panels/overview.js";
import { FleetPanel } from "./panels/fleet.js";
import { ModelsPanel } from "./panels/models.js";
import { ApiPanel } from "./panels/apiperf.js";
import { GraphsPanel } from "./panels/graphs.js";
import { AlertsPanel } from "./panels/alerts.js";
import { RulesPanel } from "./panels/rules.js";
import { AdminPanel } from "./panels/admin.js";

// When the page's own code starts (its whole module graph is loaded by then): the first
// load's requests, started by boot.js, should all be older than this mark.
performance.mark("mlpulse:main");

const range = new TimeRange(3600);
/** Set once the first load is drawn: the fleet and the annotations follow it. */
let firstLoadDone = false;
/** @type {LiveStream|null} the live connection, once started */
let live = null;

/** Health as last fetched, and when (to age `last_ingest_age_seconds` locally). */
const health = { reachable: true, ageAtFetch: /** @type {number|null} */ (null), fetchedAt: 0 };

// ---- toasts and the token dialog ------------------------------------------------------

/** Show a short message at the bottom right. */
function toast(message, error = false) {
  const el = h("div", { class: `toast${error ? " toast--error" : ""}`, role: error ? "alert" : "status" }, message);
  byId("toasts").append(el);
  setTimeout(() => el.remove(), error ? 8000 : 4000);
}

/** Ask for the bearer token in a modal dialog; resolves to the token or null. */
function askToken() {
  const dialog = /** @type {HTMLDialogElement} */ (byId("token-dialog"));
  const input = /** @type {HTMLInputElement} */ (byId("token-input"));
  input.value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.removeEventListener("close", onClose);
      resolve(value);
    };
    const onClose = () => done(dialog.returnValue === "ok" && input.value.trim() ? input.value.trim() : null);
    dialog.addEventListener("close", onClose);
    byId("token-cancel").onclick = () => dialog.close("cancel");
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

// ---- panels ---------------------------------------------------------------------------

const overview = new OverviewPanel(byId("overview"));
const fleet = new FleetPanel(byId("fleet"), { select: (service, instance) => range.setScope(service, instance) });
const models = new ModelsPanel(byId("models"));
const apiPanel = new ApiPanel(byId("api-perf"));
const chartEl = (id) => /** @type {HTMLElement} */ (byId(id).querySelector("[data-chart]"));
const graphs = new GraphsPanel({
  requests: chartEl("chart-requests"),
  latency: chartEl("chart-latency"),
  distribution: chartEl("chart-distribution"),
  errors: chartEl("chart-errors"),
  mae: chartEl("chart-mae"),
  cache: chartEl("chart-cache"),
  exemplars: byId("exemplars"),
  percentiles: byId("percentiles"),
});
const hooks = { toast, onChange: () => { refreshAlerts(); loadAnnotations(); } };
const alerts = new AlertsPanel({
  active: /** @type {HTMLElement} */ (byId("alerts-active").querySelector("[data-role=list]")),
  history: /** @type {HTMLElement} */ (byId("alerts-history").querySelector("[data-role=list]")),
  badge: byId("tab-alert-count"),
}, hooks);
const rules = new RulesPanel({ rules: byId("rules"), silences: byId("silences"), channels: byId("channels") }, hooks);
const admin = new AdminPanel({
  actions: byId("admin-actions"), scenarios: byId("admin-scenarios"),
  diagnostics: byId("admin-diagnostics"), config: byId("admin-config"),
}, { toast, onChange: () => { loadAnnotations(); } }); // a scenario or retrain is an annotation

// ---- status ---------------------------------------------------------------------------

function lastIngestAge() {
  if (!f.isNum(health.ageAtFetch)) return null;
  return health.ageAtFetch + (Date.now() - health.fetchedAt) / 1000;
}

function renderStatus() {
  const s = deriveStatus({ reachable: health.reachable, lastIngestAge: lastIngestAge(), firing: alerts.firing() });
  overview.setStatus(s);
  const pill = byId("status-pill");
  pill.className = `status-pill status--${s.status}`;
  pill.dataset.status = s.status;
  pill.querySelector(".status-text").textContent = s.label;
  pill.title = s.reason;
}

// ---- data -----------------------------------------------------------------------------

let snapshotWindowMin = 5;

/**
 * Fetch the snapshot numbers; with `withRoutes`, the per-route table too (three history
 * queries, so live updates refresh it only every SLOW_REFRESH_MS).
 */
async function refreshNumbers(withRoutes = true, now = Date.now() / 1000) {
  const scope = range.filters();
  // The fleet (every service's snapshot) follows on its own: the numbers never wait for it,
  // and the first load leaves the backend to the panels' own queries (see start()).
  if (firstLoadDone) refreshFleet(true);
  const [current, hl] = await Promise.allSettled([
    getJSON("metrics/current", Q.currentParams(scope)), getJSON("health"),
    withRoutes ? apiPanel.loadRoutes(300, now, scope) : null,
  ]);
  if (hl.status === "fulfilled") {
    health.reachable = true;
    health.ageAtFetch = hl.value.last_ingest_age_seconds ?? null;
    health.fetchedAt = Date.now();
  } else {
    health.reachable = current.status === "fulfilled";
  }
  if (current.status === "fulfilled") applyCurrent(current.value);
  renderStatus();
  if (current.status === "rejected") throw current.reason;
}

/** @type {any} the last `/metrics/current` document */
let lastCurrent = null;
/** @type {any} the last `/metrics/services` document */
let lastFleet = null;
let lastFleetAt = 0;
const FLEET_REFRESH_MS = 10_000;

/** Render `/metrics/services`: the selector's choices, the fleet table, the breakdowns. */
function applyFleet(doc) {
  lastFleet = doc;
  lastFleetAt = Date.now();
  fleet.update(doc, { service: range.service, instance: range.instance });
  rules.setServices((doc.services || []).map((x) => x.service));
  fillScopeSelect();
  if (lastCurrent) applyCurrent(lastCurrent);
}

/**
 * Fetch the fleet in the background: at most every FLEET_REFRESH_MS on live updates, at
 * once with `now` (a load, a poll, a new scope).
 * @returns {Promise<void>}
 */
function refreshFleet(now = false) {
  if (!now && Date.now() - lastFleetAt < FLEET_REFRESH_MS) return Promise.resolve();
  lastFleetAt = Date.now();
  return getJSON("metrics/services").then(applyFleet).catch((err) => fleet.showError(err));
}

/**
 * The model cards' data: one card per service and model. With one service selected that
 * service's snapshot; with all, each service's own (a model name two services share
 * would otherwise add their predictions into one card).
 */
function modelsByService(doc) {
  const out = {};
  const add = (service, metrics) => {
    for (const [model, m] of Object.entries(metrics || {})) out[service ? `${service} · ${model}` : model] = { ...m, service, model };
  };
  const services = lastFleet?.services || [];
  if (!range.service && services.length > 1) {
    for (const s of services) add(s.service, s.current?.model_metrics);
  } else {
    add(range.service || doc.service || services[0]?.service || "", doc.model_metrics);
  }
  return out;
}

/** Render a `/metrics/current` document into the snapshot panels. */
function applyCurrent(doc) {
  lastCurrent = doc;
  const win = doc.window_seconds ?? doc.window?.seconds;
  if (f.isNum(win)) snapshotWindowMin = win / 60;
  const th = rules.thresholds();
  const several = !range.service && (lastFleet?.services?.length ?? 0) > 1;
  const modelData = modelsByService(doc);
  overview.update(doc, {
    errorThreshold: th.error_rate_percent, latencyThreshold: th.p95_latency_ms, cacheThreshold: th.cache_hit_rate_percent,
    windowMinutes: snapshotWindowMin,
    breakdown: several ? lastFleet.services : null,
    models: several ? modelData : undefined,
  });
  models.setLimit(th.mae_degradation_lower_percent ?? th.mae_degradation_percent);
  models.update(modelData);
  apiPanel.update(doc.api_metrics, snapshotWindowMin);
  byId("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-US", { hour12: false })}`;
}

// Coalesced like live refreshes: a burst of alert transitions costs two reloads at most.
let alertsBusy = null;
let alertsPending = false;
/** @param {number} [now] the first load's time (boot.js prefetched its history for it) */
async function refreshAlerts(now) {
  if (alertsBusy) { alertsPending = true; return alertsBusy; }
  alertsBusy = (async () => {
    do {
      alertsPending = false;
      try {
        await alerts.load(now);
        now = undefined; // a reload that follows is as of its own time
      } catch { /* the panel shows the error */ }
      renderStatus();
    } while (alertsPending);
  })();
  try { await alertsBusy; } finally { alertsBusy = null; }
}

function updateExportLinks() {
  const w = range.window();
  for (const format of ["csv", "json"]) {
    const a = /** @type {HTMLAnchorElement} */ (byId(`export-${format}`));
    a.href = url("metrics/export", { format, from: w.from, to: w.to, step: w.step });
    a.download = ""; // the server names the file (Content-Disposition)
  }
  byId("range-label").textContent = range.label();
  showCompareState();
}

/** The graphs' note: range, scope, and what "compare" found (or that it found nothing). */
function showCompareState() {
  const note = byId("graphs-note");
  const none = range.compare && !chartsLoading && graphs.previousEmpty();
  note.dataset.previousEmpty = none ? "1" : "0";
  const compare = !range.compare ? "" : none ? " — no data in the previous period to compare with" : ", with the previous period dashed";
  note.textContent = `${range.label()} · ${range.scopeLabel()}${compare}`;
}

/** @type {any[]} the annotations drawn on the charts */
let annotations = [];
/** Fetch and draw the annotations of the visible range and scope. */
async function loadAnnotations(w = range.window()) {
  try {
    const doc = await getJSON("annotations", Q.annotationParams(w, range.filters()));
    annotations = doc.annotations || [];
    graphs.setAnnotations(annotations);
  } catch { /* the charts keep the last ones */ }
}

let chartsLoading = null;
/** @type {any} the newest pushed `ingest` event, re-applied after a full load it raced */
let lastPush = null;
async function loadCharts(now = Date.now() / 1000) {
  updateExportLinks();
  live?.reconnect(); // the pushed windows follow the range and step
  const w = range.window(now);
  graphs.setScope(range.filters());
  if (firstLoadDone) loadAnnotations(w); // drawn when they come; the charts never wait for them
  const loading = graphs.load(w, range.compare).catch(() => {});
  chartsLoading = loading;
  await loading;
  if (chartsLoading !== loading) return; // a newer load runs
  chartsLoading = null;
  showCompareState();
  // An event that arrived during the load may be newer than what the load fetched.
  if (lastPush && range.isLive) graphs.applyPushed(range.window(), pushedWindow(lastPush));
  overview.setSparks(graphs.sparkData());
}

/** The pushed windows of an `ingest` event for the page's current view, or null. */
function pushedWindow(data) {
  if (!range.isLive || range.instance) return null; // an instance's charts fetch their tails
  const key = `${range.relative}:${range.window().step}${range.service ? `:${range.service}` : ""}`;
  return data?.windows?.[key] ?? null;
}

/** What the page asks the backend to push with each `ingest` event. */
function liveParams() {
  if (!range.isLive) return { snapshot: 1 };
  return { snapshot: 1, range: range.relative, step: range.window().step, service: range.service };
}

/** Mark a finished live update (the live-path benchmark and the tests read these). */
function markLive(commit, source) {
  liveUpdates += 1;
  document.body.dataset.liveCommittedAt = String(commit);
  document.body.dataset.liveAppliedAt = String(Date.now() / 1000);
  document.body.dataset.liveSource = source;
  document.body.dataset.liveUpdates = String(liveUpdates);
}

/**
 * Background work of the live updates, one job at a time. The backend computes each
 * whole-range view on one process (one GIL) that also ingests and pushes the next
 * update: five such queries at once would take most of its CPU for a few hundred ms and
 * delay the next pushed update several times over; one at a time they leave it room.
 */
let backgroundChain = Promise.resolve();
/** Jobs queued and not finished, by name: one of each at most (a slow backend never
 * piles up refreshes of the same view). */
const backgroundQueued = new Set();
/** A job that never answers holds the queue this long at most. */
const BACKGROUND_JOB_MAX_MS = 30_000;
/** @param {string} name @param {() => Promise<any>} job */
function inBackground(name, job) {
  if (backgroundQueued.has(name)) return backgroundChain;
  backgroundQueued.add(name);
  const run = () => Promise.race([job(), new Promise((r) => setTimeout(r, BACKGROUND_JOB_MAX_MS))])
    .catch(() => {})
    .finally(() => backgroundQueued.delete(name));
  backgroundChain = backgroundChain.then(run);
  return backgroundChain;
}

/** Re-fetch the whole-range views, at most every SLOW_REFRESH_MS (in the background; each
 * for the range as it is when its turn comes). */
function slowRefresh() {
  if (Date.now() - lastSlowRefresh < SLOW_REFRESH_MS) return;
  lastSlowRefresh = Date.now();
  inBackground("routes", () => apiPanel.loadRoutes(300, Date.now() / 1000, range.filters()));
  inBackground("distribution", () => graphs.loadDistribution(range.window()));
  inBackground("exemplars", () => graphs.loadExemplars(range.window()));
  inBackground("annotations", () => loadAnnotations(range.window()));
}

/**
 * Apply an `ingest` event: the newest steps of the charts come with it (for the page's
 * view); when they do not fit, the charts fetch their newest steps instead.
 */
function applyIngest(data) {
  const commit = f.isNum(data?.committed_at) ? data.committed_at : 0;
  newestCommit = Math.max(newestCommit, commit);
  // Freshness on the server's clock: the data was this old when the update was computed.
  health.reachable = true;
  health.ageAtFetch = f.isNum(data?.computed_at) ? Math.max(0, data.computed_at - commit) : 0;
  health.fetchedAt = Date.now();
  if (range.isLive) {
    lastPush = data;
    if (!chartsLoading) {
      updateExportLinks();
      const w = range.window();
      if (!graphs.applyPushed(w, pushedWindow(data))) {
        graphs.tail(w, false).then(() => {
          overview.setSparks(graphs.sparkData());
          markLive(commit, "fetch");
        });
        slowRefresh();
        return;
      }
    }
  }
  overview.setSparks(graphs.sparkData());
  markLive(newestCommit, "push");
  slowRefresh();
}

/** @type {any} the newest `snapshot` event */
let lastSnapshot = null;
let snapshots = 0;

/** Apply a `snapshot` event: the `/metrics/current` document, computed after a commit. */
function applySnapshot(data) {
  if (!data?.doc) return;
  lastSnapshot = data;
  inBackground("fleet", () => refreshFleet());
  // The pushed snapshot is the fleet's; a selected service or instance fetches its own.
  if (range.service) refreshNumbers(false).catch(() => {});
  else applyCurrent(data.doc);
  renderStatus();
  snapshots += 1;
  // For the live benchmark and the tests, like markLive for the charts.
  document.body.dataset.liveSnapshotCommittedAt = String(data.committed_at ?? 0);
  document.body.dataset.liveSnapshots = String(snapshots);
}

/** The server dropped events this page was too slow to take: fetch everything again. */
async function resync() {
  lastSlowRefresh = Date.now();
  await Promise.allSettled([refreshNumbers(true), loadCharts(), refreshAlerts()]);
  markLive(newestCommit, "resync");
}

// Live updates are coalesced: at most one refresh runs, and one more follows if events
// arrived meanwhile — a burst of ingests costs two refreshes, not one per export.
// The whole-range views (distribution, exemplars, per-route table) re-merge every bucket
// of the range, so each live update would cost the backend far more than the newest
// points: they follow at most every SLOW_REFRESH_MS, the numbers and chart tails at once.
const SLOW_REFRESH_MS = 15_000;
let liveBusy = false;
let livePending = false;
let liveUpdates = 0;
let newestCommit = 0;
let lastSlowRefresh = 0;
async function liveRefresh() {
  if (liveBusy) { livePending = true; return; }
  liveBusy = true;
  try {
    do {
      livePending = false;
      const commit = newestCommit;
      const slow = Date.now() - lastSlowRefresh >= SLOW_REFRESH_MS;
      if (slow) lastSlowRefresh = Date.now();
      const jobs = [refreshNumbers(slow).catch(() => {})];
      if (range.isLive && !chartsLoading) {
        updateExportLinks();
        jobs.push(graphs.tail(range.window(), slow));
      }
      await Promise.all(jobs);
      overview.setSparks(graphs.sparkData());
      markLive(commit, "fetch");
    } while (livePending);
  } finally {
    liveBusy = false;
  }
}

// ---- the time range toolbar -----------------------------------------------------------

function toLocalInput(epoch) {
  const d = new Date(epoch * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Restore the range from the URL (`#dashboard?range=900&compare=1`, or `from`/`to`). */
function readRangeFromUrl() {
  readHash(range, location.hash);
}

/** Keep the range and scope in the URL, so a reload or a shared link shows the same view. */
function writeRangeToUrl() {
  const q = new URLSearchParams();
  if (range.isLive) q.set("range", String(range.relative));
  else { q.set("from", String(range.customFrom)); q.set("to", String(range.customTo)); }
  if (range.compare) q.set("compare", "1");
  if (range.service) q.set("service", range.service);
  if (range.instance) q.set("instance", range.instance);
  history.replaceState(null, "", `#dashboard?${q}`);
}

// ---- the service / instance selector (header) -----------------------------------------

/** Fill the selectors from the fleet, keeping the selection (even a service gone quiet). */
function fillScopeSelect() {
  const svcSel = /** @type {HTMLSelectElement} */ (byId("service-select"));
  const instSel = /** @type {HTMLSelectElement} */ (byId("instance-select"));
  const services = (lastFleet?.services || []).map((s) => s.service);
  if (range.service && !services.includes(range.service)) services.push(range.service);
  const want = ["", ...services];
  const have = [...svcSel.options].map((o) => o.value);
  if (JSON.stringify(want) !== JSON.stringify(have)) {
    replace(svcSel, h("option", { value: "" }, "All services"), ...services.map((name) => h("option", { value: name }, name)));
  }
  svcSel.value = range.service;
  const field = byId("instance-field");
  field.hidden = !range.service;
  const entry = lastFleet?.services?.find((s) => s.service === range.service);
  const instances = entry?.instances || [];
  const opts = [["", "All instances"], ...instances.map((i) => [i.instance, `${i.instance}${i.state === "running" ? "" : " (stopped)"}`])];
  if (range.instance && !instances.some((i) => i.instance === range.instance)) opts.push([range.instance, range.instance]);
  const haveInst = [...instSel.options].map((o) => `${o.value}|${o.textContent}`);
  if (JSON.stringify(opts.map(([v, t]) => `${v}|${t}`)) !== JSON.stringify(haveInst)) {
    replace(instSel, ...opts.map(([v, t]) => h("option", { value: v }, t)));
  }
  instSel.value = range.instance;
}

function showScope() {
  const label = range.scopeLabel();
  byId("scope-note").textContent = label;
  for (const el of document.querySelectorAll("[data-scope-note]")) el.textContent = label;
  document.body.dataset.service = range.service;
  document.body.dataset.instance = range.instance;
  fillScopeSelect();
  if (lastFleet) fleet.update(lastFleet, { service: range.service, instance: range.instance });
}

function setupScope() {
  const svcSel = /** @type {HTMLSelectElement} */ (byId("service-select"));
  const instSel = /** @type {HTMLSelectElement} */ (byId("instance-select"));
  svcSel.addEventListener("change", () => range.setScope(svcSel.value));
  instSel.addEventListener("change", () => range.setScope(range.service, instSel.value));
  showScope();
}

function setupToolbar() {
  const buttons = [...document.querySelectorAll("[data-range]")];
  const form = /** @type {HTMLFormElement} */ (byId("custom-range"));
  const mark = (value) => buttons.forEach((b) => {
    b.classList.toggle("is-active", b.dataset.range === value);
    b.setAttribute("aria-pressed", String(b.dataset.range === value));
  });
  mark(range.isLive ? String(range.relative) : "custom");
  if (!range.isLive) {
    /** @type {HTMLInputElement} */ (byId("range-from")).value = toLocalInput(range.customFrom);
    /** @type {HTMLInputElement} */ (byId("range-to")).value = toLocalInput(range.customTo);
    form.hidden = false;
  }
  for (const b of buttons) {
    b.addEventListener("click", () => {
      if (b.dataset.range === "custom") {
        const w = range.window();
        /** @type {HTMLInputElement} */ (byId("range-from")).value = toLocalInput(w.from);
        /** @type {HTMLInputElement} */ (byId("range-to")).value = toLocalInput(w.to);
        form.hidden = false;
        mark("custom");
        return;
      }
      form.hidden = true;
      mark(b.dataset.range);
      range.setRelative(Number(b.dataset.range));
    });
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const from = Date.parse(/** @type {HTMLInputElement} */ (byId("range-from")).value) / 1000;
    const to = Date.parse(/** @type {HTMLInputElement} */ (byId("range-to")).value) / 1000;
    try {
      range.setCustom(from, to);
    } catch (err) {
      toast(err.message, true);
    }
  });
  const compare = /** @type {HTMLInputElement} */ (byId("compare"));
  compare.checked = range.compare;
  compare.addEventListener("change", () => range.setCompare(compare.checked));
  let scopeSeen = JSON.stringify(range.filters());
  range.onChange(() => {
    writeRangeToUrl();
    const scope = JSON.stringify(range.filters());
    if (scope !== scopeSeen) {
      scopeSeen = scope;
      showScope();
      lastPush = null; // pushed windows of the old scope never apply to the new one
      refreshNumbers(true).catch(() => {});
      lastSlowRefresh = Date.now();
    }
    loadCharts();
  });
}

// ---- views (tabs) ---------------------------------------------------------------------

function showView() {
  const name = (location.hash || "#dashboard").slice(1).split("?")[0] || "dashboard";
  const known = ["dashboard", "alerts", "admin"];
  const view = known.includes(name) ? name : "dashboard";
  for (const el of document.querySelectorAll("section.view")) el.hidden = /** @type {HTMLElement} */ (el).dataset.view !== view;
  for (const tab of document.querySelectorAll(".tab")) {
    const active = /** @type {HTMLElement} */ (tab).dataset.view === view;
    tab.classList.toggle("is-active", active);
    if (active) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
  byId("toolbar").hidden = view !== "dashboard";
  // The scope applies to the dashboard's panels; the rules and admin views are fleet-wide.
  /** @type {HTMLElement} */ (document.querySelector(".scope")).hidden = view !== "dashboard";
  if (view === "alerts") rules.load();
  if (view === "admin") admin.refresh();
  document.body.dataset.view = view;
}

// ---- live connection ------------------------------------------------------------------

const CONN_LABELS = { connecting: "Connecting", live: "Live", polling: "Polling every 5 s", offline: "Offline" };

function showConnection(state) {
  const el = byId("conn");
  el.className = `conn conn--${state}`;
  el.dataset.state = state;
  el.querySelector(".conn-label").textContent = CONN_LABELS[state] || state;
}

// ---- start ----------------------------------------------------------------------------

async function start() {
  setTokenPrompt(askToken);
  readRangeFromUrl();
  setupToolbar();
  setupScope();
  window.addEventListener("hashchange", showView);
  showView();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => graphs.rebuild());

  // The page's settings (Jaeger URL) load alongside the data; only trace links wait for them.
  const config = getJSON("dashboard/config").then((cfg) => {
    graphs.setJaeger(cfg.jaeger_ui_url);
    alerts.setJaeger(cfg.jaeger_ui_url);
    if (cfg.version) byId("footer-version").textContent = `mlpulse ${cfg.version}`;
  }).catch(() => { /* no trace links */ });
  graphs.ready = config;
  alerts.ready = config;

  // Everything at once: a cold load costs about the slowest query. Computed for the
  // moment boot.js started the same requests, so the page takes those answers.
  await Promise.allSettled([
    rules.load().then(() => {
      if (lastCurrent) applyCurrent(lastCurrent);
      alerts.setSignals(rules.signals());
    }),
    refreshAlerts(bootNow),
    refreshNumbers(true, bootNow),
    loadCharts(bootNow),
  ]);
  document.body.dataset.ready = "1";
  dropPrefetched(); // what the first load did not take must never answer a later request
  // Second: the fleet table and breakdowns, and the annotations. They cost the backend a
  // snapshot per service and a scan of the day, so they never compete with the first paint.
  firstLoadDone = true;
  refreshFleet(true);
  loadAnnotations();
  lastSlowRefresh = Date.now(); // the whole-range views were just loaded

  live = new LiveStream({
    onState: showConnection,
    params: liveParams,
    onEvent: (type, data) => {
      if (type === "alert") { refreshAlerts(); return; }
      if (type === "resync") { resync(); return; }
      if (type === "snapshot") { applySnapshot(data); return; }
      if (type !== "ingest") return;
      applyIngest(data);
    },
    onPoll: async () => {
      try {
        await Promise.all([liveRefresh(), refreshAlerts()]);
        if (byId("conn").dataset.state === "offline") showConnection("polling");
      } catch {
        showConnection("offline");
      }
      if (!health.reachable) showConnection("offline");
    },
  });
  live.start();
  // Freshness changes with time alone: re-derive the status between events.
  setInterval(renderStatus, 5000);
}

start();

// For the tests and the console: the panels, the range and the newest pushed event.
export { graphs, range, lastPush, lastSnapshot, annotations };
