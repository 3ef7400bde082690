/**
 * The queries the dashboard makes, in one place: which signals each chart draws and the
 * exact parameters of each request. Shared by the panels (which fetch) and `boot.js`
 * (which starts the first load's requests before the rest of the page has loaded), so a
 * prefetched request is the very URL a panel asks for. No imports: loaded first.
 */

export const DURATION_METRIC = "http.server.request.duration";

/**
 * Signals per time chart, as `/metrics/history` is asked for them. The backend pushes the
 * newest steps of these same signals (backend/live_push.py `CHARTED`).
 * @type {Record<string, Array<{signal: string, group_by: string}>>}
 */
export const CHART_SIGNALS = {
  requests: [{ signal: "request_rate", group_by: "service" }],
  latency: [
    { signal: "avg_latency_ms", group_by: "service" },
    { signal: "p95_latency_ms", group_by: "service" },
    { signal: "p99_latency_ms", group_by: "service" },
  ],
  errors: [{ signal: "error_rate_percent", group_by: "service" }],
  mae: [{ signal: "model_mae", group_by: "service,model" }],
};

/** The cache gauge's two signals. */
export const CACHE_SIGNALS = ["cache_hits", "cache_misses"];

/** The per-route table's signals (10 s steps over the snapshot window). */
export const ROUTE_SIGNALS = ["request_count", "error_rate_percent", "avg_latency_ms"];

/**
 * The scope filters (`{service, instance}`, empty for all services) every query takes.
 * @typedef {{service?: string, instance?: string}} Scope
 */

/**
 * @param {{signal: string, group_by?: string}} spec
 * @param {number} from @param {number} to @param {number} step
 * @param {Scope} [scope]
 */
export function historyParams(spec, from, to, step, scope = {}) {
  return { metric: spec.signal, from, to, step, group_by: spec.group_by, ...scope };
}

/** @param {string} metric @param {{from: number, to: number, step: number}} w @param {Scope} [scope] */
export function cacheParams(metric, from, w, scope = {}) {
  return { metric, from, to: w.to, step: w.step, group_by: "service", ...scope };
}

/** `/metrics/current` for the scope. @param {Scope} [scope] */
export function currentParams(scope = {}) {
  return { ...scope };
}

/** `/annotations` over the window, for the scope's service. @param {{from: number, to: number}} w @param {Scope} [scope] */
export function annotationParams(w, scope = {}) {
  return { from: w.from, to: w.to, service: scope.service };
}

/** The per-route table's window: the last `seconds` before `now`, on 10 s steps. */
export function routesWindow(now = Date.now() / 1000, seconds = 300) {
  const step = 10;
  const to = Math.ceil(now);
  const from = Math.floor((to - seconds) / step) * step;
  return { from, to, step };
}

/** @param {string} metric @param {{from: number, to: number, step: number}} rw @param {Scope} [scope] */
export function routeParams(metric, rw, scope = {}) {
  return { metric, from: rw.from, to: rw.to, step: rw.step, group_by: "service,route", ...scope };
}

/** @param {{from: number, to: number}} w @param {Scope} [scope] */
export function distributionParams(w, scope = {}) {
  return { metric: DURATION_METRIC, from: w.from, to: w.to, ...scope };
}

/** @param {{from: number, to: number}} w @param {Scope} [scope] */
export function exemplarParams(w, scope = {}) {
  return { metric: DURATION_METRIC, from: w.from, to: w.to, limit: 30, ...scope };
}

/** The alert history window: the last 24 h. */
export function alertHistoryParams(now = Date.now() / 1000) {
  return { since: Math.floor(now - 86400), limit: 200 };
}
