/**
 * Overview: status, uptime, requests per minute, error %, response time, model MAE and
 * cache hit rate — the "is it healthy, is the model right" answer at a glance.
 */

import { h, replace, setValue } from "../dom.js";
import * as f from "../format.js";
import { makeCard } from "./cards.js";

export class OverviewPanel {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.statusDot = h("span", { class: "dot" });
    this.statusText = h("span", { "data-role": "value" }, "Checking…");
    this.statusSub = h("div", { class: "card-sub", "data-role": "sub" }, "\u00a0");
    this.status = h("div", { class: "card card--status", "data-card": "status" },
      h("div", { class: "card-label" }, "Status"),
      h("div", { class: "card-value" }, this.statusDot, this.statusText),
      this.statusSub);
    this.cards = {
      uptime: makeCard("uptime", "Uptime"),
      rpm: makeCard("requests_per_minute", "Requests / min"),
      errors: makeCard("error_rate_percent", "Error rate"),
      latency: makeCard("avg_response_time_ms", "Response time"),
      cache: makeCard("cache_hit_rate_percent", "Cache hit rate"),
    };
    this.maeLines = h("div", { class: "model-lines" }, h("div", { class: "card-value" }, "—"));
    this.mae = h("div", { class: "card", "data-card": "model_mae" },
      h("div", { class: "card-label" }, "Model MAE"), this.maeLines);
    const c = this.cards;
    replace(root, this.status, c.uptime.root, c.rpm.root, c.errors.root, c.latency.root, this.mae, c.cache.root);
  }

  /**
   * Sparklines under the rate, error and latency cards (values of the selected range).
   * @param {{requests: number[], latency: number[], errors: number[]}} data
   */
  setSparks(data) {
    this.cards.rpm.spark(data.requests);
    this.cards.errors.spark(data.errors);
    this.cards.latency.spark(data.latency);
  }

  /** @param {{status: string, label: string, reason: string}} s */
  setStatus(s) {
    const tone = { healthy: "ok", degraded: "warn", down: "bad" }[s.status] || "";
    this.status.classList.remove("card--ok", "card--warn", "card--bad");
    if (tone) this.status.classList.add(`card--${tone}`);
    this.status.dataset.status = s.status;
    this.statusText.textContent = s.label;
    this.statusSub.textContent = s.reason;
  }

  /**
   * @param {any} current the `/metrics/current` document
   * @param {{errorThreshold?: number, latencyThreshold?: number, cacheThreshold?: number,
   *          windowMinutes?: number, breakdown?: any[]|null, models?: Record<string, any>}} [limits]
   *   `models`: the model lines to show (default: the document's); `breakdown`: the
   *   services of `/metrics/services`, shown under each card when several report (a sum
   *   alone would hide which one is slow or failing)
   */
  update(current, limits = {}) {
    const api = current?.api_metrics || {};
    const sys = current?.system_metrics || {};
    const cache = current?.cache_metrics || {};
    // Per service and model when several services report (their same-named models differ).
    const models = limits.models || current?.model_metrics || {};
    const c = this.cards;
    const minutes = limits.windowMinutes ?? 5;
    const win = `last ${Number.isInteger(minutes) ? minutes : f.num(minutes)} min`;
    const per = (pick) => (limits.breakdown || []).map((s) => `${s.service} ${pick(s.current || {})}`).join(" · ");

    c.uptime.set({
      text: f.duration(sys.uptime_seconds), raw: sys.uptime_seconds,
      sub: ["now", f.isNum(sys.cpu_percent) ? `CPU ${f.pct(sys.cpu_percent, 0)}` : "",
        f.isNum(sys.memory_usage_mb) ? `${f.mb(sys.memory_usage_mb)} (running instances)` : "",
        f.isNum(sys.uptime_seconds) ? "" : "no instance running"].filter(Boolean).join(" · "),
    });
    c.rpm.set({
      text: f.rate(api.requests_per_minute), raw: api.requests_per_minute,
      sub: `per minute, ${win}`, breakdown: per((d) => f.rate(d.api_metrics?.requests_per_minute)),
    });

    const errTh = limits.errorThreshold ?? 5;
    const err = api.error_rate_percent;
    c.errors.set({
      text: f.isNum(err) ? f.pct(err).replace(" %", "") : f.DASH, unit: f.isNum(err) ? "%" : "", raw: err,
      sub: `${win} · alert above ${errTh} %`, breakdown: per((d) => f.pct(d.api_metrics?.error_rate_percent)),
      tone: !f.isNum(err) ? "" : err > errTh ? "bad" : err > errTh / 2 ? "warn" : "ok",
    });

    const avg = api.avg_response_time_ms;
    const p95 = boundValue(api.p95_response_time_ms, api.p95_response_time_bounds_ms);
    const latTh = limits.latencyThreshold ?? 500;
    const [avgNum, avgUnit] = splitUnit(f.ms(avg));
    c.latency.set({
      text: avgNum, unit: avgUnit, raw: avg,
      sub: f.isNum(p95.value) ? `avg, ${win} · p95 ${f.ms(p95.value)}` : `average, ${win}`,
      breakdown: per((d) => f.ms(d.api_metrics?.avg_response_time_ms)),
      tone: !f.isNum(p95.value) ? "" : p95.value > latTh ? "bad" : p95.value > latTh * 0.8 ? "warn" : "ok",
    });

    const hit = cache.hit_rate_percent;
    const cacheTh = limits.cacheThreshold ?? 50;
    c.cache.set({
      text: f.isNum(hit) ? f.pct(hit, 1).replace(" %", "") : f.DASH, unit: f.isNum(hit) ? "%" : "", raw: hit,
      sub: f.isNum(cache.total_hits) ? `${win} · ${f.count(cache.total_hits)} hits · ${f.count(cache.total_misses)} misses` : win,
      breakdown: per((d) => f.pct(d.cache_metrics?.hit_rate_percent, 1)),
      tone: !f.isNum(hit) ? "" : hit < cacheTh ? "bad" : hit < cacheTh + 10 ? "warn" : "ok",
    });

    const names = Object.keys(models).sort();
    if (!names.length) {
      replace(this.maeLines, h("div", { class: "card-value" }, f.DASH), h("div", { class: "card-sub" }, "no models reporting"));
    } else {
      replace(this.maeLines, ...names.map((name) => {
        const m = models[name] || {};
        const val = h("span", { class: "val", "data-role": "value" });
        setValue(val, f.num(m.avg_mae), m.avg_mae);
        const deg = m.degradation_percent;
        return h("div", { class: "model-line", "data-model": name },
          h("span", { class: "name", title: name }, name),
          h("span", { class: "val-wrap" },
            val,
            f.isNum(deg) ? h("span", { class: `delta delta--${deg > 20 ? "bad" : deg > 10 ? "warn" : "ok"}`, title: "vs baseline" }, f.signedPct(deg, 0)) : null));
      }));
    }
  }
}

/** The value of a percentile field that may be a number or a {value, lower, upper} object. */
export function boundValue(field, bounds) {
  if (field && typeof field === "object") return { value: field.value, lower: field.lower, upper: field.upper };
  if (bounds && typeof bounds === "object") return { value: field, lower: bounds.lower, upper: bounds.upper };
  return { value: field, lower: null, upper: null };
}

function splitUnit(text) {
  const m = /^(.*?)\s(ms|s)$/.exec(text);
  return m ? [m[1], m[2]] : [text, ""];
}
