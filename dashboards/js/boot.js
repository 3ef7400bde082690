/**
 * The first load's requests, started the moment this small module runs — while the rest
 * of the page (uPlot, the panels, main.js) is still being fetched and built. index.html
 * loads it `async`, ahead of main.js; the panels' own requests for the same URLs then take
 * these answers (`prefetchJSON` / `getJSON` in api.js) instead of asking again.
 *
 * main.js computes its first load for `bootNow`, so every URL here is exactly the one a
 * panel asks for (the same parameter builders, queries.js). A request nobody takes costs
 * one query and is dropped after a few seconds.
 */

import { prefetchBatch, prefetchJSON } from "./api.js";
import * as q from "./queries.js";
import { TimeRange, readHash } from "./timerange.js";

/** The time (epoch s) the first load is computed for, by this module and by main.js. */
export const bootNow = Date.now() / 1000;

function prefetchFirstLoad() {
  const range = new TimeRange(3600);
  readHash(range, location.hash);
  const w = range.window(bootNow);
  const scope = range.filters();
  /** @type {Array<[string, Record<string, any>|undefined]>} */
  const reqs = [];
  // The charts first: the slowest queries decide when the page is ready.
  for (const specs of Object.values(q.CHART_SIGNALS)) {
    for (const spec of specs) {
      reqs.push(["metrics/history", q.historyParams(spec, w.from, w.to, w.step, scope)]);
      if (range.compare) reqs.push(["metrics/history", q.historyParams(spec, w.from - w.span, w.to - w.span, w.step, scope)]);
    }
  }
  for (const metric of q.CACHE_SIGNALS) reqs.push(["metrics/history", q.cacheParams(metric, w.from, w, scope)]);
  reqs.push(["metrics/distribution", q.distributionParams(w, scope)]);
  reqs.push(["metrics/current", q.currentParams(scope)]);
  reqs.push(["health", undefined]);
  const rw = q.routesWindow(bootNow);
  for (const metric of q.ROUTE_SIGNALS) reqs.push(["metrics/history", q.routeParams(metric, rw, scope)]);
  reqs.push(["alerts/configure", undefined]);
  reqs.push(["alerts/silences", undefined]); // the rules panel asks for it only after the rules
  reqs.push(["alerts/active", undefined]);
  reqs.push(["alerts/history", q.alertHistoryParams(bootNow)]); // the alerts panel, after the active ones
  reqs.push(["dashboard/config", undefined]);
  // One round trip for all of them (see prefetchBatch).
  const answers = prefetchBatch(reqs);
  answers[answers.length - 1].then((cfg) => {
    if (cfg?.jaeger_ui_url) prefetchJSON("metrics/exemplars", q.exemplarParams(w, scope));
  }).catch(() => { /* no trace links */ });
}

prefetchFirstLoad();
