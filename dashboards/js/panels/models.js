/**
 * Model performance, one card per model: MAE against its baseline and the alert target,
 * degradation %, RMSE, R², predictions, mean confidence and feedback count.
 */

import { h, replace, setValue, empty, loading } from "../dom.js";
import * as f from "../format.js";
import { makeStat } from "./cards.js";

export class ModelsPanel {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, ReturnType<typeof modelCard>>} */
    this.cards = new Map();
    this.degradationLimit = 20;
    replace(root, h("div", { class: "panel" }, loading()));
  }

  /** @param {number} limit the degradation % at which the MAE rule fires */
  setLimit(limit) {
    if (f.isNum(limit)) this.degradationLimit = limit;
  }

  /** @param {Record<string, any>|undefined} models `model_metrics` of `/metrics/current` */
  update(models) {
    const names = Object.keys(models || {}).sort();
    if (!names.length) {
      this.cards.clear();
      replace(this.root, h("div", { class: "panel" },
        empty("No model metrics yet", "Predictions and ground-truth feedback from mlapi show up here.")));
      return;
    }
    const same = names.length === this.cards.size && names.every((n) => this.cards.has(n));
    if (!same) {
      this.cards = new Map(names.map((n) => [n, modelCard(models[n]?.model ?? n, models[n]?.service ?? "")]));
      replace(this.root, ...names.map((n) => this.cards.get(n).root));
    }
    for (const n of names) this.cards.get(n).set(models[n] || {}, this.degradationLimit);
  }
}

/** @param {string} name the model @param {string} [service] the service it serves in */
function modelCard(name, service = "") {
  const version = h("span", { class: "tag", hidden: true });
  const degTag = h("span", { class: "tag", "data-role": "degradation" });
  const mae = h("div", { class: "mae-big", "data-role": "mae" }, "—");
  const baseline = h("span", { "data-role": "baseline" }, "—");
  const compare = h("div", { class: "mae-compare" }, "baseline ", baseline);
  const fill = h("div", { class: "bar-fill" });
  const markBase = h("div", { class: "bar-mark", title: "baseline" });
  const markLimit = h("div", { class: "bar-mark", title: "alert target" });
  const legendLeft = h("span");
  const legendRight = h("span");
  const stats = {
    rmse: makeStat("rmse", "RMSE"),
    r2: makeStat("r2", "R²"),
    predictions: makeStat("predictions_count", "Predictions"),
    confidence: makeStat("avg_confidence", "Mean confidence"),
    feedback: makeStat("feedback_count", "Feedback"),
    updated: makeStat("last_updated", "Last update"),
  };
  const root = h("article", { class: "panel model", "data-model": name, "data-service": service },
    h("header", { class: "model-head" },
      service ? h("span", { class: "tag", "data-role": "service", title: "service" }, service) : null,
      h("h3", { title: name }, name), version, degTag),
    h("div", { class: "mae-row" },
      h("div", {}, h("div", { class: "mae-big-label" }, "MAE"), mae),
      h("div", { class: "grow" }, compare)),
    h("div", {}, h("div", { class: "bar" }, fill, markBase, markLimit), h("div", { class: "bar-legend" }, legendLeft, legendRight)),
    h("dl", { class: "stats" }, ...Object.values(stats).map((s) => s.root)));

  return {
    root,
    /** @param {any} m @param {number} limit */
    set(m, limit) {
      if (m.version || m.model_version) {
        version.hidden = false;
        version.textContent = `v${String(m.version || m.model_version).replace(/^v/, "")}`;
      }
      setValue(mae, f.num(m.avg_mae), m.avg_mae);
      setValue(baseline, f.num(m.baseline_mae), m.baseline_mae);
      const deg = m.degradation_percent;
      // No degradation with a baseline known means no feedback in the window, not "no baseline".
      const why = f.isNum(m.baseline_mae) ? "no feedback in the window" : "no baseline";
      setValue(degTag, f.isNum(deg) ? `${f.signedPct(deg)} vs baseline` : why, deg);
      const tone = !f.isNum(deg) ? "" : deg > limit ? "bad" : deg > limit / 2 ? "warn" : "ok";
      degTag.className = `tag${tone ? ` tag--${tone}` : ""}`;

      // The bar spans 0 .. max(MAE, 1.5 × the alert target): baseline and target marked.
      const base = m.baseline_mae;
      const target = f.isNum(base) ? base * (1 + limit / 100) : null;
      const top = Math.max(f.isNum(m.avg_mae) ? m.avg_mae : 0, f.isNum(target) ? target * 1.25 : 0) || 1;
      const place = (el, v) => {
        el.hidden = !f.isNum(v);
        if (f.isNum(v)) el.style.left = `${Math.min(100, (v / top) * 100)}%`;
      };
      fill.style.width = `${f.isNum(m.avg_mae) ? Math.min(100, (m.avg_mae / top) * 100) : 0}%`;
      fill.className = `bar-fill${tone === "bad" ? " bar-fill--bad" : tone === "warn" ? " bar-fill--warn" : ""}`;
      place(markBase, base);
      place(markLimit, target);
      legendLeft.textContent = f.isNum(base) ? `baseline ${f.num(base)}` : "no baseline reported";
      legendRight.textContent = f.isNum(target) ? `target ≤ ${f.num(target)} (+${limit} %)` : "";

      stats.rmse.set(f.num(m.rmse), m.rmse);
      stats.r2.set(f.isNum(m.r2) ? m.r2.toFixed(3) : f.DASH, m.r2);
      stats.predictions.set(f.count(m.predictions_count), m.predictions_count);
      stats.confidence.set(f.isNum(m.avg_confidence) ? f.pct(m.avg_confidence * 100, 1) : f.DASH, m.avg_confidence);
      const cov = f.isNum(m.feedback_count) && f.isNum(m.predictions_count) && m.predictions_count > 0
        ? `${Math.round((m.feedback_count / m.predictions_count) * 100)} %` : "";
      stats.feedback.set(f.count(m.feedback_count), m.feedback_count, cov);
      const updated = typeof m.last_updated === "string" ? Date.parse(m.last_updated) / 1000 : m.last_updated;
      // A model without predictions in the window is idle: say since when, not "just now".
      const idle = !(m.predictions_count > 0);
      root.dataset.idle = idle ? "1" : "0";
      root.classList.toggle("is-idle", idle);
      if (idle) {
        const last = m.last_prediction_at;
        stats.updated.set(f.isNum(last) ? `idle since ${f.dateTime(last)}` : "idle", null);
      } else {
        stats.updated.set(f.isNum(updated) ? f.ago(updated) : f.DASH, null);
      }
    },
  };
}
