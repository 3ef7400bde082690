/**
 * API performance: requests, success and errors, average/p95/p99 latency with the
 * percentile's bucket bounds ("212 ms (208–217)"), and throughput.
 */

import { getJSON } from "../api.js";
import * as Q from "../queries.js";
import { h, replace, empty } from "../dom.js";
import * as f from "../format.js";
import { makeStat } from "./cards.js";
import { boundValue } from "./overview.js";
import { sharedBuckets } from "./graphs.js";

export class ApiPanel {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.stats = {
      requests: makeStat("requests", "Requests"),
      success: makeStat("success", "Success"),
      errors: makeStat("errors", "Errors"),
      avg: makeStat("avg_response_time_ms", "Average latency"),
      p95: makeStat("p95_response_time_ms", "p95 latency"),
      p99: makeStat("p99_response_time_ms", "p99 latency"),
      throughput: makeStat("requests_per_minute", "Throughput"),
      rps: makeStat("requests_per_second", "Per second"),
      errorRate: makeStat("error_rate_percent", "Error rate"),
    };
    this.splitOk = h("div", { class: "split-ok" });
    this.splitBad = h("div", { class: "split-bad" });
    this.legendOk = h("span");
    this.legendBad = h("span");
    this.routes = h("div", { class: "routes" });
    replace(root,
      h("dl", { class: "stats api-grid" }, ...Object.values(this.stats).map((s) => s.root)),
      h("div", { class: "split", title: "success vs errors" }, this.splitOk, this.splitBad),
      h("div", { class: "split-legend" }, this.legendOk, this.legendBad),
      this.routes);
  }

  /**
   * Per-route requests, error % and average latency over the last `seconds`, from 10 s
   * steps: counts add up, and error % and average latency are count-weighted means of the
   * steps, so the numbers are exact (not averages of averages).
   */
  async loadRoutes(seconds = 300, now = Date.now() / 1000, scope = {}) {
    const rw = Q.routesWindow(now, seconds);
    const { from, to } = rw;
    let counts, errors, latency;
    try {
      [counts, errors, latency] = await Promise.all(Q.ROUTE_SIGNALS.map((metric) => getJSON("metrics/history", Q.routeParams(metric, rw, scope))));
    } catch {
      return; // the table keeps its last state
    }
    // Rows per service and route: two services' "/predict" are two rows, never one.
    const keyOf = (labels) => JSON.stringify([labels?.service ?? "", labels?.route ?? ""]);
    const byRoute = (doc) => new Map((doc.series || []).map((s) => [keyOf(s.labels), new Map(s.points)]));
    const err = byRoute(errors), lat = byRoute(latency);
    const rows = (counts.series || []).map((s) => {
      const route = s.labels?.route ?? "";
      const service = s.labels?.service ?? "";
      const key = keyOf(s.labels);
      let n = 0, failed = 0, latSum = 0;
      for (const [t, c] of s.points) {
        if (!f.isNum(c) || c <= 0) continue;
        n += c;
        const e = err.get(key)?.get(t), l = lat.get(key)?.get(t);
        if (f.isNum(e)) failed += (e * c) / 100;
        if (f.isNum(l)) latSum += l * c;
      }
      return { route, service, n, failed, avg: n ? latSum / n : null };
    }).filter((r) => r.n > 0).sort((a, b) => b.n - a.n);
    if (!rows.length) { replace(this.routes, empty("No requests in the last 5 minutes")); return; }
    const minutes = (to - from) / 60;
    replace(this.routes, h("table", { class: "table table--compact" },
      h("thead", {}, h("tr", {}, h("th", {}, "Service"), h("th", {}, "Route"), h("th", { class: "num" }, "Requests"),
        h("th", { class: "num" }, "/min"), h("th", { class: "num" }, "Errors"), h("th", { class: "num" }, "Avg"))),
      h("tbody", {}, ...rows.map((r) => h("tr", { "data-route": r.route, "data-route-service": r.service },
        h("td", { class: "mono" }, r.service),
        h("td", { class: "route mono", title: r.route }, r.route || "(none)"),
        h("td", { class: "num", "data-value": r.n }, f.count(r.n)),
        h("td", { class: "num" }, f.rate(r.n / minutes)),
        h("td", { class: `num${r.failed > 0 ? " bad" : ""}` }, r.n ? f.pct((r.failed / r.n) * 100, 1) : f.DASH),
        h("td", { class: "num" }, f.ms(r.avg)))))));
  }

  /**
   * @param {any} api `api_metrics` of `/metrics/current`
   * @param {number} windowMinutes the snapshot's window, for counts when the API gives rates only
   */
  update(api, windowMinutes = 5) {
    api = api || {};
    const s = this.stats;
    const rpm = api.requests_per_minute;
    const total = firstNum(api.total_requests, api.request_count, api.requests,
      f.isNum(rpm) ? Math.round(rpm * windowMinutes) : null);
    const errRate = api.error_rate_percent;
    const errors = firstNum(api.error_count, api.errors, api.total_errors,
      f.isNum(total) && f.isNum(errRate) ? Math.round((total * errRate) / 100) : null);
    const success = firstNum(api.success_count, f.isNum(total) && f.isNum(errors) ? total - errors : null);

    s.requests.set(f.count(total), total);
    s.success.set(f.count(success), success, f.isNum(errRate) ? f.pct(100 - errRate, 1) : "");
    s.errors.set(f.count(errors), errors, f.isNum(errRate) ? f.pct(errRate, 1) : "");
    s.errorRate.set(f.pct(errRate), errRate);
    s.avg.set(f.ms(api.avg_response_time_ms), api.avg_response_time_ms);
    const shared = sharedBuckets({ p95: api.p95_response_time_bounds_ms, p99: api.p99_response_time_bounds_ms }, ["p95", "p99"]);
    for (const [key, field, bounds] of [
      ["p95", api.p95_response_time_ms, api.p95_response_time_bounds_ms],
      ["p99", api.p99_response_time_ms, api.p99_response_time_bounds_ms],
    ]) {
      const b = boundValue(field, bounds);
      const range = f.isNum(b.lower) && f.isNum(b.upper) ? `(${f.msRange(b.lower, b.upper)})` : "";
      s[key].set(f.ms(b.value), b.value, shared ? `${range} same bucket as ${key === "p95" ? "p99" : "p95"}` : range);
      s[key].root.dataset.sharedBucket = shared ? "1" : "0";
    }
    s.throughput.set(f.rate(rpm), rpm, "/min");
    s.rps.set(f.isNum(rpm) ? f.num(rpm / 60) : f.DASH, f.isNum(rpm) ? rpm / 60 : null, "/s");

    const okShare = f.isNum(errRate) ? 100 - errRate : f.isNum(total) && total > 0 ? 100 : 0;
    this.splitOk.style.width = `${okShare}%`;
    this.splitBad.style.width = `${f.isNum(errRate) ? errRate : 0}%`;
    this.legendOk.textContent = f.isNum(success) ? `${f.count(success)} succeeded` : "";
    this.legendBad.textContent = f.isNum(errors) ? `${f.count(errors)} failed` : "";
  }
}

function firstNum(...values) {
  return values.find((v) => f.isNum(v)) ?? null;
}
