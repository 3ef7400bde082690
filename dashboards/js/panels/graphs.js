/**
 * Graphs: request volume, response time (avg/p95/p99) with exemplar links, the
 * response-time distribution from the stored histogram buckets, error rate, model MAE
 * trend and the cache hit rate gauge.
 *
 * `load(range)` fetches the whole visible range. Live updates append the newest steps
 * without a rebuild: `applyPushed(range, windows)` takes them from the `ingest` event (the
 * backend computed them once for every page, at the resolution of the page's own fetch),
 * `tail(range)` fetches them when no pushed window fits.
 */

import { getJSON } from "../api.js";
import * as Q from "../queries.js";
import { TimeChart, BarChart, Gauge } from "../charts.js";
import { h, replace, loading, empty, failed } from "../dom.js";
import * as f from "../format.js";

/** Points per series, keyed by epoch second; merges tails and prunes the front. */
class SeriesSet {
  constructor() {
    /** @type {Map<string, {label: string, labels: any, points: Map<number, number|null>}>} */
    this.series = new Map();
  }

  /**
   * @param {string} prefix a signal name, to keep several signals apart
   * @param {Array<{labels: any, points: Array<[number, number|null]>}>} list
   * @param {(labels: any) => string} labelFn
   * @param {number} shift seconds added to every timestamp (comparison overlays)
   */
  merge(prefix, list, labelFn, shift = 0) {
    for (const s of list || []) {
      const key = `${prefix}|${JSON.stringify(s.labels || {})}`;
      let entry = this.series.get(key);
      if (!entry) {
        entry = { label: labelFn(s.labels || {}), labels: s.labels || {}, points: new Map() };
        this.series.set(key, entry);
      }
      for (const [t, v] of s.points || []) entry.points.set(t + shift, f.isNum(v) ? v : null);
    }
  }

  /** Drop points before `from`. */
  prune(from) {
    for (const entry of this.series.values()) {
      for (const t of entry.points.keys()) if (t < from) entry.points.delete(t);
    }
  }

  /** The newest timestamp, or null. */
  last() {
    let last = null;
    for (const e of this.series.values()) for (const t of e.points.keys()) if (last === null || t > last) last = t;
    return last;
  }

  keys() { return [...this.series.keys()]; }

  /** uPlot columns for `keys`: [xs, ys...] over the union of timestamps. */
  columns(keys) {
    const xs = new Set();
    for (const k of keys) for (const t of this.series.get(k)?.points.keys() ?? []) xs.add(t);
    const sorted = [...xs].sort((a, b) => a - b);
    return [sorted, ...keys.map((k) => {
      const pts = this.series.get(k)?.points;
      return sorted.map((t) => (pts && pts.has(t) ? pts.get(t) : null));
    })];
  }

  label(key) { return this.series.get(key)?.label ?? key; }
}

const svcLabel = (prefix) => (labels) => {
  const rest = Object.values(labels || {}).filter(Boolean).join(" · ");
  return prefix ? (rest ? `${prefix} · ${rest}` : prefix) : rest || "all";
};

/**
 * One time chart fed by one or more signals.
 * @typedef {{signal: string, group_by?: string, label: (labels:any)=>string, color?: string}} Spec
 */
class SignalChart {
  /**
   * @param {HTMLElement} el
   * @param {{specs: Spec[], format: (v:number)=>string, axisFormat?: (v:number)=>string, yMax?: number,
   *          emptyHint: string, fill?: boolean, completeOnly?: boolean, logWhenSpread?: boolean}} opts
   */
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    /** @type {() => Q.Scope} the page's scope (service, instance), read at each fetch */
    this.scope = opts.scope || (() => ({}));
    /** whether the last load compared, and found nothing in the previous period */
    this.prevEmpty = false;
    this.now = new SeriesSet();
    this.prev = new SeriesSet();
    this.chart = new TimeChart(el, {
      format: opts.format, axisFormat: opts.axisFormat, yMax: opts.yMax, height: 220, logWhenSpread: opts.logWhenSpread,
    });
    this.overlay = h("div", { class: "chart-overlay" });
    el.append(this.overlay);
    this.showState(loading());
    this.token = 0;
    /** @type {number|null} the stored resolution the full load was computed at */
    this.resolution = null;
  }

  showState(node) {
    if (!node && this.overlay.hidden && !this.overlay.firstChild) return; // already clear
    replace(this.overlay, node);
    this.overlay.hidden = !node;
  }

  /** Fetch every spec over `w` (and the previous period when comparing). */
  async load(w, compare) {
    // A newer load (the user picked another range) supersedes this one and any tail.
    const token = ++this.token;
    const now = new SeriesSet();
    const prev = new SeriesSet();
    const jobs = [];
    let resolution = null;
    const scope = this.scope();
    for (const spec of this.opts.specs) {
      jobs.push(history(spec, w.from, w.to, w.step, scope).then((r) => {
        resolution = r.resolution ?? null;
        now.merge(spec.signal, r.series, spec.label);
      }));
      if (compare) {
        jobs.push(history(spec, w.from - w.span, w.to - w.span, w.step, scope)
          .then((r) => prev.merge(spec.signal, r.series, spec.label, w.span)));
      }
    }
    try {
      await Promise.all(jobs);
    } catch (err) {
      if (token === this.token) this.showState(failed(`Could not load: ${err.message}`));
      throw err;
    }
    if (token !== this.token) return;
    this.now = now;
    this.prev = prev;
    this.prevEmpty = Boolean(compare) && countPoints(prev) === 0;
    this.resolution = resolution;
    this.render(w);
  }

  /**
   * Append pushed steps (`signals`: series per signal, in `/metrics/history`'s shape).
   * Returns false, changing nothing, when they do not fit what the chart holds (another
   * resolution, a signal missing): the caller fetches the tail instead.
   * @param {{from: number, to: number, step: number}} w
   * @param {Record<string, Array<{labels: any, points: Array<[number, number|null]>}>>} signals
   * @param {number} resolution
   */
  applyTail(w, signals, resolution) {
    if (this.resolution !== null && resolution !== this.resolution) return false;
    if (!this.opts.specs.every((spec) => Array.isArray(signals[spec.signal]))) return false;
    for (const spec of this.opts.specs) this.now.merge(spec.signal, signals[spec.signal], spec.label);
    this.now.prune(w.from);
    this.prev.prune(w.from);
    this.render(w);
    return true;
  }

  /** Fetch the newest steps only and append them. */
  async tail(w) {
    const token = this.token;
    const last = this.now.last();
    const from = last === null ? w.from : Math.max(w.from, last - w.step);
    const scope = this.scope();
    const results = await Promise.all(this.opts.specs.map((spec) => history(spec, from, w.to, w.step, scope)));
    if (token !== this.token) return; // a full load replaced the data meanwhile
    this.opts.specs.forEach((spec, i) => this.now.merge(spec.signal, results[i].series, spec.label));
    this.now.prune(w.from);
    this.prev.prune(w.from);
    this.render(w);
  }

  /** Keys in spec order (avg, p95, p99), then by label. */
  ordered(set) {
    const rank = (k) => this.opts.specs.findIndex((s) => k.startsWith(`${s.signal}|`));
    return set.keys().sort((a, b) => rank(a) - rank(b) || set.label(a).localeCompare(set.label(b)));
  }

  render(w) {
    this.lastStep = w.step;
    const keys = this.ordered(this.now);
    const prevKeys = this.ordered(this.prev);
    // Colors: one per series, never shared within the chart (two services' p95 lines
    // differ); a previous-period series takes its current twin's, dashed and paler.
    const defs = [
      ...keys.map((k, i) => ({ label: this.now.label(k), colorIndex: i, fill: this.opts.fill && i === 0 && keys.length === 1 })),
      ...prevKeys.map((k) => ({ label: `${this.prev.label(k)} (previous)`, dash: [5, 4], width: 1.25, colorIndex: Math.max(0, keys.indexOf(k)) })),
    ];

    let cur = this.now.columns(keys);
    if (this.opts.completeOnly) {
      // A rate over a step that is still filling reads as a drop: show complete steps only.
      const cutoff = Date.now() / 1000 - w.step;
      const keep = cur[0].map((t) => t <= cutoff);
      cur = cur.map((col) => col.filter((_, i) => keep[i]));
    }
    const old = this.prev.columns(prevKeys);
    const data = joinColumns(cur, old);
    // Pin the x scale to the visible window so a sparse series still reads in time.
    this.chart.update(defs, data, [w.from, w.to]);
    const scale = this.chart.log ? "log" : "linear";
    if (this.el.dataset.scale !== scale) this.el.dataset.scale = scale;
    const n = this.chart.pointCount();
    if (this.el.dataset.points !== String(n)) this.el.dataset.points = String(n);
    this.showState(n ? null : empty("No data in this range", this.opts.emptyHint));
  }

  rebuild() { this.chart.rebuild(); }
}

/** Points with a value in a SeriesSet. @param {SeriesSet} set */
function countPoints(set) {
  let n = 0;
  for (const e of set.series.values()) for (const v of e.points.values()) if (f.isNum(v)) n++;
  return n;
}

/** Merge two column sets over the union of their x values. */
function joinColumns(a, b) {
  if (b.length <= 1) return a;
  const xs = [...new Set([...a[0], ...b[0]])].sort((x, y) => x - y);
  const pick = (cols) => cols.slice(1).map((ys) => {
    const m = new Map(cols[0].map((t, i) => [t, ys[i]]));
    return xs.map((t) => (m.has(t) ? m.get(t) : null));
  });
  return [xs, ...pick(a), ...pick(b)];
}

/** @param {Spec} spec @param {Q.Scope} scope */
function history(spec, from, to, step, scope) {
  return getJSON("metrics/history", Q.historyParams(spec, from, to, step, scope));
}

export class GraphsPanel {
  /**
   * @param {{requests: HTMLElement, latency: HTMLElement, distribution: HTMLElement,
   *          errors: HTMLElement, mae: HTMLElement, cache: HTMLElement, exemplars: HTMLElement,
   *          percentiles: HTMLElement}} els
   */
  constructor(els) {
    this.els = els;
    this.jaegerUrl = "";
    /** @type {Q.Scope} the service / instance every query is filtered to */
    this.scopeFilters = {};
    const scope = () => this.scopeFilters;
    /** Settles once the page's settings (the Jaeger URL) are known. */
    this.ready = Promise.resolve();
    this.cacheToken = 0;
    /** @type {SeriesSet|null} */
    this.cacheHits = null;
    /** @type {SeriesSet|null} */
    this.cacheMisses = null;
    this.charts = {
      requests: new SignalChart(els.requests, {
        specs: [{ ...Q.CHART_SIGNALS.requests[0], label: svcLabel("") }], scope,
        format: (v) => `${f.num(v)} /min`, axisFormat: f.axis, fill: true, completeOnly: true,
        emptyHint: "Requests appear once mlapi exports metrics.",
      }),
      latency: new SignalChart(els.latency, {
        specs: [
          { ...Q.CHART_SIGNALS.latency[0], label: svcLabel("avg") },
          { ...Q.CHART_SIGNALS.latency[1], label: svcLabel("p95") },
          { ...Q.CHART_SIGNALS.latency[2], label: svcLabel("p99") },
        ], scope,
        format: (v) => f.ms(v), axisFormat: (v) => `${f.axis(v)} ms`, emptyHint: "Latency appears with the first requests.",
      }),
      errors: new SignalChart(els.errors, {
        specs: [{ ...Q.CHART_SIGNALS.errors[0], label: svcLabel("") }], scope,
        format: (v) => f.pct(v), axisFormat: (v) => `${f.axis(v)} %`, fill: true, emptyHint: "No requests in this range.",
      }),
      mae: new SignalChart(els.mae, {
        specs: [{ ...Q.CHART_SIGNALS.mae[0], label: svcLabel("") }], scope,
        format: (v) => f.num(v), axisFormat: f.axis, logWhenSpread: true, emptyHint: "MAE needs ground-truth feedback (POST /feedback on mlapi).",
      }),
    };
    this.distribution = new BarChart(els.distribution, { label: "requests", format: (v) => f.count(v), color: "--c1" });
    this.distOverlay = h("div", { class: "chart-overlay" }, loading());
    els.distribution.append(this.distOverlay);
    this.gauge = new Gauge(els.cache, { warn: 60, bad: 50, label: "of lookups hit the cache, over the range" });
    this.gaugeSub = h("div", { class: "gauge-sub" });
    els.cache.querySelector(".gauge")?.append(this.gaugeSub);
  }

  /** @param {string} url the Jaeger UI base, empty to hide trace links */
  setJaeger(url) { this.jaegerUrl = url || ""; }

  /** Filter every query to a service / instance (`{}` for all services). @param {Q.Scope} scope */
  setScope(scope) { this.scopeFilters = { ...scope }; }

  /** Whether the comparison found no data in the previous period (on every chart). */
  previousEmpty() { return Object.values(this.charts).every((c) => c.prevEmpty); }

  /**
   * Draw annotations (alerts, versions, scenarios, restarts) on every time chart.
   * @param {Array<{at: number, end?: number|null, kind: string, title: string, text: string}>} list
   */
  setAnnotations(list) {
    for (const c of Object.values(this.charts)) c.chart.setAnnotations(list);
  }

  /** Load every chart over the window `w`. */
  async load(w, compare) {
    const results = await Promise.allSettled([
      ...Object.values(this.charts).map((c) => c.load(w, compare)),
      this.loadDistribution(w),
      this.loadCache(w),
      this.loadExemplars(w),
    ]);
    const failedOne = results.find((r) => r.status === "rejected");
    if (failedOne) throw failedOne.reason;
  }

  /**
   * Append the steps pushed with an `ingest` event (`windows` of the page's view); false
   * when some chart could not take them (it then needs `tail`).
   * @param {{from: number, to: number, step: number}} w
   * @param {{step: number, resolution: number, signals: Record<string, any[]>}} pushed
   */
  applyPushed(w, pushed) {
    if (!pushed || pushed.step !== w.step || !pushed.signals) return false;
    let ok = true;
    for (const c of Object.values(this.charts)) ok = c.applyTail(w, pushed.signals, pushed.resolution) && ok;
    const { cache_hits: hits, cache_misses: misses } = pushed.signals;
    if (Array.isArray(hits) && Array.isArray(misses) && this.cacheHits && this.cacheMisses) {
      this.cacheHits.merge("hits", hits, () => "hits");
      this.cacheMisses.merge("misses", misses, () => "misses");
      this.showCache(w);
    } else {
      ok = false;
    }
    return ok;
  }

  /** Append the newest points (live); with `wholeRange`, also redo the distribution and exemplars. */
  async tail(w, wholeRange = true) {
    await Promise.allSettled([
      ...Object.values(this.charts).map((c) => c.tail(w)),
      this.loadCache(w, true),
      ...(wholeRange ? [this.loadDistribution(w), this.loadExemplars(w)] : []),
    ]);
  }

  async loadDistribution(w) {
    let body;
    try {
      body = await getJSON("metrics/distribution", Q.distributionParams(w, this.scopeFilters));
    } catch (err) {
      if (err.status === 404) body = { buckets: [] }; // no request recorded yet
      else {
        replace(this.distOverlay, failed(`Could not load: ${err.message}`));
        this.distOverlay.hidden = false;
        return;
      }
    }
    const bins = rebin(body.buckets || [], body.unit === "ms" ? 1 : 1000);
    this.distribution.setData(bins.map((b) => b.label), bins.map((b) => b.count));
    this.els.distribution.dataset.points = String(bins.filter((b) => b.count > 0).length);
    this.els.distribution.dataset.total = String(bins.reduce((n, b) => n + b.count, 0));
    const any = bins.some((b) => b.count > 0);
    replace(this.distOverlay, any ? null : empty("No requests in this range"));
    this.distOverlay.hidden = any;
    const pc = body.percentiles || {};
    const scale = body.unit === "ms" ? 1 : 1000;
    const part = (name) => {
      const p = pc[name];
      if (!p || !f.isNum(p.value)) return null;
      const bounds = f.isNum(p.lower) && f.isNum(p.upper) ? ` (${f.msRange(p.lower * scale, p.upper * scale)})` : "";
      return h("span", { "data-percentile": name, "data-value": p.value * scale }, `${name} ${f.ms(p.value * scale)}${bounds}`);
    };
    const parts = ["p50", "p95", "p99"].map(part).filter(Boolean);
    const shared = sharedBuckets(pc);
    replace(this.els.percentiles, h("span", { class: "muted" }, "over the range: "), ...parts.flatMap((p, i) => (i ? [" · ", p] : [p])),
      f.isNum(body.relative_error) ? h("span", { class: "muted" }, ` · ±${f.num(body.relative_error * 100)} % bucket error`) : null,
      shared ? h("div", { class: "muted", "data-shared-bucket": shared }, `${shared} fall in the same histogram bucket: the data cannot tell them apart.`) : null);
  }

  /**
   * The cache hit rate over the range: hits and misses summed over the steps, so the gauge
   * is exact for the range. Live updates fetch only the newest steps, like the charts.
   * @param {{from: number, to: number, step: number}} w
   * @param {boolean} [tail] append to the steps already held
   */
  async loadCache(w, tail = false) {
    const token = tail ? this.cacheToken : ++this.cacheToken;
    const hitsSet = tail && this.cacheHits ? this.cacheHits : new SeriesSet();
    const missSet = tail && this.cacheMisses ? this.cacheMisses : new SeriesSet();
    const last = tail ? hitsSet.last() : null;
    const from = last === null ? w.from : Math.max(w.from, last - w.step);
    try {
      const [h1, m1] = await Promise.all(Q.CACHE_SIGNALS.map((metric) => getJSON("metrics/history", Q.cacheParams(metric, from, w, this.scopeFilters))));
      if (token !== this.cacheToken) return; // a newer full load won
      hitsSet.merge("hits", h1.series, () => "hits");
      missSet.merge("misses", m1.series, () => "misses");
    } catch { /* keep what is shown */ }
    this.cacheHits = hitsSet;
    this.cacheMisses = missSet;
    this.showCache(w);
  }

  /** Draw the gauge from the hits and misses held (pruned to the range). */
  showCache(w) {
    const hitsSet = /** @type {SeriesSet} */ (this.cacheHits), missSet = /** @type {SeriesSet} */ (this.cacheMisses);
    hitsSet.prune(w.from);
    missSet.prune(w.from);
    const total = (set) => [...set.series.values()].reduce((n, e) => n + [...e.points.values()].reduce((a, v) => a + (f.isNum(v) ? v : 0), 0), 0);
    const hits = total(hitsSet), misses = total(missSet);
    const lookups = hits + misses;
    const value = lookups > 0 ? (hits / lookups) * 100 : null;
    this.gauge.set(value, f.isNum(value) ? f.pct(value, 1) : f.DASH);
    this.els.cache.dataset.points = f.isNum(value) ? "1" : "0";
    this.gaugeSub.textContent = lookups > 0
      ? `${f.count(hits)} hits · ${f.count(misses)} misses` : "no cache lookups in this range";
  }

  async loadExemplars(w) {
    await this.ready; // the Jaeger URL
    const box = this.els.exemplars;
    const chart = this.charts.latency.chart;
    if (!this.jaegerUrl) {
      // Embedded default: no trace backend, so no exemplars to link; say so, and how to add one.
      chart.setMarkers([]);
      box.hidden = false;
      replace(box, h("h4", {}, "Slowest requests — traces"), noTraceBackend());
      return;
    }
    let body;
    try {
      body = await getJSON("metrics/exemplars", Q.exemplarParams(w, this.scopeFilters));
    } catch {
      box.hidden = true;
      return;
    }
    const all = normalizeExemplars(body);
    // On the latency chart: a marker per exemplar, at its time and latency, linking to its trace.
    chart.setMarkers(all.filter((e) => f.isNum(e.at) && f.isNum(e.value_ms)).map((e) => ({
      t: e.at, v: e.value_ms, href: traceUrl(this.jaegerUrl, e.trace_id),
      title: `${f.ms(e.value_ms)}${e.route ? ` · ${e.route}` : ""} at ${f.dateTime(e.at)} — open the trace`,
    })).filter((m) => m.href !== null));
    const items = all.slice(0, 8);
    if (!items.length) { box.hidden = true; return; }
    box.hidden = false;
    replace(box,
      h("h4", {}, "Slowest requests — open the trace in Jaeger"),
      h("div", { class: "exemplar-list" }, ...items.map((e) => traceLink(this.jaegerUrl, e.trace_id,
        `${f.ms(e.value_ms)}${e.route ? ` · ${e.route}` : ""}`, e.at))));
  }

  /**
   * The newest values of a few series, for the overview's sparklines.
   * @returns {{requests: number[], latency: number[], errors: number[]}}
   */
  sparkData() {
    const pick = (chart, signal) => {
      const key = chart.now.keys().find((k) => k.startsWith(`${signal}|`));
      if (!key) return [];
      const [xs, ys] = chart.now.columns([key]);
      const cutoff = chart.opts.completeOnly && chart.lastStep ? Date.now() / 1000 - chart.lastStep : Infinity;
      return ys.filter((v, i) => f.isNum(v) && xs[i] <= cutoff);
    };
    return {
      requests: pick(this.charts.requests, "request_rate"),
      latency: pick(this.charts.latency, "avg_latency_ms"),
      errors: pick(this.charts.errors, "error_rate_percent"),
    };
  }

  /** Rebuild the uPlot instances (theme change). */
  rebuild() {
    for (const c of Object.values(this.charts)) c.rebuild();
    this.distribution.rebuild();
  }
}

/**
 * Which percentiles share one histogram bucket ("p95 and p99"), or "" when none do: the
 * page then says so instead of showing two equal-looking numbers without a word.
 * @param {Record<string, {lower?: number, upper?: number}|null>} pc percentiles with bounds
 * @param {string[]} [names]
 */
export function sharedBuckets(pc, names = ["p50", "p95", "p99"]) {
  const groups = new Map();
  for (const name of names) {
    const p = pc?.[name];
    if (!p || !f.isNum(p.lower) || !f.isNum(p.upper)) continue;
    const key = `${p.lower}|${p.upper}`;
    groups.set(key, [...(groups.get(key) || []), name]);
  }
  const same = [...groups.values()].find((g) => g.length > 1);
  return same ? same.join(" and ") : "";
}

/**
 * The URL of a trace in the Jaeger UI's trace view, or null when no Jaeger UI is
 * configured or the id is not a trace id (so a link never lands on a placeholder).
 * @param {string} base the Jaeger UI base URL @param {string} traceId hex trace id
 * @returns {string|null}
 */
export function traceUrl(base, traceId) {
  if (!/^https?:\/\//.test(base || "") || !/^[0-9a-f]{16,32}$/i.test(String(traceId || ""))) return null;
  return `${String(base).replace(/\/+$/, "")}/trace/${String(traceId).toLowerCase()}`;
}

/**
 * The URL of the Jaeger UI's search, prefilled: traces of `service` that started between
 * `from` and `to` (epoch seconds) and lasted at least `minMs`. Null without a Jaeger UI.
 * @param {string} base
 * @param {{service: string, from: number, to: number, minMs?: number|null, limit?: number}} q
 * @returns {string|null}
 */
export function traceSearchUrl(base, { service, from, to, minMs = null, limit = 20 }) {
  if (!/^https?:\/\//.test(base || "") || !service || !f.isNum(from) || !f.isNum(to)) return null;
  const params = new URLSearchParams({
    service: String(service),
    start: String(Math.floor(from * 1e6)), // Jaeger takes microseconds
    end: String(Math.ceil(to * 1e6)),
    lookback: "custom",
    limit: String(limit),
  });
  if (f.isNum(minMs) && minMs > 0) params.set("minDuration", `${Math.floor(minMs)}ms`);
  return `${String(base).replace(/\/+$/, "")}/search?${params}`;
}

/** The one command that adds a trace backend (Jaeger) to the demo. */
export const ADD_TRACES_COMMAND = "mlpulse demo --with-collector";

/**
 * What the page shows where trace links would be when no trace backend is configured:
 * why there are none, and the one command that adds traces.
 * @param {boolean} [short] one line, for an alert's actions
 */
export function noTraceBackend(short = false) {
  const cmd = h("code", {}, ADD_TRACES_COMMAND);
  return short
    ? h("span", { class: "muted", "data-no-traces": "" }, "No trace backend configured; add traces with ", cmd)
    : h("p", { class: "muted", "data-no-traces": "" },
      "No trace backend is configured, so requests are not traced and there is nothing to link to. ",
      "To add traces (Jaeger, with links from here): ", cmd, ".");
}

/**
 * A link to a trace in Jaeger, or null when no Jaeger UI is configured.
 * @param {string} base @param {string} traceId @param {string} text @param {number} [at]
 */
export function traceLink(base, traceId, text, at) {
  const href = traceUrl(base, traceId);
  if (href === null) return null;
  return h("a", {
    class: "chip", href, target: "_blank", rel: "noopener noreferrer",
    title: `trace ${traceId}${f.isNum(at) ? ` at ${f.dateTime(at)}` : ""}`, "data-trace": traceId,
  }, text);
}

/** Display bin edges in ms: 1-1.5-2-3-5-7 per decade, from 0.1 ms to 100 s. */
const EDGES = (() => {
  const out = [];
  for (let d = 0.1; d <= 1e5; d *= 10) for (const m of [1, 1.5, 2, 3, 5, 7]) out.push(+(d * m).toPrecision(2));
  return out;
})();

/**
 * Merge the stored (fine, exponential) buckets into readable bins: each stored bucket goes
 * to the display bin holding its geometric midpoint, so counts are exact per stored bucket.
 * @param {Array<{lower: number|null, upper: number|null, count: number}>} buckets
 * @param {number} toMs factor from the metric's unit to milliseconds
 */
export function rebin(buckets, toMs) {
  const counts = new Map();
  for (const b of buckets) {
    if (!b.count) continue;
    const lo = f.isNum(b.lower) ? b.lower * toMs : null;
    const hi = f.isNum(b.upper) ? b.upper * toMs : null;
    const mid = lo !== null && hi !== null && lo > 0 ? Math.sqrt(lo * hi) : hi ?? lo ?? 0;
    let i = EDGES.findIndex((e) => mid <= e);
    if (i < 0) i = EDGES.length;
    counts.set(i, (counts.get(i) || 0) + b.count);
  }
  if (!counts.size) return [];
  const idx = [...counts.keys()];
  const first = Math.min(...idx), last = Math.max(...idx);
  const out = [];
  for (let i = first; i <= last; i++) {
    const label = i < EDGES.length ? `≤${EDGES[i] >= 1000 ? `${EDGES[i] / 1000}s` : EDGES[i]}` : `>${EDGES[EDGES.length - 1]}`;
    out.push({ label, count: counts.get(i) || 0 });
  }
  return out;
}

/** Exemplars as [{trace_id, value_ms, route, service, at}], slowest first. */
export function normalizeExemplars(body) {
  const list = Array.isArray(body) ? body : body?.exemplars || [];
  return list.map((e) => ({
    trace_id: e.trace_id,
    value_ms: e.value_ms ?? (f.isNum(e.value) ? e.value * 1000 : null),
    route: e.labels?.["http.route"] ?? e.labels?.route ?? e.route ?? "",
    service: e.labels?.service ?? e.service ?? "",
    at: e.time ?? e.at ?? e.timestamp,
  })).filter((e) => e.trace_id).sort((a, b) => (b.value_ms ?? 0) - (a.value_ms ?? 0));
}
