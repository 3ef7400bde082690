/**
 * Big-number cards. A card is built once and updated in place, so live refreshes change
 * text nodes only (no flicker, no lost hover state).
 */

import { h, setValue } from "../dom.js";

/**
 * A card: label, big value with unit, a sub line.
 * @param {string} key stable id (also `data-card` for tests and styling)
 * @param {string} label
 */
export function makeCard(key, label) {
  const value = h("span", { class: "v", "data-role": "value" }, "—");
  const unit = h("span", { class: "unit" });
  const sub = h("div", { class: "card-sub", "data-role": "sub" }, "\u00a0");
  const root = h("div", { class: "card", "data-card": key },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value, unit),
    sub);
  return {
    root,
    /**
     * @param {{text: string, raw?: number|null, unit?: string, sub?: string, tone?: ""|"ok"|"warn"|"bad"}} v
     */
    set(v) {
      setValue(value, v.text, v.raw);
      unit.textContent = v.unit || "";
      sub.textContent = v.sub || "\u00a0";
      root.classList.remove("card--ok", "card--warn", "card--bad");
      if (v.tone) root.classList.add(`card--${v.tone}`);
    },
    value, sub,
  };
}

/**
 * A `<dl>` stat: label over value with an optional small suffix.
 * @param {string} key
 * @param {string} label
 */
export function makeStat(key, label) {
  const value = h("span", { "data-role": "value" }, "—");
  const small = h("small");
  const root = h("div", { class: "stat", "data-stat": key }, h("dt", {}, label), h("dd", {}, value, small));
  return {
    root,
    /** @param {string} text @param {number|null} [raw] @param {string} [suffix] */
    set(text, raw, suffix) {
      setValue(value, text, raw);
      small.textContent = suffix || "";
    },
  };
}
