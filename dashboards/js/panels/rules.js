/**
 * Alert configuration: rules — the quick edits (threshold, clear threshold, for, enabled,
 * channels) in place, and new / edit / duplicate / delete with every field and a 24 h
 * preview in the rule editor (ruleeditor.js) — a "send test" per rule, silences (list,
 * create with matchers, expire early) and channels.
 */

import { getJSON, post, send } from "../api.js";
import { h, replace, empty, failed, loading } from "../dom.js";
import * as f from "../format.js";
import { items } from "./alerts.js";
import { RuleEditor, durationText } from "./ruleeditor.js";

export { durationText };

/** A new rule's starting point. */
const NEW_RULE = {
  name: "", signal: "error_rate_percent", comparison: ">", threshold: 5, clear_threshold: null,
  window: 300, for: 60, keep_firing_for: 0, min_samples: 1, severity: "warning", group_by: "service",
  filters: {}, channels: [], enabled: true, description: "",
};

/**
 * Parse silence matchers: "alertname=high_error_rate, service=~ml.*" → [{name, op, value}].
 * @param {string} text
 * @returns {{matchers: Array<{name: string, op: string, value: string}>, error: string}}
 */
export function parseMatchers(text) {
  const matchers = [];
  for (const part of String(text || "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*)$/.exec(part);
    if (!m) return { matchers: [], error: `"${part}": write name=value, name!=value, name=~regex or name!~regex` };
    matchers.push({ name: m[1], op: m[2], value: m[3].trim().replace(/^"(.*)"$/, "$1") });
  }
  if (!matchers.length) return { matchers, error: "at least one matcher, e.g. alertname=high_error_rate" };
  return { matchers, error: "" };
}

export class RulesPanel {
  /**
   * @param {{rules: HTMLElement, silences: HTMLElement, channels: HTMLElement}} els
   * @param {{toast: (msg: string, error?: boolean) => void, onChange: () => void}} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    /** @type {any} */
    this.config = null;
    /** @type {string[]} every signal a rule can watch (`/metrics/catalog`) */
    this.signalNames = [];
    /** @type {string[]} the services reporting, for a rule's service filter */
    this.services = [];
    this.editorRoot = h("div", { class: "rule-editor", id: "rule-editor" });
    this.editor = new RuleEditor(this.editorRoot, { toast: hooks.toast, saved: () => { hooks.onChange(); this.load(); } });
    replace(els.rules, loading());
  }

  /** @param {string[]} names the services reporting */
  setServices(names) { this.services = names || []; }

  async load() {
    try {
      this.config = await getJSON("alerts/configure");
    } catch (err) {
      replace(this.els.rules, failed(`Could not load the rules: ${err.message}`));
      replace(this.els.channels, failed(err.message));
      return;
    }
    this.renderRules();
    this.renderChannels();
    await this.loadSilences();
  }

  /** The signal of each rule ({rule: signal}). */
  signals() {
    return Object.fromEntries(items(this.config, "rules").map((r) => [r.name, r.signal]));
  }

  /** Rule thresholds the overview colors by ({signal: threshold}). */
  thresholds() {
    const out = {};
    for (const r of items(this.config, "rules")) {
      if (r.enabled !== false && !(r.signal in out)) out[r.signal] = r.threshold;
    }
    return out;
  }

  channelNames() {
    return items(this.config?.channels ?? [], "channels").map((c) => c.name);
  }

  /** Open the rule editor. @param {any} rule @param {"new"|"edit"|"duplicate"} mode */
  async edit(rule, mode) {
    if (!this.signalNames.length) {
      // Every signal a rule can watch, asked when the editor first opens.
      try {
        this.signalNames = ((await getJSON("metrics/catalog")).signals || []).map((x) => x.name);
      } catch { /* the rules' own signals below */ }
    }
    const copy = stripReadOnly(rule);
    if (mode === "duplicate") copy.name = uniqueName(`${rule.name}_copy`, items(this.config, "rules").map((r) => r.name));
    const signals = this.signalNames.length ? this.signalNames : [...new Set(items(this.config, "rules").map((r) => r.signal))];
    this.editor.open(copy, { mode, signals, channels: this.channelNames(), services: this.services });
  }

  /** Delete a rule after a confirmation in the page. @param {any} rule */
  async remove(rule, button) {
    if (button.dataset.confirm !== "1") {
      button.dataset.confirm = "1";
      button.textContent = "Really delete?";
      setTimeout(() => { button.dataset.confirm = ""; button.textContent = "Delete"; }, 5000);
      return;
    }
    try {
      await send("DELETE", `alerts/rules/${encodeURIComponent(rule.name)}`);
      this.hooks.toast(`Deleted rule ${rule.name}`);
      this.hooks.onChange();
      await this.load();
    } catch (err) {
      this.hooks.toast(`Could not delete ${rule.name}: ${err.message}`, true);
    }
  }

  renderRules() {
    const rules = items(this.config, "rules");
    const add = h("button", { class: "btn btn--small btn--primary", type: "button", "data-action": "new-rule" }, "New rule");
    add.addEventListener("click", () => this.edit({ ...NEW_RULE, channels: this.channelNames().slice(0, 1) }, "new"));
    const bar = h("div", { class: "panel-head" }, h("span", { class: "panel-unit" }, "quick edits in the table; every field, and a 24 h preview, in the editor"), h("div", { class: "actions" }, add));
    if (!rules.length) {
      replace(this.els.rules, bar, this.editorRoot, empty("No rules", "Create one here, or load a rules file (MLPULSE_ALERT_RULES_FILE)."));
      return;
    }
    const channels = this.channelNames();
    replace(this.els.rules, bar, this.editorRoot, h("div", { class: "table-scroll table-scroll--tall" }, h("table", { class: "table rules-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "On"), h("th", {}, "Rule"), h("th", {}, "Condition"), h("th", {}, "Threshold"),
        h("th", {}, "Clear at"), h("th", {}, "For"), h("th", {}, "Severity"), h("th", {}, "Channels"), h("th", {}, ""))),
      h("tbody", {}, ...rules.map((r) => this.ruleRow(r, channels))))));
  }

  /** @param {any} rule @param {string[]} channels */
  ruleRow(rule, channels) {
    const enabled = h("input", { type: "checkbox", "data-field": "enabled", "aria-label": `enable ${rule.name}` });
    enabled.checked = rule.enabled !== false;
    const threshold = h("input", { type: "number", step: "any", "data-field": "threshold", value: rule.threshold, required: true });
    const clear = h("input", { type: "number", step: "any", "data-field": "clear_threshold", value: rule.clear_threshold ?? "", placeholder: "=" });
    const forIn = h("input", { type: "text", "data-field": "for", value: durationText(rule.for ?? rule.for_), pattern: "[0-9dhms.]+" });
    const chanBoxes = channels.map((name) => {
      const box = h("input", { type: "checkbox", value: name, "data-channel": name });
      box.checked = (rule.channels || []).includes(name);
      return h("label", { class: "chan" }, box, name);
    });
    const save = h("button", { class: "btn btn--small btn--primary", type: "button", disabled: true, "data-action": "save" }, "Save");
    const test = h("button", { class: "btn btn--small btn--ghost", type: "button", "data-action": "test" }, "Send test");
    const editBtn = h("button", { class: "btn btn--small", type: "button", "data-action": "edit", onclick: () => this.edit(rule, "edit") }, "Edit");
    const dupBtn = h("button", { class: "btn btn--small btn--ghost", type: "button", "data-action": "duplicate", onclick: () => this.edit(rule, "duplicate") }, "Duplicate");
    const delBtn = h("button", { class: "btn btn--small btn--danger", type: "button", "data-action": "delete" }, "Delete");
    delBtn.addEventListener("click", () => this.remove(rule, delBtn));
    const row = h("tr", { "data-rule": rule.name, class: rule.enabled === false ? "is-disabled" : "" },
      h("td", {}, enabled),
      h("td", {}, h("div", { class: "rule-name" }, rule.name), h("div", { class: "rule-desc" }, rule.description || "")),
      h("td", { class: "nowrap mono" }, `${rule.signal} ${rule.comparison}`,
        h("div", { class: "rule-desc" }, `window ${durationText(rule.window)} · by ${rule.group_by || "service"}`)),
      h("td", {}, threshold), h("td", {}, clear), h("td", {}, forIn),
      h("td", {}, h("span", { class: `sev sev--${rule.severity}` }, rule.severity)),
      h("td", {}, h("div", { class: "chans" }, ...chanBoxes)),
      h("td", { class: "nowrap" }, save, " ", editBtn, " ", dupBtn, " ", test, " ", delBtn));
    const dirty = () => { save.disabled = false; row.classList.add("is-dirty"); };
    row.addEventListener("input", dirty);
    row.addEventListener("change", dirty);
    save.addEventListener("click", async () => {
      const updated = {
        ...stripReadOnly(rule),
        enabled: enabled.checked,
        threshold: Number(threshold.value),
        clear_threshold: clear.value === "" ? null : Number(clear.value),
        for: forIn.value.trim() || "0s",
        channels: chanBoxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
      };
      save.disabled = true;
      try {
        await this.saveRule(updated);
        this.hooks.toast(`Saved ${rule.name}`);
        this.hooks.onChange();
        await this.load();
      } catch (err) {
        save.disabled = false;
        this.hooks.toast(`Could not save ${rule.name}: ${err.message}`, true);
      }
    });
    test.addEventListener("click", async () => {
      const targets = rule.channels || [];
      if (!targets.length) { this.hooks.toast(`${rule.name} has no channel to test`, true); return; }
      test.disabled = true;
      try {
        const results = await Promise.all(targets.map((channel) => this.testChannel(channel, `mlpulse test of rule ${rule.name}`)));
        const failedOnes = results.filter((r) => !r.delivered);
        this.hooks.toast(`Test for ${rule.name}: ${results.map((r) => `${r.channel} ${r.delivered ? "delivered" : `failed (${r.error})`}`).join(", ")}`, failedOnes.length > 0);
      } finally {
        test.disabled = false;
      }
    });
    return row;
  }

  /**
   * Send a test notification through one channel; never throws.
   * @returns {Promise<{channel: string, delivered: boolean, error?: string}>}
   */
  async testChannel(channel, message) {
    try {
      const res = await post("alerts/test", { channel, message });
      return { channel, delivered: res?.delivered !== false, error: res?.error };
    } catch (err) {
      return { channel, delivered: false, error: err.message };
    }
  }

  /** Save one rule: the backend upserts rules by name. */
  async saveRule(rule) {
    await post("alerts/configure", { rules: [rule] });
  }

  renderChannels() {
    const list = items(this.config?.channels ?? [], "channels");
    if (!list.length) {
      replace(this.els.channels, empty("No channels"));
      return;
    }
    replace(this.els.channels, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Target"), h("th", {}, ""))),
      h("tbody", {}, ...list.map((c) => {
        const test = h("button", { class: "btn btn--small btn--ghost", type: "button" }, "Send test");
        test.addEventListener("click", async () => {
          test.disabled = true;
          const r = await this.testChannel(c.name, "mlpulse test notification");
          test.disabled = false;
          this.hooks.toast(`Test to ${c.name}: ${r.delivered ? "delivered" : `failed (${r.error})`}`, !r.delivered);
        });
        return h("tr", { "data-channel": c.name },
          h("td", {}, c.name), h("td", {}, h("span", { class: "tag" }, c.type)),
          h("td", { class: "labels mono" }, c.url || c.path || (c.to ? [].concat(c.to).join(", ") : "") || c.description || ""),
          h("td", { class: "num" }, test));
      }))));
  }

  async loadSilences() {
    let list;
    try {
      list = items(await getJSON("alerts/silences"), "silences");
    } catch (err) {
      replace(this.els.silences, failed(`Could not load silences: ${err.message}`));
      return;
    }
    const now = Date.now() / 1000;
    const form = this.silenceForm();
    if (!list.length) {
      replace(this.els.silences, empty("No silences", "A silence mutes notifications for matching alerts."), form);
      return;
    }
    // Active and upcoming first, then the expired ones (kept for the record).
    const state = (s) => (s.active ?? (s.starts_at <= now && now < s.ends_at) ? "active" : s.starts_at > now ? "pending" : "expired");
    const order = { active: 0, pending: 1, expired: 2 };
    list = [...list].sort((a, b) => order[state(a)] - order[state(b)] || b.ends_at - a.ends_at);
    replace(this.els.silences, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Matchers"), h("th", {}, "State"), h("th", {}, "Until"), h("th", {}, "Comment"), h("th", {}, ""))),
      h("tbody", {}, ...list.map((s) => {
        const st = state(s);
        const del = h("button", { class: "btn btn--small btn--danger", type: "button", "data-action": "expire", hidden: st === "expired" }, "Expire");
        del.addEventListener("click", async () => {
          try {
            await send("DELETE", `alerts/silences/${encodeURIComponent(s.id)}`);
            this.hooks.toast("Silence expired");
            this.hooks.onChange();
            await this.loadSilences();
          } catch (err) {
            this.hooks.toast(`Could not expire: ${err.message}`, true);
          }
        });
        return h("tr", { "data-silence": s.id, "data-state": st, class: st === "expired" ? "is-disabled" : "" },
          h("td", { class: "mono" }, (s.matchers || []).map((m) => `${m.name}${m.op}${m.value}`).join(", ")),
          h("td", {}, h("span", { class: `tag ${st === "active" ? "tag--warn" : ""}` }, st)),
          h("td", { class: "nowrap" }, f.dateTime(s.ends_at)),
          h("td", { class: "labels" }, s.comment || ""),
          h("td", { class: "num" }, del));
      }))), form);
  }

  silenceForm() {
    const first = items(this.config, "rules")[0]?.name;
    const matchers = h("input", {
      type: "text", "aria-label": "matchers", "data-field": "matchers", class: "grow",
      value: first ? `alertname=${first}` : "", placeholder: "alertname=high_error_rate, service=mlapi",
    });
    const rule = h("select", { "aria-label": "rule" }, h("option", { value: "" }, "pick a rule…"),
      ...items(this.config, "rules").map((r) => h("option", { value: r.name }, r.name)));
    rule.addEventListener("change", () => {
      if (!rule.value) return;
      const rest = parseMatchers(matchers.value).matchers.filter((m) => m.name !== "alertname");
      matchers.value = [`alertname=${rule.value}`, ...rest.map((m) => `${m.name}${m.op}${m.value}`)].join(", ");
    });
    const hours = h("input", { type: "number", min: "0.25", step: "0.25", value: "1", "aria-label": "hours", "data-field": "hours" });
    const comment = h("input", { type: "text", placeholder: "comment", "aria-label": "comment", "data-field": "comment" });
    const error = h("div", { class: "field-error", "data-error-for": "matchers", role: "alert" });
    const add = h("button", { class: "btn btn--small", type: "submit", "data-action": "add-silence" }, "Add silence");
    const form = h("form", { class: "silence-form" },
      h("div", { class: "form-row" }, h("label", { class: "grow" }, "Matchers", matchers), h("label", {}, "Rule", rule)),
      h("div", { class: "form-row" }, h("label", {}, "Hours", hours), comment, add), error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const parsed = parseMatchers(matchers.value);
      error.textContent = parsed.error;
      if (parsed.error) return;
      if (!(Number(hours.value) > 0)) { error.textContent = "hours: more than 0"; return; }
      try {
        await post("alerts/silences", {
          matchers: parsed.matchers,
          duration: Number(hours.value) * 3600, comment: comment.value, created_by: "dashboard",
        });
        this.hooks.toast(`Silenced ${parsed.matchers.map((m) => `${m.name}${m.op}${m.value}`).join(", ")}`);
        this.hooks.onChange();
        await this.loadSilences();
      } catch (err) {
        error.textContent = err.message;
        this.hooks.toast(`Could not add the silence: ${err.message}`, true);
      }
    });
    return form;
  }
}

/** `base`, or `base_2`, `base_3`… whichever is free. */
function uniqueName(base, taken) {
  if (!taken.includes(base)) return base;
  for (let i = 2; ; i++) if (!taken.includes(`${base}_${i}`)) return `${base}_${i}`;
}

function stripReadOnly(rule) {
  const copy = { ...rule };
  if ("for_" in copy) { copy.for = copy.for_; delete copy.for_; }
  return copy;
}
