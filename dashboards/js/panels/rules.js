/**
 * Alert configuration: rules (threshold, clear threshold, for, enabled, channels) edited in
 * place and saved one at a time, a "send test" per rule, silences and channels.
 */

import { getJSON, post, send } from "../api.js";
import { h, replace, empty, failed, loading } from "../dom.js";
import * as f from "../format.js";
import { items } from "./alerts.js";

/** Seconds as a compact duration string the backend parses back ("90s" → "1m30s"). */
export function durationText(sec) {
  if (typeof sec === "string") return sec;
  if (!f.isNum(sec)) return "";
  let s = Math.round(sec);
  if (s === 0) return "0s";
  const parts = [];
  for (const [unit, n] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (s >= n) { parts.push(`${Math.floor(s / n)}${unit}`); s %= n; }
  }
  return parts.join("");
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
    replace(els.rules, loading());
  }

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

  renderRules() {
    const rules = items(this.config, "rules");
    if (!rules.length) {
      replace(this.els.rules, empty("No rules", "Rules come from the rules file (MLPULSE_ALERT_RULES_FILE) or this API."));
      return;
    }
    const channels = this.channelNames();
    replace(this.els.rules, h("div", { class: "table-scroll table-scroll--tall" }, h("table", { class: "table rules-table" },
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
    const row = h("tr", { "data-rule": rule.name, class: rule.enabled === false ? "is-disabled" : "" },
      h("td", {}, enabled),
      h("td", {}, h("div", { class: "rule-name" }, rule.name), h("div", { class: "rule-desc" }, rule.description || "")),
      h("td", { class: "nowrap mono" }, `${rule.signal} ${rule.comparison}`,
        h("div", { class: "rule-desc" }, `window ${durationText(rule.window)} · by ${rule.group_by || "service"}`)),
      h("td", {}, threshold), h("td", {}, clear), h("td", {}, forIn),
      h("td", {}, h("span", { class: `sev sev--${rule.severity}` }, rule.severity)),
      h("td", {}, h("div", { class: "chans" }, ...chanBoxes)),
      h("td", { class: "nowrap" }, save, " ", test));
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
    replace(this.els.silences, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Matchers"), h("th", {}, "Until"), h("th", {}, "Comment"), h("th", {}, ""))),
      h("tbody", {}, ...list.map((s) => {
        const del = h("button", { class: "btn btn--small btn--danger", type: "button" }, "Expire");
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
        const active = s.active ?? (s.starts_at <= now && now < s.ends_at);
        return h("tr", { "data-silence": s.id },
          h("td", { class: "mono" }, (s.matchers || []).map((m) => `${m.name}${m.op}${m.value}`).join(", ")),
          h("td", { class: "nowrap" }, f.dateTime(s.ends_at), active ? null : h("span", { class: "tag" }, "not active")),
          h("td", { class: "labels" }, s.comment || ""),
          h("td", { class: "num" }, del));
      }))), form);
  }

  silenceForm() {
    const rule = h("select", { "aria-label": "rule" },
      ...items(this.config, "rules").map((r) => h("option", { value: r.name }, r.name)));
    const hours = h("input", { type: "number", min: "0.25", step: "0.25", value: "1", "aria-label": "hours" });
    const comment = h("input", { type: "text", placeholder: "comment", "aria-label": "comment" });
    const add = h("button", { class: "btn btn--small", type: "submit" }, "Add silence");
    const form = h("form", { class: "form-row" },
      h("label", {}, "Rule", rule), h("label", {}, "Hours", hours), comment, add);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await post("alerts/silences", {
          matchers: [{ name: "alertname", op: "=", value: rule.value }],
          duration: Number(hours.value) * 3600, comment: comment.value, created_by: "dashboard",
        });
        this.hooks.toast(`Silenced ${rule.value}`);
        this.hooks.onChange();
        await this.loadSilences();
      } catch (err) {
        this.hooks.toast(`Could not add the silence: ${err.message}`, true);
      }
    });
    return form;
  }
}

function stripReadOnly(rule) {
  const copy = { ...rule };
  if ("for_" in copy) { copy.for = copy.for_; delete copy.for_; }
  return copy;
}
