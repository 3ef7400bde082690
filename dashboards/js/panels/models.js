/**
 * Model performance, one card per model: MAE with its 95 % interval against its baseline
 * and the alert target, degradation %, prediction drift (PSI and Jensen–Shannon, charted
 * over the last hour in 5-minute windows with version markers), which input features moved, label
 * coverage and delay, the versions side by side after a retrain, RMSE, R², predictions,
 * mean confidence, feedback count, the MAE of cached and computed answers apart and the
 * stale cache entries an old version left.
 */

import { getJSON } from "../api.js";
import { h, svg, replace, setValue, empty, loading } from "../dom.js";
import * as f from "../format.js";
import { makeStat } from "./cards.js";

/** PSI's usual reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant. */
const PSI_MODERATE = 0.1;
const PSI_SIGNIFICANT = 0.25;
/** The drift chart: the last hour in 5-minute windows (the prediction_drift rule's), reloaded every 20 s. */
const TREND_SPAN_S = 3600;
const TREND_STEP_S = 300;
const TREND_REFRESH_MS = 20_000;

/** @param {number|null|undefined} psi */
function psiTone(psi) {
  if (!f.isNum(psi)) return "";
  return psi > PSI_SIGNIFICANT ? "bad" : psi > PSI_MODERATE ? "warn" : "ok";
}

/** @param {number|null|undefined} psi */
function psiWord(psi) {
  if (!f.isNum(psi)) return "no reference";
  return psi > PSI_SIGNIFICANT ? "significant" : psi > PSI_MODERATE ? "moderate" : "stable";
}

export class ModelsPanel {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, ReturnType<typeof modelCard>>} */
    this.cards = new Map();
    this.degradationLimit = 20;
    this.trendsAt = 0;
    /** @type {{from: number, to: number, series: Map<string, Array<[number, number|null]>>, markers: any[], cohorts: Map<string, any>}|null} */
    this.trends = null;
    replace(root, h("div", { class: "panel" }, loading()));
  }

  /** Reload the drift charts' data (PSI per model, version markers), at most every 20 s. */
  async loadTrends(now = Date.now() / 1000) {
    if (Date.now() - this.trendsAt < TREND_REFRESH_MS) return;
    this.trendsAt = Date.now();
    const to = Math.ceil(now);
    const from = Math.floor((to - TREND_SPAN_S) / TREND_STEP_S) * TREND_STEP_S;
    try {
      const [hist, versions, cohortDoc] = await Promise.all([
        getJSON("metrics/history", { metric: "prediction_psi", group_by: "model", from, to, step: TREND_STEP_S }),
        getJSON("metrics/versions", { from, to }),
        getJSON("metrics/history", { metric: "mae_by_prediction_time", group_by: "model", from, to, step: TREND_STEP_S }),
      ]);
      const series = new Map();
      for (const s of hist.series || []) series.set(String(s.labels?.model ?? ""), s.points || []);
      const cohorts = new Map();
      for (const s of cohortDoc.series || []) cohorts.set(String(s.labels?.model ?? ""), s);
      this.trends = { from, to, series, markers: versions.markers || [], cohorts };
    } catch {
      this.trendsAt = 0; // try again at the next update
      return;
    }
    for (const [name, card] of this.cards) card.trend(this.trends, name);
  }

  /** @param {number} limit the degradation % at which the MAE rule fires */
  setLimit(limit) {
    if (f.isNum(limit)) this.degradationLimit = limit;
  }

  /** @param {Record<string, any>|undefined} models `model_metrics` of `/metrics/current` */
  update(models) {
    const names = Object.keys(models || {}).sort();
    if (!names.length) {
      this.cards.clear();
      replace(this.root, h("div", { class: "panel" },
        empty("No model metrics yet", "Predictions and ground-truth feedback from mlapi show up here.")));
      return;
    }
    const same = names.length === this.cards.size && names.every((n) => this.cards.has(n));
    if (!same) {
      this.cards = new Map(names.map((n) => [n, modelCard(models[n]?.model ?? n, models[n]?.service ?? "")]));
      replace(this.root, ...names.map((n) => this.cards.get(n).root));
    }
    for (const n of names) this.cards.get(n).set(models[n] || {}, this.degradationLimit);
    if (!same && this.trends) for (const n of names) this.cards.get(n).trend(this.trends, n);
    this.loadTrends();
  }
}

/**
 * The PSI chart of one model: a line over the span, the 0.1 and 0.25 readings dashed,
 * and a marker at each version's first report (a line in the SVG, its label as HTML so
 * the stretched SVG does not distort the text).
 * @param {SVGElement} el
 * @param {HTMLElement} labels
 * @param {{from: number, to: number, series: Map<string, Array<[number, number|null]>>, markers: any[]}} t
 * @param {string} name
 */
function drawTrend(el, labels, t, name) {
  const W = 100, H = 32;
  const points = (t.series.get(name) || []).filter((p) => f.isNum(p[1]));
  const top = Math.max(PSI_SIGNIFICANT * 1.4, ...points.map((p) => p[1]));
  const share = (time) => Math.min(1, Math.max(0, (time - t.from) / (t.to - t.from)));
  const x = (time) => (share(time) * W).toFixed(2);
  const y = (v) => (H - 2 - (Math.min(v, top) / top) * (H - 4)).toFixed(2);
  const parts = [];
  for (const level of [PSI_MODERATE, PSI_SIGNIFICANT]) {
    parts.push(svg("line", { class: `psi-level psi-level--${level === PSI_MODERATE ? "moderate" : "significant"}`,
      x1: 0, x2: W, y1: y(level), y2: y(level) }));
  }
  // Each point is its window's PSI, drawn at the window's middle (the open one: at now).
  const at = (p) => Math.min(p[0] + TREND_STEP_S / 2, t.to);
  if (points.length > 1) {
    parts.push(svg("polyline", { class: "psi-line", points: points.map((p) => `${x(at(p))},${y(p[1])}`).join(" ") }));
  }
  for (const p of points) {
    parts.push(svg("circle", { class: "psi-dot", cx: x(at(p)), cy: y(p[1]), r: 0.9 }, svg("title", {}, `PSI ${p[1].toFixed(3)}`)));
  }
  const markers = t.markers.filter((mk) => mk.model === name && mk.time >= t.from);
  for (const m of markers) {
    parts.push(svg("g", { class: "version-marker", "data-role": "version-marker", "data-version": m.version },
      svg("title", {}, `${m.version} first reported ${f.dateTime(m.time)}`),
      svg("line", { x1: x(m.time), x2: x(m.time), y1: 0, y2: H })));
  }
  el.replaceChildren(...parts);
  el.dataset.points = String(points.length);
  replace(labels, ...markers.map((m) => {
    const pos = share(m.time) * 100;
    const left = pos > 85; // near the right edge the label sits left of its line
    const label = h("span", { class: `version-label${left ? " version-label--left" : ""}`, "data-version": m.version }, String(m.version));
    // Through the CSSOM: the page's CSP refuses style attributes.
    if (left) label.style.right = `${(100 - pos).toFixed(2)}%`;
    else label.style.left = `${pos.toFixed(2)}%`;
    return label;
  }));
}

/** @param {string} name the model @param {string} [service] the service it serves in */
function modelCard(name, service = "") {
  const version = h("span", { class: "tag", hidden: true });
  const degTag = h("span", { class: "tag", "data-role": "degradation" });
  const mae = h("div", { class: "mae-big", "data-role": "mae" }, "—");
  const baseline = h("span", { "data-role": "baseline" }, "—");
  const compare = h("div", { class: "mae-compare" }, "baseline ", baseline);
  const fill = h("div", { class: "bar-fill" });
  const markBase = h("div", { class: "bar-mark", title: "baseline" });
  const markLimit = h("div", { class: "bar-mark", title: "alert target" });
  const legendLeft = h("span");
  const legendRight = h("span");
  const interval = h("div", { class: "mae-interval", "data-role": "mae-interval" }, "\u00a0");
  const driftTag = h("span", { class: "tag", "data-role": "drift" }, "no reference");
  const psi = h("span", { class: "drift-value", "data-role": "psi" }, "—");
  const js = h("span", { class: "drift-value", "data-role": "js" }, "—");
  const chart = svg("svg", { class: "psi-chart", "data-role": "psi-chart", viewBox: "0 0 100 32",
    preserveAspectRatio: "none", role: "img", "aria-label": `${name}: prediction PSI over the last hour, 5-minute windows` });
  const chartLabels = h("div", { class: "psi-chart-labels", "aria-hidden": "true" });
  const features = h("ol", { class: "feature-drift", "data-role": "features" });
  const versions = h("div", { class: "versions", "data-role": "versions", hidden: true });
  const cohorts = h("ol", { class: "cohorts", "data-role": "cohorts" });
  const stats = {
    coverage: makeStat("label_coverage_percent", "Label coverage"),
    lag: makeStat("label_lag_p95_s", "Label lag p95"),
    rmse: makeStat("rmse", "RMSE"),
    r2: makeStat("r2", "R²"),
    predictions: makeStat("predictions_count", "Predictions"),
    confidence: makeStat("avg_confidence", "Mean confidence"),
    feedback: makeStat("feedback_count", "Feedback"),
    maeHit: makeStat("mae_cache_hit", "MAE cached"),
    maeMiss: makeStat("mae_cache_miss", "MAE computed"),
    stale: makeStat("cache_stale_entries", "Stale cache entries"),
    updated: makeStat("last_updated", "Last update"),
  };
  const root = h("article", { class: "panel model", "data-model": name, "data-service": service },
    h("header", { class: "model-head" },
      service ? h("span", { class: "tag", "data-role": "service", title: "service" }, service) : null,
      h("h3", { title: name }, name), version, degTag),
    h("div", { class: "mae-row" },
      h("div", {}, h("div", { class: "mae-big-label" }, "MAE"), mae, interval),
      h("div", { class: "grow" }, compare)),
    h("div", {}, h("div", { class: "bar" }, fill, markBase, markLimit), h("div", { class: "bar-legend" }, legendLeft, legendRight)),
    h("section", { class: "model-drift" },
      h("div", { class: "drift-head" },
        h("span", { class: "mae-big-label", title: "Population Stability Index of the predictions against the version's training holdout (no labels needed)" }, "Prediction drift"),
        h("span", {}, "PSI ", psi), h("span", { title: "Jensen–Shannon distance (base 2, 0..1)" }, "JS ", js), driftTag),
      h("div", { class: "psi-chart-wrap" }, chart, chartLabels),
      h("div", { class: "drift-features" }, h("span", { class: "mae-big-label" }, "Features moved (PSI)"), features)),
    versions,
    h("section", { class: "model-cohorts" },
      h("span", { class: "mae-big-label", title: "MAE of the predictions made in each 5-minute window, whenever their labels arrived" }, "MAE by prediction window"),
      cohorts),
    h("dl", { class: "stats" }, ...Object.values(stats).map((s) => s.root)));

  /** What the card shows, as JSON: unchanged parts are not rebuilt. */
  let lastSet = "", lastFeatures = "", lastVersions = "";
  return {
    root,
    /** @param {any} t the panel's trends @param {string} n */
    trend(t) {
      drawTrend(chart, chartLabels, t, name);
      renderCohorts(cohorts, t.cohorts?.get(name));
    },
    /** @param {any} m @param {number} limit */
    set(m, limit) {
      // Every snapshot event sets every card: rebuilding an unchanged card's lists and
      // table cost the page a style and layout pass per update for nothing.
      const key = JSON.stringify([m, limit]);
      if (key === lastSet) return;
      lastSet = key;
      if (m.version || m.model_version) {
        version.hidden = false;
        version.textContent = `v${String(m.version || m.model_version).replace(/^v/, "")}`;
      }
      setValue(mae, f.num(m.avg_mae), m.avg_mae);
      const iv = m.mae_interval;
      interval.textContent = iv && f.isNum(iv.lower) && f.isNum(iv.upper)
        ? `95 % CI ${f.num(iv.lower)} – ${f.num(iv.upper)}` : "\u00a0";
      if (iv && f.isNum(iv.lower)) { interval.dataset.lower = String(iv.lower); interval.dataset.upper = String(iv.upper); }
      else { delete interval.dataset.lower; delete interval.dataset.upper; }

      setValue(psi, f.isNum(m.prediction_psi) ? m.prediction_psi.toFixed(3) : f.DASH, m.prediction_psi);
      setValue(js, f.isNum(m.prediction_js) ? m.prediction_js.toFixed(3) : f.DASH, m.prediction_js);
      const dt = psiTone(m.prediction_psi);
      driftTag.textContent = psiWord(m.prediction_psi);
      driftTag.className = `tag${dt ? ` tag--${dt}` : ""}`;
      const featuresKey = JSON.stringify((m.feature_drift || []).slice(0, 5));
      if (featuresKey !== lastFeatures) {
        lastFeatures = featuresKey;
        replace(features, ...(m.feature_drift || []).slice(0, 5).map((ft) => {
          const tone = psiTone(ft.psi);
          return h("li", { class: `feature${tone ? ` feature--${tone}` : ""}`, "data-feature": ft.feature },
            h("span", { class: "name" }, ft.feature), h("span", { class: "num", "data-value": ft.psi }, ft.psi.toFixed(3)));
        }));
        if (!(m.feature_drift || []).length) features.append(h("li", { class: "muted" }, "no feature reference yet"));
      }
      const versionsKey = JSON.stringify(m.versions || []);
      if (versionsKey !== lastVersions) {
        lastVersions = versionsKey;
        renderVersions(versions, m.versions || []);
      }
      stats.coverage.set(f.isNum(m.label_coverage_percent) ? f.pct(m.label_coverage_percent, 1) : f.DASH, m.label_coverage_percent);
      stats.lag.set(f.isNum(m.label_lag_p95_s) ? f.duration(m.label_lag_p95_s) : f.DASH, m.label_lag_p95_s);
      setValue(baseline, f.num(m.baseline_mae), m.baseline_mae);
      const deg = m.degradation_percent;
      // No degradation with a baseline known means no feedback in the window, not "no baseline".
      const why = f.isNum(m.baseline_mae) ? "no feedback in the window" : "no baseline";
      setValue(degTag, f.isNum(deg) ? `${f.signedPct(deg)} vs baseline` : why, deg);
      const tone = !f.isNum(deg) ? "" : deg > limit ? "bad" : deg > limit / 2 ? "warn" : "ok";
      degTag.className = `tag${tone ? ` tag--${tone}` : ""}`;

      // The bar spans 0 .. max(MAE, 1.5 × the alert target): baseline and target marked.
      const base = m.baseline_mae;
      const target = f.isNum(base) ? base * (1 + limit / 100) : null;
      const top = Math.max(f.isNum(m.avg_mae) ? m.avg_mae : 0, f.isNum(target) ? target * 1.25 : 0) || 1;
      const place = (el, v) => {
        el.hidden = !f.isNum(v);
        if (f.isNum(v)) el.style.left = `${Math.min(100, (v / top) * 100)}%`;
      };
      fill.style.width = `${f.isNum(m.avg_mae) ? Math.min(100, (m.avg_mae / top) * 100) : 0}%`;
      fill.className = `bar-fill${tone === "bad" ? " bar-fill--bad" : tone === "warn" ? " bar-fill--warn" : ""}`;
      place(markBase, base);
      place(markLimit, target);
      legendLeft.textContent = f.isNum(base) ? `baseline ${f.num(base)}` : "no baseline reported";
      legendRight.textContent = f.isNum(target) ? `target ≤ ${f.num(target)} (+${limit} %)` : "";

      stats.rmse.set(f.num(m.rmse), m.rmse);
      stats.r2.set(f.isNum(m.r2) ? m.r2.toFixed(3) : f.DASH, m.r2);
      stats.predictions.set(f.count(m.predictions_count), m.predictions_count);
      stats.confidence.set(f.isNum(m.avg_confidence) ? f.pct(m.avg_confidence * 100, 1) : f.DASH, m.avg_confidence);
      const cov = f.isNum(m.feedback_count) && f.isNum(m.predictions_count) && m.predictions_count > 0
        ? `${Math.round((m.feedback_count / m.predictions_count) * 100)} %` : "";
      stats.feedback.set(f.count(m.feedback_count), m.feedback_count, cov);
      // Cache-honest: the MAE of cached answers apart from computed ones, and the entries
      // an old version left in the cache after a retrain.
      const byCache = m.mae_by_cache_hit || {};
      stats.maeHit.set(f.isNum(byCache.hit) ? f.num(byCache.hit) : f.DASH, byCache.hit);
      stats.maeMiss.set(f.isNum(byCache.miss) ? f.num(byCache.miss) : f.DASH, byCache.miss);
      stats.stale.set(f.isNum(m.cache_stale_entries) ? f.count(m.cache_stale_entries) : f.DASH, m.cache_stale_entries);
      const updated = typeof m.last_updated === "string" ? Date.parse(m.last_updated) / 1000 : m.last_updated;
      // A model without predictions in the window is idle: say since when, not "just now".
      const idle = !(m.predictions_count > 0);
      root.dataset.idle = idle ? "1" : "0";
      root.classList.toggle("is-idle", idle);
      if (idle) {
        const last = m.last_prediction_at;
        stats.updated.set(f.isNum(last) ? `idle since ${f.dateTime(last)}` : "idle", null);
      } else {
        stats.updated.set(f.isNum(updated) ? f.ago(updated) : f.DASH, null);
      }
    },
  };
}

/** Prediction windows shown on a card (the newest with labels). */
const COHORTS_SHOWN = 6;

/**
 * The MAE of the predictions made in each 5-minute window (cohorts), newest first, with
 * its 95 % interval: labels that arrive late still land in their prediction's window.
 * @param {HTMLElement} el @param {{points?: Array<[number, number|null]>, bounds?: Array<[number, number|null, number|null]>}|undefined} s
 */
function renderCohorts(el, s) {
  const bounds = new Map((s?.bounds || []).map((b) => [b[0], b]));
  const shown = (s?.points || []).filter((p) => f.isNum(p[1])).slice(-COHORTS_SHOWN).reverse();
  if (!shown.length) {
    replace(el, h("li", { class: "muted" }, "no labels with their prediction time yet"));
    return;
  }
  replace(el, ...shown.map(([t, v]) => {
    const b = bounds.get(t);
    const ci = b && f.isNum(b[1]) && f.isNum(b[2]) ? ` (${f.num(b[1])}–${f.num(b[2])})` : "";
    return h("li", { class: "cohort", "data-time": t },
      h("span", { class: "name" }, new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      h("span", { class: "num", "data-value": v }, f.num(v)),
      h("small", {}, ci));
  }));
}

/**
 * Versions side by side (shown when the window holds more than one, i.e. after a retrain).
 * @param {HTMLElement} el @param {any[]} list
 */
function renderVersions(el, list) {
  el.hidden = list.length < 2;
  if (el.hidden) { el.replaceChildren(); return; }
  const cell = (v, digits) => h("td", { class: "num", "data-value": f.isNum(v) ? v : null },
    f.isNum(v) ? (digits === undefined ? f.num(v) : v.toFixed(digits)) : f.DASH);
  replace(el, h("table", { class: "versions-table" },
    h("thead", {}, h("tr", {}, ...["Version", "Predictions", "MAE (95 % CI)", "Baseline", "PSI"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...list.map((v) => h("tr", { "data-version": v.version },
      h("td", {}, String(v.version)),
      h("td", { class: "num" }, f.count(v.predictions_count)),
      h("td", { class: "num", "data-value": f.isNum(v.avg_mae) ? v.avg_mae : null },
        f.isNum(v.avg_mae) ? f.num(v.avg_mae) : f.DASH,
        v.mae_interval && f.isNum(v.mae_interval.lower) ? h("small", {}, ` ${f.num(v.mae_interval.lower)}–${f.num(v.mae_interval.upper)}`) : null),
      cell(v.baseline_mae),
      cell(v.prediction_psi, 3))))));
}
