/**
 * Big-number cards. A card is built once and updated in place, so live refreshes change
 * text nodes only (no flicker, no lost hover state).
 */

import { h, svg, setValue } from "../dom.js";

/**
 * A card: label, big value with unit, a sub line.
 * @param {string} key stable id (also `data-card` for tests and styling)
 * @param {string} label
 */
export function makeCard(key, label) {
  const value = h("span", { class: "v", "data-role": "value" }, "—");
  const unit = h("span", { class: "unit" });
  const sub = h("div", { class: "card-sub", "data-role": "sub" }, "\u00a0");
  const breakdown = h("div", { class: "card-breakdown", "data-role": "breakdown" });
  const root = h("div", { class: "card", "data-card": key },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value, unit),
    sub, breakdown);
  const line = svg("polyline", { class: "spark-line", points: "" });
  const area = svg("polygon", { class: "spark-area", points: "" });
  const spark = svg("svg", { class: "spark", viewBox: "0 0 100 24", preserveAspectRatio: "none", "aria-hidden": "true" }, area, line);
  root.append(spark);
  return {
    root,
    /**
     * Draw a sparkline of the newest values (the selected range), or hide it.
     * @param {number[]} values
     */
    spark(values) {
      const vs = (values || []).slice(-60);
      spark.classList.toggle("is-empty", vs.length < 2);
      if (vs.length < 2) return;
      const lo = Math.min(...vs), hi = Math.max(...vs);
      const span = hi - lo || 1;
      const pts = vs.map((v, i) => `${((i / (vs.length - 1)) * 100).toFixed(2)},${(22 - ((v - lo) / span) * 20).toFixed(2)}`).join(" ");
      if (line.getAttribute("points") === pts) return; // a live update that moved nothing here
      line.setAttribute("points", pts);
      area.setAttribute("points", `0,24 ${pts} 100,24`);
    },
    /**
     * @param {{text: string, raw?: number|null, unit?: string, sub?: string, breakdown?: string,
     *          tone?: ""|"ok"|"warn"|"bad"}} v `breakdown`: the same figure per service
     */
    set(v) {
      setValue(value, v.text, v.raw);
      unit.textContent = v.unit || "";
      sub.textContent = v.sub || "\u00a0";
      breakdown.textContent = v.breakdown || "";
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
