/**
 * Services and instances (`GET /metrics/services`): one row per service with its own
 * numbers over the snapshot window — the per-service breakdown that a sum over services
 * would hide — and one row per instance, running or stopped. A stopped instance (silent
 * for longer than the staleness window) shows when it was last seen, never old levels.
 *
 * Clicking a service or an instance selects it (the header's selector follows).
 */

import { h, replace, empty, failed, loading } from "../dom.js";
import * as f from "../format.js";

export class FleetPanel {
  /**
   * @param {HTMLElement} root
   * @param {{select: (service: string, instance?: string) => void}} hooks
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    /** @type {any} the last `/metrics/services` document */
    this.doc = null;
    replace(root, loading());
  }

  /** The services, as the document lists them. @returns {any[]} */
  services() { return this.doc?.services || []; }

  /** @param {string} service @returns {any|null} */
  service(service) { return this.services().find((s) => s.service === service) || null; }

  /** @param {Error} err */
  showError(err) {
    if (!this.doc) replace(this.root, failed(`Could not load the services: ${err.message}`));
  }

  /**
   * @param {any} doc `/metrics/services`
   * @param {{service: string, instance: string}} scope the selection, highlighted
   */
  update(doc, scope) {
    this.doc = doc;
    const list = this.services().filter((s) => !scope.service || s.service === scope.service);
    if (!list.length) {
      replace(this.root, empty("No service reports yet",
        scope.service ? `Nothing from ${scope.service} is stored.` : "Services appear with their first export to /v1/metrics."));
      return;
    }
    const stale = doc.stale_after_seconds;
    const rows = [];
    for (const s of list) {
      const api = s.current?.api_metrics || {};
      const cache = s.current?.cache_metrics || {};
      const running = s.instances.filter((i) => i.state === "running").length;
      rows.push(h("tr", { class: "fleet-service", "data-service": s.service },
        h("td", {}, h("button", { class: "linklike", type: "button", onclick: () => this.hooks.select(s.service) }, s.service)),
        h("td", {}, `${running} of ${s.instances.length} running`),
        h("td", { class: "num", "data-field": "requests_per_minute", "data-value": api.requests_per_minute ?? "" }, f.rate(api.requests_per_minute)),
        h("td", { class: "num", "data-field": "error_rate_percent", "data-value": api.error_rate_percent ?? "" }, f.pct(api.error_rate_percent)),
        h("td", { class: "num", "data-field": "avg_response_time_ms", "data-value": api.avg_response_time_ms ?? "" }, f.ms(api.avg_response_time_ms)),
        h("td", { class: "num", "data-field": "p95_response_time_ms", "data-value": api.p95_response_time_ms ?? "" }, f.ms(api.p95_response_time_ms)),
        h("td", { class: "num", "data-field": "cache_hit_rate_percent", "data-value": cache.hit_rate_percent ?? "" }, f.pct(cache.hit_rate_percent, 1)),
        h("td", { colspan: "3", class: "muted" }, "")));
      for (const i of s.instances) {
        const stopped = i.state !== "running";
        const picked = scope.service === s.service && scope.instance === i.instance;
        rows.push(h("tr", {
          class: `fleet-instance${stopped ? " is-stopped" : ""}${picked ? " is-picked" : ""}`,
          "data-instance": i.instance, "data-instance-service": s.service, "data-state": i.state,
        },
        h("td", { class: "indent" }, h("button", {
          class: "linklike mono", type: "button", title: `show only ${s.service} instance ${i.instance}`,
          onclick: () => this.hooks.select(s.service, i.instance),
        }, i.instance)),
        h("td", {}, h("span", { class: `tag ${stopped ? "tag--bad" : "tag--ok"}`, "data-role": "state" }, stopped ? "stopped" : "running"),
          stopped ? h("span", { class: "muted" }, ` last seen ${f.ago(i.last_seen)}`) : null),
        h("td", { colspan: "5" }),
        h("td", { class: "num", "data-field": "uptime_seconds", "data-value": i.uptime_seconds ?? "" },
          stopped ? f.DASH : f.duration(i.uptime_seconds)),
        h("td", { class: "num", "data-field": "memory_usage_mb", "data-value": i.memory_usage_mb ?? "" }, stopped ? f.DASH : f.mb(i.memory_usage_mb)),
        h("td", { class: "num", "data-field": "process_cpu_percent", "data-value": i.process_cpu_percent ?? "" },
          stopped ? f.DASH : f.pct(i.process_cpu_percent, 1))));
      }
    }
    replace(this.root,
      h("table", { class: "table table--compact fleet" },
        h("thead", {}, h("tr", {},
          h("th", {}, "Service / instance"), h("th", {}, "State"),
          h("th", { class: "num" }, "Requests /min"), h("th", { class: "num" }, "Errors"),
          h("th", { class: "num" }, "Avg"), h("th", { class: "num" }, "p95"), h("th", { class: "num" }, "Cache hits"),
          h("th", { class: "num" }, "Uptime"), h("th", { class: "num" }, "Memory"), h("th", { class: "num" }, "CPU"))),
        h("tbody", {}, ...rows)),
      h("p", { class: "muted panel-foot" },
        `Service figures: last ${Math.round(doc.window_seconds / 60)} min. Instance uptime, memory and CPU: now; `,
        `an instance silent for more than ${f.duration(stale)} is stopped and leaves them.`));
  }
}
