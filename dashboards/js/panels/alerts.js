/**
 * Active alerts (with acknowledge, silence and — for latency alerts — trace links) and
 * the last 24 hours of alert history.
 *
 * A latency alert links to Jaeger twice: its slowest trace (the trace view of the slowest
 * exemplar in its window) and Jaeger's search prefilled with the service, the alert's time
 * window and the threshold as minimum duration ("the slowest traces while this fired").
 * Without a trace backend it says so, with the command that adds one.
 */

import { getJSON, post, send } from "../api.js";
import { h, replace, empty, failed, loading } from "../dom.js";
import * as f from "../format.js";
import * as Q from "../queries.js";
import { traceLink, traceSearchUrl, noTraceBackend, normalizeExemplars } from "./graphs.js";

/** Items of a list response: a bare array, or the first array among common keys. */
export function items(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const k of [...keys, "items", "alerts", "history", "entries", "rules", "silences", "data"]) {
    if (Array.isArray(body?.[k])) return body[k];
  }
  return [];
}

const LATENCY_SIGNALS = new Set(["avg_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms"]);
/** How far before the alert went pending its search starts: the rule's window saw them. */
const SEARCH_LEAD_S = 60;

/** Format a signal's value with its unit. */
export function signalValue(signal, v) {
  if (!f.isNum(v)) return f.DASH;
  if (/_ms$/.test(signal || "")) return f.ms(v);
  if (/percent$/.test(signal || "")) return f.pct(v, 1);
  if (signal === "request_rate" || signal === "prediction_rate") return `${f.rate(v)} /min`;
  if (signal === "avg_confidence") return f.ratio(v);
  return f.num(v);
}

export class AlertsPanel {
  /**
   * @param {{active: HTMLElement, history: HTMLElement, badge: HTMLElement}} els
   * @param {{toast: (msg: string, error?: boolean) => void, onChange: () => void}} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.jaegerUrl = "";
    /** Settles once the page's settings (the Jaeger URL) are known. */
    this.ready = Promise.resolve();
    /** @type {any[]} */
    this.active = [];
    /** @type {Record<string, string>} */
    this.signals = {};
    replace(els.active, loading());
    replace(els.history, loading());
  }

  /** @param {string} url */
  setJaeger(url) { this.jaegerUrl = url || ""; }

  /**
   * The signal each rule watches, to show history values with their unit.
   * @param {Record<string, string>} signals rule name → signal
   */
  setSignals(signals) {
    this.signals = signals || {};
    if (this.lastHistory) this.renderHistory(this.lastHistory);
  }

  /** The firing alerts, for the overall status. */
  firing() { return this.active.filter((a) => a.state === "firing"); }

  /** Fetch and draw the active alerts and the last day's history, as of `now` (epoch s). */
  async load(now = Date.now() / 1000) {
    const [active, history] = await Promise.allSettled([
      getJSON("alerts/active"),
      getJSON("alerts/history", Q.alertHistoryParams(now)),
    ]);
    // Until when a silenced alert stays quiet: asked only when one is silenced.
    if (active.status === "fulfilled" && items(active.value, "active").some((a) => a.silenced_by)) {
      try {
        const list = items(await getJSON("alerts/silences"), "silences");
        this.silenceEnds = Object.fromEntries(list.map((x) => [x.id, x.ends_at]));
      } catch { /* the badge says "silenced" without the end */ }
    }
    await this.ready; // latency alerts link to a trace when Jaeger is configured
    if (active.status === "fulfilled") {
      this.active = items(active.value, "active");
      await this.renderActive();
    } else {
      replace(this.els.active, failed(`Could not load alerts: ${active.reason.message}`));
    }
    if (history.status === "fulfilled") {
      const since = now - 86400;
      this.renderHistory(items(history.value, "history").filter((e) => !f.isNum(e.at) || e.at >= since));
    } else {
      replace(this.els.history, failed(`Could not load the history: ${history.reason.message}`));
    }
    if (active.status === "rejected") throw active.reason;
  }

  async renderActive() {
    const firing = this.firing().length;
    this.els.badge.hidden = !firing;
    this.els.badge.textContent = String(firing);
    if (!this.active.length) {
      replace(this.els.active, empty("All clear", "No alert is pending or firing."));
      return;
    }
    const rows = await Promise.all(this.active.map((a) => this.alertRow(a)));
    replace(this.els.active, h("div", { class: "alert-list" }, ...rows));
  }

  /** @param {any} a an active alert */
  async alertRow(a) {
    const sev = a.severity || "warning";
    const since = a.state === "firing" ? a.fired_at : a.pending_since;
    const actions = h("div", { class: "alert-actions" });
    if (a.state === "firing" && !a.acknowledged_at) {
      actions.append(h("button", { class: "btn btn--small", type: "button", onclick: () => this.acknowledge(a) }, "Acknowledge"));
    }
    if (!a.silenced_by) {
      actions.append(h("button", { class: "btn btn--small btn--ghost", type: "button", onclick: () => this.silence(a) }, "Silence 1 h"));
    } else {
      actions.append(h("button", {
        class: "btn btn--small", type: "button", "data-action": "unsilence", onclick: () => this.unsilence(a),
      }, "End silence"));
    }
    if (LATENCY_SIGNALS.has(a.signal) && this.jaegerUrl) {
      actions.append(...await this.traceLinks(a));
    } else if (LATENCY_SIGNALS.has(a.signal)) {
      actions.append(noTraceBackend(true));
    }
    const notes = [];
    if (a.acknowledged_at) notes.push(`acknowledged by ${a.acknowledged_by || "someone"} ${f.ago(a.acknowledged_at)}${a.ack_comment ? ` — ${a.ack_comment}` : ""}`);
    // A mute time interval holds or drops this alert's notifications (not its state).
    if (f.isNum(a.muted_until)) notes.push(`muted until ${f.dateTime(a.muted_until)}${a.muted_by?.length ? ` (${a.muted_by.join(", ")})` : ""}`);
    // Acknowledged and silenced alerts look different from untouched ones: a muted card
    // with a badge saying who handles it and until when notifications stay quiet.
    const badges = [];
    if (a.acknowledged_at) badges.push(h("span", { class: "tag tag--ack", "data-badge": "acknowledged", title: notes[0] }, "acknowledged"));
    if (a.silenced_by) {
      const until = this.silenceEnds?.[a.silenced_by];
      badges.push(h("span", { class: "tag tag--silenced", "data-badge": "silenced" }, f.isNum(until) ? `silenced until ${f.dateTime(until)}` : "silenced"));
    }
    const cls = ["alert", `alert--${sev}`, a.acknowledged_at ? "is-acknowledged" : "", a.silenced_by ? "is-silenced" : ""].filter(Boolean).join(" ");
    return h("div", { class: cls, "data-alert": a.id || a.rule, "data-acknowledged": a.acknowledged_at ? "1" : "0", "data-silenced": a.silenced_by ? "1" : "0" },
      h("span", { class: `tag state-tag--${a.state}` }, a.state),
      h("div", {},
        h("div", { class: "alert-title" }, a.rule, ...badges.map((b) => [" ", b])),
        h("div", { class: `sev sev--${sev}` }, sev)),
      h("div", { class: "num" },
        h("strong", { "data-role": "value", "data-value": a.value ?? "" }, signalValue(a.signal, a.value))),
      h("div", { class: "alert-meta" },
        [f.labels(a.labels),
          a.threshold != null ? `${a.signal} ${a.comparison} ${signalValue(a.signal, a.threshold)}` : "",
          f.isNum(since) ? `since ${f.dateTime(since)}` : "",
          ...notes].filter(Boolean).join(" · ")),
      a.description ? h("div", { class: "alert-meta" }, a.description) : null,
      actions);
  }

  /**
   * Links into Jaeger for a latency alert: its slowest trace (when an exemplar exists) and
   * the search for the traces slower than the threshold while it was active.
   * @param {any} a an active alert
   * @returns {Promise<HTMLElement[]>}
   */
  async traceLinks(a) {
    const to = Math.ceil(Date.now() / 1000);
    const from = Math.floor(f.isNum(a.pending_since) ? a.pending_since - 300 : to - 900);
    let top = null;
    try {
      const body = await getJSON("metrics/exemplars", {
        metric: "http.server.request.duration", from, to, limit: 1,
        service: a.labels?.service, route: a.labels?.route,
      });
      top = normalizeExemplars(body)[0] || null;
    } catch { /* no slowest trace; the search still works */ }
    const links = [];
    const slowest = top && traceLink(this.jaegerUrl, top.trace_id, `Slowest trace · ${f.ms(top.value_ms)}`, top.at);
    if (slowest) links.push(slowest);
    const start = f.isNum(a.pending_since) ? a.pending_since : f.isNum(a.fired_at) ? a.fired_at : to - 900;
    const href = traceSearchUrl(this.jaegerUrl, {
      service: a.labels?.service || top?.service, from: start - SEARCH_LEAD_S, to,
      minMs: f.isNum(a.threshold) ? a.threshold : null,
    });
    if (href) {
      const over = f.isNum(a.threshold) ? ` > ${signalValue(a.signal, a.threshold)}` : "";
      links.push(h("a", {
        class: "chip", href, target: "_blank", rel: "noopener noreferrer", "data-trace-search": "",
        title: `Jaeger: traces${over} since ${f.dateTime(start - SEARCH_LEAD_S)}`,
      }, `Traces${over} while active`));
    }
    return links;
  }

  async acknowledge(a) {
    try {
      await post(`alerts/${encodeURIComponent(a.id)}/acknowledge`, { comment: "from the dashboard", by: "dashboard" });
      this.hooks.toast(`Acknowledged ${a.rule}`);
      this.hooks.onChange();
    } catch (err) {
      this.hooks.toast(`Acknowledge failed: ${err.message}`, true);
    }
  }

  /** End the silence that mutes `a` now (expire it early). */
  async unsilence(a) {
    try {
      await send("DELETE", `alerts/silences/${encodeURIComponent(a.silenced_by)}`);
      this.hooks.toast(`Silence of ${a.rule} ended`);
      this.hooks.onChange();
    } catch (err) {
      this.hooks.toast(`Could not end the silence: ${err.message}`, true);
    }
  }

  async silence(a) {
    const matchers = [{ name: "alertname", op: "=", value: a.rule },
      ...Object.entries(a.labels || {}).map(([name, value]) => ({ name, op: "=", value: String(value) }))];
    try {
      await post("alerts/silences", { matchers, duration: 3600, created_by: "dashboard", comment: "silenced from the dashboard" });
      this.hooks.toast(`Silenced ${a.rule} for 1 hour`);
      this.hooks.onChange();
    } catch (err) {
      this.hooks.toast(`Silence failed: ${err.message}`, true);
    }
  }

  /** @param {any[]} entries newest first */
  renderHistory(entries) {
    this.lastHistory = entries;
    if (!entries.length) {
      replace(this.els.history, empty("No alert changed state in the last 24 hours"));
      return;
    }
    const rows = entries.map((e) => h("tr", { "data-history": e.id ?? "" },
      h("td", { class: "nowrap" }, f.dateTime(e.at)),
      h("td", {}, e.rule),
      h("td", { class: "labels" }, f.labels(e.labels)),
      h("td", { class: "nowrap" },
        h("span", { class: `tag state-tag--${e.from}` }, e.from), " → ",
        h("span", { class: `tag state-tag--${e.to}` }, e.to)),
      h("td", { class: "num", "data-value": e.value ?? "" }, signalValue(e.signal ?? this.signals[e.rule], e.value))));
    replace(this.els.history, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Rule"), h("th", {}, "Labels"), h("th", {}, "Change"), h("th", { class: "num" }, "Value"))),
      h("tbody", {}, ...rows)));
  }
}
