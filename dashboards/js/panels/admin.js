/**
 * Admin: actions on mlapi through the backend's `/admin/*` proxy (retrain, clear the cache,
 * fault scenarios), diagnostics and the effective configuration (secrets redacted there),
 * and the backend's own ingest health: OTLP points refused, by reason.
 */

import { getJSON, send, storedToken } from "../api.js";
import { h, replace, empty, failed, loading } from "../dom.js";

export const SCENARIOS = [
  { name: "latency-spike", text: "+400–900 ms on every prediction" },
  { name: "error-burst", text: "About 30 % of predictions answer 500" },
  { name: "model-drift", text: "Predictions ×1.6: the MAE rises over baseline" },
  { name: "cache-flush", text: "Cache cleared and bypassed: hit rate falls" },
  { name: "cpu-burn", text: "Every core kept busy by the API process" },
];

export class AdminPanel {
  /**
   * @param {{actions: HTMLElement, scenarios: HTMLElement, diagnostics: HTMLElement, config: HTMLElement}} els
   * @param {{toast: (msg: string, error?: boolean) => void, onChange?: () => void}} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.renderActions();
    this.rejections = h("div", { class: "admin-doc", "data-role": "rejections" });
    this.els.actions.append(this.rejections);
    this.scenarioKnown = false; // a scenario state was shown (then the hint is not)
    this.renderScenarios();
    this.renderLoader(els.diagnostics, "Diagnostics", "admin/diagnostics");
    this.renderLoader(els.config, "Configuration", "admin/config");
  }

  /** Run an action button: disable it, call, toast the outcome. */
  async run(button, label, fn) {
    button.disabled = true;
    try {
      const res = await fn();
      this.hooks.toast(`${label}: ${summarize(res)}`);
      this.hooks.onChange?.();
      return res;
    } catch (err) {
      this.hooks.toast(`${label} failed: ${err.message}`, true);
      return null;
    } finally {
      button.disabled = false;
    }
  }

  renderActions() {
    const row = (title, text, label, path, danger = false) => {
      const btn = h("button", { class: `btn ${danger ? "btn--danger" : ""}`, type: "button", "data-action": path }, label);
      btn.addEventListener("click", () => this.run(btn, title, () => send("POST", path)));
      return h("div", { class: "action-row" }, h("div", { class: "text" }, h("strong", {}, title), h("span", {}, text)), btn);
    };
    replace(this.els.actions,
      row("Retrain the models", "Fit both models again on fresh data; the new version reports its own baseline.", "Retrain", "admin/retrain"),
      row("Clear the cache", "Drop every cached prediction; the hit rate falls, then recovers.", "Clear cache", "admin/cache/clear", true));
  }

  renderScenarios() {
    // Its first text depends on the stored token, read when the view opens (`refresh`):
    // the page's first access to sessionStorage costs milliseconds of its cold load.
    const status = this.scenarioStatus = h("div", { class: "muted scenario-status", "data-role": "scenario-status" });
    const minutes = h("select", { "aria-label": "duration" },
      h("option", { value: "60" }, "1 minute"), h("option", { value: "300", selected: true }, "5 minutes"),
      h("option", { value: "900" }, "15 minutes"));
    const show = this.showScenario = (state) => {
      this.scenarioKnown = true;
      for (const b of buttons) b.classList.toggle("is-active", Boolean(state?.active) && b.dataset.scenario === state.name);
      status.textContent = state?.active
        ? `${state.name} running, ${Math.round(state.remaining_s)} s left. Watch the graphs and alerts.`
        : "No scenario running.";
    };
    const buttons = SCENARIOS.map((s) => {
      const b = h("button", { class: "scenario", type: "button", "data-scenario": s.name, title: `Start ${s.name} on mlapi` },
        h("strong", {}, s.name), h("span", {}, s.text), h("span", { class: "scenario-go" }, "Start ▸"));
      b.addEventListener("click", async () => {
        const res = await this.run(b, `Scenario ${s.name}`, () => send("POST", "admin/scenario", { name: s.name, duration_s: Number(minutes.value) }));
        if (res) show(res);
      });
      return b;
    });
    const stop = h("button", { class: "btn btn--small btn--ghost", type: "button" }, "Stop scenario");
    stop.addEventListener("click", async () => {
      const res = await this.run(stop, "Scenario stop", () => send("DELETE", "admin/scenario"));
      if (res) show(res);
    });
    replace(this.els.scenarios,
      h("p", { class: "muted" }, "Each scenario injects one fault into mlapi, so the graphs, the alerts and their notifications can be watched end to end."),
      h("div", { class: "form-row" }, h("label", {}, "Run for", minutes), stop),
      h("div", { class: "scenario-grid" }, ...buttons), status);
  }

  /** Show the refused OTLP points by reason (`GET /ingest/rejections`, an open read). */
  async refreshRejections() {
    let doc;
    try {
      doc = await getJSON("ingest/rejections");
    } catch (err) {
      replace(this.rejections, failed(`Ingest rejections unavailable: ${err.message}`));
      return;
    }
    const rows = Object.entries(doc.by_reason ?? {}).filter(([, n]) => n > 0);
    const head = h("div", { class: "text" }, h("strong", {}, "Rejected points by reason"),
      h("span", {}, `${doc.total ?? 0} OTLP point(s) refused since the backend started`));
    replace(this.rejections, head, rows.length
      ? h("table", { class: "table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Reason"), h("th", {}, "Points"))),
        h("tbody", {}, ...rows.map(([reason, n]) => h("tr", { "data-reason": reason },
          h("td", { class: "mono" }, reason), h("td", {}, String(n))))))
      : empty("No point refused", "Exporters send only data the backend can store."));
  }

  /** Show mlapi's running scenario, when this tab already holds the token (never asks). */
  async refresh() {
    this.refreshRejections();
    const token = storedToken();
    if (!this.scenarioKnown) {
      this.scenarioStatus.textContent = token
        ? "Click a scenario to start it on mlapi; it stops by itself after the chosen time."
        : "Click a scenario to start it on mlapi (the API token is asked once); it stops by itself after the chosen time. Its start and stop appear on the charts.";
    }
    if (!token) return;
    try {
      this.showScenario(await send("GET", "admin/scenario", undefined, { ask: false }));
    } catch { /* mlapi unreachable: the buttons say so when used */ }
  }

  /**
   * A panel that loads a JSON document on demand (admin reads need the token too).
   * @param {HTMLElement} el @param {string} title @param {string} path
   */
  renderLoader(el, title, path) {
    const btn = h("button", { class: "btn btn--small", type: "button", "data-load": path }, `Load ${title.toLowerCase()}`);
    const body = h("div", { class: "admin-doc" }, empty(`${title} of mlapi`, "Loaded on request; needs the API token."));
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      replace(body, loading());
      try {
        const doc = await send("GET", path);
        replace(body, h("pre", { class: "code", "data-doc": path }, typeof doc === "string" ? doc : JSON.stringify(doc, null, 2)));
        btn.textContent = "Reload";
      } catch (err) {
        replace(body, failed(`${title} unavailable: ${err.message}`));
      } finally {
        btn.disabled = false;
      }
    });
    replace(el, h("div", { class: "panel-head" }, h("span", { class: "panel-unit" }, `GET /${path}`), h("div", { class: "actions" }, btn)), body);
  }
}

function summarize(res) {
  if (res == null || res === "") return "done";
  if (typeof res === "string") return res.slice(0, 200);
  if (Array.isArray(res.trained)) {
    return `trained ${res.trained.map((m) => `${m.name ?? m.model ?? "model"} ${m.version ?? ""}`.trim()).join(", ")}`;
  }
  if (typeof res.cleared === "number") return `${res.cleared} cache entries dropped`;
  if ("active" in res) return res.active ? `${res.name} running` : "stopped";
  const msg = res.message ?? res.status ?? res.detail ?? res.result;
  if (typeof msg === "string") return msg;
  return JSON.stringify(res).slice(0, 200);
}
