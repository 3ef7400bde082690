/**
 * Graphs: request volume, response time (avg/p95/p99) with exemplar links, the
 * response-time distribution from the stored histogram buckets, error rate, model MAE
 * trend and the cache hit rate gauge.
 *
 * `load(range)` fetches the whole visible range; `refreshTail(range)` (live updates)
 * fetches only the newest steps and appends them, so charts move without a rebuild.
 */

import { getJSON } from "../api.js";
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
   * @param {{specs: Spec[], format: (v:number)=>string, yMax?: number, emptyHint: string, fill?: boolean}} opts
   */
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.now = new SeriesSet();
    this.prev = new SeriesSet();
    this.chart = new TimeChart(el, { format: opts.format, axisFormat: opts.axisFormat, yMax: opts.yMax, height: 220 });
    this.overlay = h("div", { class: "chart-overlay" });
    el.append(this.overlay);
    this.showState(loading());
    this.signature = "";
  }

  showState(node) {
    replace(this.overlay, node);
    this.overlay.hidden = !node;
  }

  /** Fetch every spec over `w` (and the previous period when comparing). */
  async load(w, compare) {
    const now = new SeriesSet();
    const prev = new SeriesSet();
    const jobs = [];
    for (const spec of this.opts.specs) {
      jobs.push(history(spec, w.from, w.to, w.step).then((r) => now.merge(spec.signal, r.series, spec.label)));
      if (compare) {
        jobs.push(history(spec, w.from - w.span, w.to - w.span, w.step)
          .then((r) => prev.merge(spec.signal, r.series, spec.label, w.span)));
      }
    }
    try {
      await Promise.all(jobs);
    } catch (err) {
      this.showState(failed(`Could not load: ${err.message}`));
      throw err;
    }
    this.now = now;
    this.prev = prev;
    this.render(w);
  }

  /** Fetch the newest steps only and append them. */
  async tail(w) {
    const last = this.now.last();
    const from = last === null ? w.from : Math.max(w.from, last - w.step);
    await Promise.all(this.opts.specs.map((spec) =>
      history(spec, from, w.to, w.step).then((r) => this.now.merge(spec.signal, r.series, spec.label))));
    this.now.prune(w.from);
    this.prev.prune(w.from);
    this.render(w);
  }

  render(w) {
    const keys = this.now.keys();
    const prevKeys = this.prev.keys();
    const defs = [
      ...keys.map((k, i) => ({ label: this.now.label(k), color: this.opts.specs.find((s) => k.startsWith(`${s.signal}|`))?.color, fill: this.opts.fill && i === 0 })),
      ...prevKeys.map((k) => ({ label: `${this.prev.label(k)} (previous)`, dash: [5, 4], width: 1.25 })),
    ];
    // Colors: a previous-period series takes the color of its current twin.
    defs.forEach((d, i) => { if (!d.color && i < keys.length) d.colorIndex = i; });
    prevKeys.forEach((k, j) => { defs[keys.length + j].colorIndex = Math.max(0, keys.indexOf(k)); });

    const cur = this.now.columns(keys);
    const old = this.prev.columns(prevKeys);
    const data = joinColumns(cur, old);
    // Pin the x scale to the visible window so a sparse series still reads in time.
    this.chart.update(defs, data, [w.from, w.to]);
    const n = this.chart.pointCount();
    this.el.dataset.points = String(n);
    this.showState(n ? null : empty("No data in this range", this.opts.emptyHint));
  }

  rebuild() { this.chart.rebuild(); }
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

/** @param {Spec} spec */
function history(spec, from, to, step) {
  return getJSON("metrics/history", { metric: spec.signal, from, to, step, group_by: spec.group_by });
}

export class GraphsPanel {
  /**
   * @param {{requests: HTMLElement, latency: HTMLElement, distribution: HTMLElement,
   *          errors: HTMLElement, mae: HTMLElement, cache: HTMLElement, exemplars: HTMLElement}} els
   */
  constructor(els) {
    this.els = els;
    this.jaegerUrl = "";
    this.charts = {
      requests: new SignalChart(els.requests, {
        specs: [{ signal: "request_rate", group_by: "service", label: svcLabel("") }],
        format: (v) => f.num(v), axisFormat: f.axis, fill: true, emptyHint: "Requests appear once mlapi exports metrics.",
      }),
      latency: new SignalChart(els.latency, {
        specs: [
          { signal: "avg_latency_ms", group_by: "service", label: svcLabel("avg"), color: "--c1" },
          { signal: "p95_latency_ms", group_by: "service", label: svcLabel("p95"), color: "--c2" },
          { signal: "p99_latency_ms", group_by: "service", label: svcLabel("p99"), color: "--c5" },
        ],
        format: (v) => f.ms(v), axisFormat: (v) => `${f.axis(v)} ms`, emptyHint: "Latency appears with the first requests.",
      }),
      errors: new SignalChart(els.errors, {
        specs: [{ signal: "error_rate_percent", group_by: "service", label: svcLabel(""), color: "--c5" }],
        format: (v) => f.pct(v), axisFormat: (v) => `${f.axis(v)} %`, fill: true, emptyHint: "No requests in this range.",
      }),
      mae: new SignalChart(els.mae, {
        specs: [{ signal: "model_mae", group_by: "model", label: svcLabel("") }],
        format: (v) => f.num(v), axisFormat: f.axis, emptyHint: "MAE needs ground-truth feedback (POST /feedback on mlapi).",
      }),
    };
    this.distribution = new BarChart(els.distribution, { label: "requests", format: (v) => f.count(v), color: "--c1" });
    this.distOverlay = h("div", { class: "chart-overlay" }, loading());
    els.distribution.append(this.distOverlay);
    this.gauge = new Gauge(els.cache, { warn: 60, bad: 50, label: "of lookups hit the cache" });
    this.gaugeSub = h("div", { class: "gauge-sub" });
    els.cache.querySelector(".gauge")?.append(this.gaugeSub);
  }

  /** @param {string} url the Jaeger UI base, empty to hide trace links */
  setJaeger(url) { this.jaegerUrl = url || ""; }

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

  /** Append the newest points (live). */
  async tail(w) {
    await Promise.allSettled([
      ...Object.values(this.charts).map((c) => c.tail(w)),
      this.loadDistribution(w),
      this.loadCache(w),
      this.loadExemplars(w),
    ]);
  }

  async loadDistribution(w) {
    let body;
    try {
      body = await getJSON("metrics/distribution", { metric: "http.server.request.duration", from: w.from, to: w.to });
    } catch (err) {
      replace(this.distOverlay, failed(`Could not load: ${err.message}`));
      this.distOverlay.hidden = false;
      return;
    }
    const buckets = normalizeBuckets(body);
    this.distribution.setData(buckets.map((b) => b.label), buckets.map((b) => b.count));
    this.els.distribution.dataset.points = String(buckets.filter((b) => b.count > 0).length);
    const any = buckets.some((b) => b.count > 0);
    replace(this.distOverlay, any ? null : empty("No requests in this range"));
    this.distOverlay.hidden = any;
  }

  async loadCache(w) {
    let value = null, hits = null, misses = null;
    try {
      const r = await getJSON("metrics/history", { metric: "cache_hit_rate_percent", from: w.from, to: w.to, step: w.span, group_by: "none" });
      const pts = (r.series || []).flatMap((s) => s.points || []).filter(([, v]) => f.isNum(v));
      if (pts.length) value = pts[pts.length - 1][1];
    } catch { /* gauge shows a dash */ }
    this.gauge.set(value, f.isNum(value) ? f.pct(value, 1) : f.DASH);
    this.els.cache.dataset.points = f.isNum(value) ? "1" : "0";
    this.gaugeSub.textContent = f.isNum(hits) ? `${f.count(hits)} hits · ${f.count(misses)} misses` : "";
  }

  /** Set the gauge's sub line (hits and misses from the snapshot). */
  setCacheCounts(hits, misses) {
    this.gaugeSub.textContent = f.isNum(hits) ? `${f.count(hits)} hits · ${f.count(misses)} misses (last 5 min)` : "";
  }

  async loadExemplars(w) {
    const box = this.els.exemplars;
    if (!this.jaegerUrl) { box.hidden = true; return; }
    let body;
    try {
      body = await getJSON("metrics/exemplars", { metric: "http.server.request.duration", from: w.from, to: w.to, limit: 8 });
    } catch {
      box.hidden = true;
      return;
    }
    const items = normalizeExemplars(body).slice(0, 8);
    if (!items.length) { box.hidden = true; return; }
    box.hidden = false;
    replace(box,
      h("h4", {}, "Slowest requests — open the trace in Jaeger"),
      h("div", { class: "exemplar-list" }, ...items.map((e) => traceLink(this.jaegerUrl, e.trace_id,
        `${f.ms(e.value_ms)}${e.route ? ` · ${e.route}` : ""}`, e.at))));
  }

  /** Rebuild the uPlot instances (theme change). */
  rebuild() {
    for (const c of Object.values(this.charts)) c.rebuild();
    this.distribution.rebuild();
  }
}

/**
 * A link to a trace in Jaeger, or null when no Jaeger UI is configured.
 * @param {string} base @param {string} traceId @param {string} text @param {number} [at]
 */
export function traceLink(base, traceId, text, at) {
  if (!base || !/^[0-9a-f]{16,32}$/i.test(String(traceId || ""))) return null;
  return h("a", {
    class: "chip", href: `${base}/trace/${traceId}`, target: "_blank", rel: "noopener noreferrer",
    title: `trace ${traceId}${f.isNum(at) ? ` at ${f.dateTime(at)}` : ""}`, "data-trace": traceId,
  }, text);
}

/** Buckets from the distribution route as [{label, count}] in ms. */
export function normalizeBuckets(body) {
  const list = body?.buckets || body?.distribution || [];
  return list.map((b) => {
    const lo = b.lower_ms ?? (f.isNum(b.lower) ? b.lower * 1000 : null);
    const hi = b.upper_ms ?? (f.isNum(b.upper) ? b.upper * 1000 : null);
    const label = f.isNum(hi) && Number.isFinite(hi) ? `≤${f.msBare(hi)}` : f.isNum(lo) ? `>${f.msBare(lo)}` : "";
    return { label, count: b.count ?? 0 };
  });
}

/** Exemplars as [{trace_id, value_ms, route, at}], slowest first. */
export function normalizeExemplars(body) {
  const list = Array.isArray(body) ? body : body?.exemplars || [];
  return list.map((e) => ({
    trace_id: e.trace_id,
    value_ms: e.value_ms ?? (f.isNum(e.value) ? e.value * 1000 : null),
    route: e.labels?.route ?? e.route ?? e.attributes?.["http.route"] ?? "",
    at: e.time ?? e.at ?? e.timestamp,
  })).filter((e) => e.trace_id).sort((a, b) => (b.value_ms ?? 0) - (a.value_ms ?? 0));
}
