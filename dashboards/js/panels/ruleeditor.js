/**
 * The rule editor: every field of a rule (signal, comparison, threshold, clear threshold,
 * window, for, keep_firing_for, min samples, severity, grouping, service filter, channels,
 * on/off, description), checked as it is typed with the message next to the field, saved
 * through `POST /alerts/rules` (new) or `PUT /alerts/rules/{name}` (edit), and a preview:
 * `POST /alerts/preview` replays the alert engine over the stored data of the last 24 h
 * and the editor draws when the rule would have been pending and firing.
 *
 * The server's answer is the authority: a 422 lists `{field, msg}` and each message goes
 * next to its field, exactly like the checks made here while typing.
 */

import { post, send } from "../api.js";
import { h, replace, empty, failed, loading } from "../dom.js";
import * as f from "../format.js";

const COMPARISONS = [">", ">=", "<", "<="];
const SEVERITIES = ["info", "warning", "critical"];
const GROUPS = ["service", "instance", "route", "model", "version", "none"];
const DURATION = /^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*)+$/;
const NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
const PREVIEW_S = 86_400;

/** Seconds as "1m30s" (the backend reads it back). */
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

/**
 * Check a rule as the editor holds it; returns `{field: message}` (empty when fine).
 * The same rules as the backend's, so most mistakes show before anything is sent.
 * @param {any} r
 * @param {{signals: string[], channels: string[]}} known
 */
export function checkRule(r, known) {
  const errors = {};
  if (!NAME.test(r.name || "")) errors.name = "1–100 characters: letters, digits, _ . : -";
  if (known.signals.length && !known.signals.includes(r.signal)) errors.signal = "pick a signal";
  if (!f.isNum(r.threshold)) errors.threshold = "a number is needed";
  if (r.clear_threshold !== null && !f.isNum(r.clear_threshold)) errors.clear_threshold = "a number, or empty for none";
  else if (f.isNum(r.clear_threshold) && f.isNum(r.threshold)) {
    const up = r.comparison === ">" || r.comparison === ">=";
    if (up && r.clear_threshold > r.threshold) errors.clear_threshold = `must be ≤ the threshold (${r.threshold}) for '${r.comparison}'`;
    if (!up && r.clear_threshold < r.threshold) errors.clear_threshold = `must be ≥ the threshold (${r.threshold}) for '${r.comparison}'`;
  }
  for (const key of ["window", "for", "keep_firing_for"]) {
    if (!DURATION.test(String(r[key] ?? ""))) errors[key] = "a duration such as 30s, 5m, 1h";
  }
  if (!errors.window && /^\s*0+(\.0+)?\s*[a-z]*\s*$/.test(String(r.window))) errors.window = "must be more than 0";
  if (!Number.isInteger(r.min_samples) || r.min_samples < 0) errors.min_samples = "a whole number ≥ 0";
  for (const c of r.channels || []) if (!known.channels.includes(c)) errors.channels = `unknown channel ${c}`;
  return errors;
}

export class RuleEditor {
  /**
   * @param {HTMLElement} root where the editor opens
   * @param {{toast: (msg: string, error?: boolean) => void, saved: () => void}} hooks
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    /** @type {string|null} the name of the rule being edited (null: a new rule) */
    this.original = null;
    this.root.hidden = true;
  }

  close() {
    this.root.hidden = true;
    replace(this.root);
  }

  /**
   * Open the editor on `rule` (a copy for "duplicate", a template for "new").
   * @param {any} rule
   * @param {{mode: "new"|"edit"|"duplicate", signals: string[], channels: string[], services: string[]}} ctx
   */
  open(rule, ctx) {
    this.original = ctx.mode === "edit" ? rule.name : null;
    this.known = { signals: ctx.signals, channels: ctx.channels };
    const fields = {};
    /** @type {Record<string, HTMLElement>} */
    const errs = {};
    const field = (key, label, input, hint = "") => {
      fields[key] = input;
      input.dataset.field = key;
      input.id = `rule-field-${key}`;
      errs[key] = h("div", { class: "field-error", "data-error-for": key, role: "alert" });
      return h("div", { class: "field" },
        h("label", { for: input.id }, label), input,
        hint ? h("div", { class: "field-hint" }, hint) : null, errs[key]);
    };
    const select = (values, current) => {
      const el = h("select", {}, ...values.map((v) => h("option", { value: v }, v)));
      /** @type {HTMLSelectElement} */ (el).value = current;
      return el;
    };
    const text = (value, attrs = {}) => h("input", { type: "text", value: value ?? "", ...attrs });
    const number = (value, attrs = {}) => h("input", { type: "number", step: "any", value: value ?? "", ...attrs });
    const signals = ctx.signals.length ? ctx.signals : [rule.signal];
    const enabled = h("input", { type: "checkbox" });
    /** @type {HTMLInputElement} */ (enabled).checked = rule.enabled !== false;
    const chanBoxes = ctx.channels.map((name) => {
      const box = h("input", { type: "checkbox", value: name, "data-channel": name });
      /** @type {HTMLInputElement} */ (box).checked = (rule.channels || []).includes(name);
      return h("label", { class: "chan" }, box, name);
    });
    const chans = h("div", { class: "chans", "data-field": "channels" }, ...chanBoxes);
    errs.channels = h("div", { class: "field-error", "data-error-for": "channels", role: "alert" });
    const serviceFilter = select(["", ...ctx.services], rule.filters?.service ?? "");
    /** @type {HTMLSelectElement} */ (serviceFilter).options[0].textContent = "every service";
    errs[""] = h("div", { class: "field-error", "data-error-for": "", role: "alert" });

    const title = ctx.mode === "edit" ? `Edit rule ${rule.name}` : ctx.mode === "duplicate" ? `Duplicate of ${rule.name}` : "New rule";
    const save = h("button", { class: "btn btn--primary", type: "submit", "data-action": "save-rule" }, ctx.mode === "edit" ? "Save rule" : "Create rule");
    const previewBtn = h("button", { class: "btn", type: "button", "data-action": "preview" }, "Preview last 24 h");
    const cancel = h("button", { class: "btn btn--ghost", type: "button", "data-action": "cancel" }, "Cancel");
    this.previewBox = h("div", { class: "rule-preview", "data-role": "preview" });
    const form = h("form", { class: "rule-form", novalidate: true, "data-editing": this.original ?? "" },
      h("h3", {}, title),
      h("div", { class: "rule-grid" },
        field("name", "Name", text(rule.name, { autocomplete: "off" })),
        field("signal", "Signal", select(signals, rule.signal)),
        field("comparison", "Comparison", select(COMPARISONS, rule.comparison)),
        field("threshold", "Threshold", number(rule.threshold)),
        field("clear_threshold", "Clear threshold", number(rule.clear_threshold, { placeholder: "= threshold" }), "resolves back across it (hysteresis)"),
        field("window", "Window", text(durationText(rule.window)), "the signal over this window"),
        field("for", "For", text(durationText(rule.for ?? rule.for_)), "pending this long before firing"),
        field("keep_firing_for", "Keep firing for", text(durationText(rule.keep_firing_for ?? 0))),
        field("min_samples", "Min samples", number(rule.min_samples ?? 1, { step: "1", min: "0" })),
        field("severity", "Severity", select(SEVERITIES, rule.severity || "warning")),
        field("group_by", "One alert per", select(GROUPS, rule.group_by || "service")),
        field("service", "Only service", serviceFilter),
        field("description", "Description", text(rule.description || "")),
        h("div", { class: "field" }, h("span", { class: "label" }, "Channels"), chans, errs.channels),
        h("div", { class: "field" }, h("label", { class: "toggle" }, enabled, " enabled"))),
      errs[""],
      h("div", { class: "form-actions" }, save, previewBtn, cancel),
      this.previewBox);

    const read = () => {
      const num = (el) => (el.value.trim() === "" ? null : Number(el.value));
      const filters = { ...(rule.filters || {}) };
      if (serviceFilter.value) filters.service = serviceFilter.value; else delete filters.service;
      return {
        ...rule,
        name: fields.name.value.trim(),
        signal: fields.signal.value,
        comparison: fields.comparison.value,
        threshold: num(fields.threshold),
        clear_threshold: num(fields.clear_threshold),
        window: fields.window.value.trim(),
        for: fields.for.value.trim(),
        keep_firing_for: fields.keep_firing_for.value.trim() || "0s",
        min_samples: num(fields.min_samples) ?? 0,
        severity: fields.severity.value,
        group_by: fields.group_by.value,
        filters,
        description: fields.description.value,
        channels: chanBoxes.map((l) => /** @type {HTMLInputElement} */ (l.querySelector("input"))).filter((b) => b.checked).map((b) => b.value),
        enabled: /** @type {HTMLInputElement} */ (enabled).checked,
      };
    };
    const show = (given) => {
      // A message for a field without an input of its own (filters, say) shows under the form.
      const errors = {};
      for (const [key, msg] of Object.entries(given)) {
        const at = key in errs ? key : "";
        errors[at] = errors[at] ? `${errors[at]}; ${key}: ${msg}` : msg;
      }
      for (const [key, el] of Object.entries(errs)) {
        el.textContent = errors[key] || "";
        const input = key === "channels" ? chans : fields[key];
        input?.classList.toggle("is-invalid", Boolean(errors[key]));
        if (input && "setAttribute" in input) input.setAttribute("aria-invalid", errors[key] ? "true" : "false");
      }
      form.dataset.errors = String(Object.values(errors).filter(Boolean).length);
    };
    const check = () => {
      const r = read();
      const errors = checkRule(r, this.known);
      show(errors);
      return { r, errors };
    };
    form.addEventListener("input", () => check());
    form.addEventListener("change", () => check());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const { r, errors } = check();
      if (Object.keys(errors).length) return;
      delete r.for_;
      save.disabled = true;
      try {
        if (this.original === null) await post("alerts/rules", r);
        else await send("PUT", `alerts/rules/${encodeURIComponent(this.original)}`, r);
        this.hooks.toast(`${this.original === null ? "Created" : "Saved"} rule ${r.name}`);
        this.close();
        this.hooks.saved();
      } catch (err) {
        show(serverErrors(err));
      } finally {
        save.disabled = false;
      }
    });
    previewBtn.addEventListener("click", async () => {
      const { r, errors } = check();
      if (Object.keys(errors).length) return;
      delete r.for_;
      previewBtn.disabled = true;
      replace(this.previewBox, loading("Replaying the engine over the last 24 h…"));
      try {
        const to = Math.floor(Date.now() / 1000);
        const doc = await post("alerts/preview", { rule: r, from: to - PREVIEW_S, to });
        this.renderPreview(doc, r);
      } catch (err) {
        const errors2 = serverErrors(err);
        show(errors2);
        replace(this.previewBox, failed(`Preview failed: ${err.message}`));
      } finally {
        previewBtn.disabled = false;
      }
    });
    cancel.addEventListener("click", () => this.close());
    replace(this.root, form);
    this.root.hidden = false;
    check();
    fields.name.focus();
    this.root.scrollIntoView({ block: "nearest" });
  }

  /**
   * Draw the preview: a 24 h timeline per group with the pending and firing stretches,
   * and the list of firing intervals.
   * @param {any} doc `POST /alerts/preview`
   * @param {any} rule
   */
  renderPreview(doc, rule) {
    const span = doc.to - doc.from;
    const pos = (t) => `${Math.max(0, Math.min(100, ((t - doc.from) / span) * 100))}%`;
    const width = (a, b) => `${Math.max(0.3, ((Math.min(b, doc.to) - Math.max(a, doc.from)) / span) * 100)}%`;
    const list = doc.intervals || [];
    const head = h("div", { class: "preview-head", "data-preview-count": list.length },
      h("strong", {}, list.length
        ? `Would have fired ${list.length} time${list.length === 1 ? "" : "s"} in the last 24 h`
        : "Would not have fired in the last 24 h"),
      h("span", { class: "muted" }, ` · the alert engine replayed every ${durationText(doc.step)} over the stored data (${doc.evaluations} evaluations; live it evaluates every few seconds, so edges may differ by up to a step)`));
    if (!list.length) {
      replace(this.previewBox, head, empty("No firing", `${rule.signal} ${rule.comparison} ${rule.threshold} did not hold for ${durationText(rule.for)} anywhere in the range.`));
      return;
    }
    const groups = new Map();
    for (const it of list) {
      const key = f.labels(it.labels) || "all";
      groups.set(key, [...(groups.get(key) || []), it]);
    }
    const lanes = [...groups.entries()].map(([key, its]) => h("div", { class: "lane" },
      h("span", { class: "lane-label mono" }, key),
      h("div", { class: "lane-track" }, ...its.flatMap((it) => {
        const end = it.resolved_at ?? doc.to;
        const pend = h("span", { class: "lane-seg lane-seg--pending", title: `pending from ${f.dateTime(it.pending_at)}` });
        pend.style.left = pos(it.pending_at);
        pend.style.width = width(it.pending_at, it.fired_at);
        const fire = h("span", { class: "lane-seg lane-seg--firing", title: `firing ${f.dateTime(it.fired_at)} → ${it.resolved_at ? f.dateTime(it.resolved_at) : "still firing"}` });
        fire.style.left = pos(it.fired_at);
        fire.style.width = width(it.fired_at, end);
        return [pend, fire];
      }))));
    const axis = h("div", { class: "lane-axis muted" }, h("span", {}, f.dateTime(doc.from)), h("span", {}, f.dateTime(doc.to)));
    const rows = list.map((it) => h("tr", {
      "data-preview-interval": "", "data-fired-at": it.fired_at, "data-resolved-at": it.resolved_at ?? "",
      "data-pending-at": it.pending_at, "data-labels": JSON.stringify(it.labels),
    },
    h("td", { class: "mono" }, f.labels(it.labels) || "all"),
    h("td", { class: "nowrap" }, f.dateTime(it.pending_at)),
    h("td", { class: "nowrap" }, f.dateTime(it.fired_at)),
    h("td", { class: "nowrap" }, it.resolved_at ? f.dateTime(it.resolved_at) : "still firing"),
    h("td", { class: "num" }, f.num(it.value))));
    replace(this.previewBox, head, h("div", { class: "lanes" }, ...lanes, axis),
      h("table", { class: "table table--compact" },
        h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Pending"), h("th", {}, "Fired"), h("th", {}, "Resolved"), h("th", { class: "num" }, "Value at firing"))),
        h("tbody", {}, ...rows)));
  }
}

/** A 422's `{field, msg}` list as `{field: message}`; anything else under "". */
function serverErrors(err) {
  const out = {};
  if (Array.isArray(err?.detail)) {
    for (const d of err.detail) {
      const key = typeof d.field === "string" ? d.field : "";
      out[key] = out[key] ? `${out[key]}; ${d.msg}` : d.msg;
    }
  } else {
    out[""] = err?.message || String(err);
  }
  return out;
}
