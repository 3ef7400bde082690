/**
 * Charts: uPlot time series, a bar chart for histogram buckets, and an SVG gauge.
 *
 * A chart is created once per panel and then fed with `setData()`; live updates replace the
 * data arrays (uPlot redraws without rebuilding the DOM). Colors come from the CSS custom
 * properties of the current theme; on a theme switch the owner rebuilds the charts.
 */

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h, svg, replace } from "./dom.js";
import { isNum } from "./format.js";

/** Read a CSS custom property of the root element. */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** The chart palette of the current theme: twelve colours told apart at a glance. */
export function palette() {
  return Array.from({ length: 12 }, (_, i) => cssVar(`--c${i + 1}`));
}

/** Add alpha to a #rrggbb color. */
export function alpha(hex, a) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex);
  if (!m) return hex;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

const sync = uPlot.sync("mlpulse-time");

// Formatters made once: `toLocale*String` with options builds a new formatter per call,
// which cost ~20 ms per cold load across the charts' axis labels.
const DAY_FMT = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric" });
const HM_FMT = new Intl.DateTimeFormat("en-US", { hour: "2-digit", minute: "2-digit", hour12: false });
const STAMP_FMT = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

/** "Nov 26, 14:05:07", as the legend and the annotations show a time. @param {number} epoch seconds */
export function stamp(epoch) {
  return STAMP_FMT.format(new Date(epoch * 1000));
}

/** Time axis labels: "14:05", with the date only where the day changes ("Nov 26"). */
function timeAxisValues(u, splits, axisIdx, foundSpace, foundIncr) {
  let lastDay = "";
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const day = DAY_FMT.format(d);
    const hm = HM_FMT.format(d);
    const label = foundIncr >= 86400 ? day : day !== lastDay && lastDay !== "" ? `${hm}\n${day}` : hm;
    lastDay = day;
    return label;
  });
}

function axisStyle() {
  const grid = cssVar("--grid");
  const text = cssVar("--muted");
  const font = `11px ${cssVar("--font-sans") || "system-ui"}`;
  return {
    stroke: text,
    font,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1, size: 4 },
  };
}

/**
 * A time series chart whose series may change (a new model, a comparison overlay).
 *
 * @example
 *   const c = new TimeChart(el, { format: (v) => v.toFixed(1) });
 *   c.update([{ label: "mlapi" }], [xs, ys], [from, to]);
 */
export class TimeChart {
  /**
   * @param {HTMLElement} container
   * @param {{format?: (v:number)=>string, axisFormat?: (v:number)=>string, height?: number,
   *          yMin?: number, yMax?: number, logWhenSpread?: boolean}} opts
   */
  constructor(container, opts) {
    this.container = container;
    this.opts = opts;
    /** @type {Array<{label:string, color?:string, colorIndex?:number, dash?:number[], fill?:boolean, width?:number}>} */
    this.defs = [];
    this.data = [[]];
    this.xRange = null;
    this.plot = null;
    this.signature = null;
    /** @type {Array<{t: number, v: number, href: string, title: string}>} */
    this.markers = [];
    /** @type {Array<{at: number, end?: number|null, kind: string, title: string, text: string}>} */
    this.annotations = [];
    this.log = false;
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(container);
    // The uPlot instance is made with the first data (`update`): made empty first, it
    // would be made again when the series arrive, and a cold load pays for both.
  }

  build() {
    this.plot?.destroy();
    this.markersKey = null; // a new plot has an empty marker layer
    const colors = palette();
    const fmt = this.opts.format || ((v) => String(v));
    const axis = axisStyle();
    const series = [
      { value: (u, v) => (v == null ? "—" : stamp(v)) },
      ...this.defs.map((s, i) => {
        const color = s.color ? cssVar(s.color) || s.color : colors[(s.colorIndex ?? i) % colors.length];
        return {
          label: s.label,
          stroke: s.dash ? alpha(color, 0.6) : color,
          width: s.width ?? 1.75,
          dash: s.dash,
          fill: s.fill ? alpha(color, 0.1) : undefined,
          points: { show: (u, si) => countValues(u.data[si]) < 3, size: 5 },
          spanGaps: false,
          // Off the chart (idx null) the legend shows the newest value, like a stat.
          value: (u, v, si, idx) => {
            const shown = idx == null ? lastValue(u.data[si]) : v;
            return shown == null ? "—" : fmt(shown);
          },
        };
      }),
    ];
    const { yMin, yMax } = this.opts;
    const axisFmt = this.opts.axisFormat || fmt;
    this.plot = new uPlot({
      width: Math.max(200, this.container.clientWidth),
      height: this.opts.height || 220,
      series,
      cursor: { sync: { key: sync.key }, focus: { prox: 24 }, points: { size: 6 } },
      focus: { alpha: 0.35 },
      legend: { live: true },
      scales: {
        x: {
          time: true,
          range: (u, min, max) => (this.xRange ? [this.xRange[0], this.xRange[1]] : [min ?? 0, max ?? 1]),
        },
        y: this.log ? {
          distr: 3,
          log: 10,
          range: (u, min, max) => uPlot.rangeLog(isNum(min) && min > 0 ? min : 1e-3, isNum(max) && max > 0 ? max : 1, 10, true),
        } : {
          range: (u, min, max) => {
            const lo = isNum(yMin) ? yMin : Math.min(0, isNum(min) ? min : 0);
            let hi = isNum(yMax) ? yMax : isNum(max) ? max : 1;
            for (const m of this.markers) if (!isNum(yMax) && m.v > hi) hi = m.v;
            if (!(hi > lo)) hi = lo + 1;
            return [lo, isNum(yMax) ? hi : hi + (hi - lo) * 0.1];
          },
        },
      },
      axes: [
        { ...axis, values: timeAxisValues },
        this.log ? {
          // A log axis: labels, ticks and grid lines at the decades only.
          ...axis, size: 60, values: (u, vals) => vals.map((v) => (v == null ? "" : axisFmt(v))),
          filter: decades, grid: { ...axis.grid, filter: decades }, ticks: { ...axis.ticks, filter: decades },
        } : { ...axis, size: 60, values: (u, vals) => vals.map((v) => axisFmt(v)) },
      ],
      hooks: { draw: [(u) => this.placeMarkers(u)] },
    }, this.data, this.container);
    this.markerLayer = h("div", { class: "marker-layer" });
    this.plot.over.append(this.markerLayer);
    this.placeMarkers(this.plot);
  }

  /**
   * Show exemplar markers (links) on the plot, e.g. slow requests linking to their trace.
   * @param {Array<{t: number, v: number, href: string, title: string}>} markers
   */
  setMarkers(markers) {
    this.markers = markers;
    this.container.dataset.exemplars = String(markers.length);
    if (this.plot) this.plot.setData(this.data); // rescale y for markers above the lines
  }

  /**
   * Show annotations (vertical lines with a flag; hover tells what happened).
   * @param {Array<{at: number, end?: number|null, kind: string, title: string, text: string}>} list
   */
  setAnnotations(list) {
    this.annotations = list || [];
    this.container.dataset.annotations = String(this.annotations.length);
    if (this.plot) this.placeMarkers(this.plot);
  }

  /** Position the marker links and annotations over the plot (after each draw). */
  placeMarkers(u) {
    if (!this.markerLayer) return;
    const [x0, x1] = [u.scales.x.min, u.scales.x.max];
    // Each live update redraws the plot; the markers rarely move then. Rebuilding their
    // elements anyway cost a style and layout pass per chart and update.
    const key = JSON.stringify([x0, x1, u.bbox.width, u.bbox.height, this.annotations, this.markers,
      this.markers.length ? [u.scales.y.min, u.scales.y.max] : null]);
    if (key === this.markersKey) return;
    this.markersKey = key;
    const dots = [];
    for (const a of this.annotations) {
      if (!(a.at >= x0 && a.at <= x1)) continue;
      const when = stamp(a.at);
      const tip = `${a.title} — ${when}${a.text ? `\n${a.text}` : ""}`;
      const line = h("div", {
        class: `annotation annotation--${a.kind}`, title: tip, tabindex: "0", role: "img", "aria-label": tip,
        "data-annotation": a.kind, "data-at": a.at,
      }, h("span", { class: "annotation-flag" }));
      line.style.left = `${u.valToPos(a.at, "x")}px`;
      if (isNum(a.end) && a.end > a.at) {
        const right = u.valToPos(Math.min(a.end, x1), "x");
        line.style.width = `${Math.max(1, right - u.valToPos(a.at, "x"))}px`;
        line.classList.add("annotation--span");
      }
      dots.push(line);
    }
    for (const m of this.markers) {
      if (!(m.t >= x0 && m.t <= x1)) continue;
      const a = h("a", {
        class: "marker", href: m.href, target: "_blank", rel: "noopener noreferrer",
        title: m.title, "aria-label": m.title, "data-trace-marker": "",
      });
      a.style.left = `${u.valToPos(m.t, "x")}px`;
      a.style.top = `${u.valToPos(m.v, "y")}px`;
      dots.push(a);
    }
    this.markerLayer.replaceChildren(...dots);
  }

  /** Rebuild with fresh theme colors. */
  rebuild() { if (this.plot) this.build(); }

  resize() {
    if (!this.plot) return;
    const width = Math.max(200, this.container.clientWidth);
    if (Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: this.plot.height });
  }

  /**
   * Show `defs` series with `data` (`[xs, ys...]`, x in epoch seconds) over `xRange`.
   * The uPlot instance is kept when the set of series is unchanged (live appends).
   */
  update(defs, data, xRange) {
    this.xRange = xRange || null;
    // Series whose sizes differ by more than 20× (a model's MAE in scans next to another's
    // in seconds) share a log axis when the chart allows it, so every trend stays visible.
    this.log = Boolean(this.opts.logWhenSpread) && spread(data) > 20;
    if (this.log) data = [data[0], ...data.slice(1).map((ys) => ys.map((v) => (v != null && v > 0 ? v : null)))];
    const signature = JSON.stringify([defs, this.log]);
    if (signature === this.signature && this.plot && sameColumns(data, this.data) && sameRange(xRange, this.drawnRange)) {
      return; // a live update that changed nothing here: a redraw would cost a frame's work
    }
    this.data = data;
    this.drawnRange = this.xRange;
    if (signature !== this.signature || !this.plot) {
      this.signature = signature;
      this.defs = defs;
      this.build();
    } else {
      this.plot.setData(data);
    }
  }

  /** Number of points with a value (tests and empty states read it). */
  pointCount() {
    return this.data.slice(1).reduce((n, ys) => n + countValues(ys), 0);
  }

  destroy() {
    this.resizeObs.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}

/** Keep the splits of a log axis that are powers of ten. */
function decades(u, splits) {
  return splits.map((v) => (v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9 ? v : null));
}

/** Ratio of the largest to the smallest typical (median) series value; 1 when unknown. */
function spread(data) {
  const medians = data.slice(1).map((ys) => {
    const vs = ys.filter((v) => v != null && v > 0).sort((a, b) => a - b);
    return vs.length ? vs[Math.floor(vs.length / 2)] : null;
  }).filter((v) => v != null);
  if (medians.length < 2) return 1;
  return Math.max(...medians) / Math.min(...medians);
}

function lastValue(ys) {
  for (let i = (ys || []).length - 1; i >= 0; i--) if (ys[i] != null) return ys[i];
  return null;
}

/** Set an attribute unless it already has that value (no style invalidation then). */
function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** Whether two uPlot column sets hold the same values. */
function sameColumns(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let c = 0; c < a.length; c++) {
    const x = a[c], y = b[c];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

/** Whether two x ranges (`[from, to]` or null) are the same. */
function sameRange(a, b) {
  return a === b || (Boolean(a) && Boolean(b) && a[0] === b[0] && a[1] === b[1]);
}

function countValues(ys) {
  let n = 0;
  for (const v of ys || []) if (v != null) n++;
  return n;
}

/**
 * A bar chart over categories (histogram buckets): x is the bucket index, labels name them.
 */
export class BarChart {
  /**
   * @param {HTMLElement} container
   * @param {{label: string, color?: string, height?: number, format?: (v:number)=>string}} opts
   */
  constructor(container, opts) {
    this.container = container;
    this.opts = opts;
    this.labels = [];
    this.data = [[], []];
    this.plot = null; // made with the first data (`setData`), as TimeChart's
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(container);
  }

  build() {
    this.plot?.destroy();
    const color = this.opts.color ? cssVar(this.opts.color) : palette()[0];
    const axis = axisStyle();
    const fmt = this.opts.format || ((v) => String(v));
    this.plot = new uPlot({
      width: Math.max(200, this.container.clientWidth),
      height: this.opts.height || 220,
      series: [
        { label: "bucket", value: (u, v) => (v == null ? "—" : this.labels[v] ?? "") },
        {
          label: this.opts.label,
          stroke: color,
          fill: alpha(color, 0.55),
          width: 1,
          points: { show: false },
          paths: uPlot.paths.bars({ size: [0.82, 64], gap: 1 }),
          // Off the chart the legend shows the total; on a bar, that bucket's count.
          value: (u, v, si, idx) => {
            if (idx == null) return `${fmt((u.data[si] || []).reduce((a, b) => a + (b || 0), 0))} total`;
            return v == null ? "—" : fmt(v);
          },
        },
      ],
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      legend: { live: true },
      scales: {
        x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] },
        y: { range: (u, min, max) => [0, (max || 1) * 1.1] },
      },
      axes: [
        {
          ...axis,
          values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? this.labels[v] ?? "" : "")),
          space: 56,
        },
        { ...axis, size: 48, values: (u, vals) => vals.map((v) => fmt(v)) },
      ],
    }, this.data, this.container);
  }

  resize() {
    if (!this.plot) return;
    const width = Math.max(200, this.container.clientWidth);
    if (Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: this.plot.height });
  }

  /** Rebuild with fresh theme colors. */
  rebuild() { if (this.plot) this.build(); }

  /**
   * @param {string[]} labels bucket labels
   * @param {number[]} values bucket counts
   */
  setData(labels, values) {
    this.labels = labels;
    this.data = [labels.map((_, i) => i), values];
    if (this.plot) this.plot.setData(this.data);
    else this.build();
  }

  pointCount() {
    return this.data[1].filter((v) => v).length;
  }

  destroy() {
    this.resizeObs.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}

/**
 * A half-circle gauge for a percentage, drawn in SVG.
 * Thresholds color the arc: below `bad` red, below `warn` amber, else green.
 */
export class Gauge {
  /**
   * @param {HTMLElement} container
   * @param {{warn: number, bad: number, label: string}} opts
   */
  constructor(container, opts) {
    this.opts = opts;
    const r = 80, cx = 100, cy = 100;
    this.len = Math.PI * r;
    const arc = `M ${cx - r} ${cy} A ${r} ${r} 0 0 1 ${cx + r} ${cy}`;
    this.track = svg("path", { d: arc, class: "gauge-track" });
    this.bar = svg("path", { d: arc, class: "gauge-bar", "stroke-dasharray": `0 ${this.len}` });
    // Threshold ticks at `bad` and `warn`.
    const tick = (p) => {
      const a = Math.PI * (1 - p / 100);
      // A short mark just outside the arc: the alert thresholds, read like a scale.
      const x1 = cx + (r + 12) * Math.cos(a), y1 = cy - (r + 12) * Math.sin(a);
      const x2 = cx + (r + 18) * Math.cos(a), y2 = cy - (r + 18) * Math.sin(a);
      return svg("line", { x1, y1, x2, y2, class: "gauge-tick" }, svg("title", {}, `${p} %`));
    };
    this.value = h("div", { class: "gauge-value", "data-role": "value" }, "—");
    this.caption = h("div", { class: "gauge-caption" }, opts.label);
    replace(container,
      h("div", { class: "gauge" },
        svg("svg", { viewBox: "0 0 200 124", class: "gauge-svg", role: "img", "aria-label": opts.label },
          this.track, this.bar, tick(opts.bad), tick(opts.warn),
          svg("text", { x: 20, y: 123, class: "gauge-scale", "text-anchor": "middle" }, "0"),
          svg("text", { x: 180, y: 123, class: "gauge-scale", "text-anchor": "middle" }, "100")),
        h("div", { class: "gauge-readout" }, this.value, this.caption)));
  }

  /**
   * @param {number|null} percent
   * @param {string} text
   */
  set(percent, text) {
    const p = isNum(percent) ? Math.max(0, Math.min(100, percent)) : 0;
    const level = !isNum(percent) ? "none" : percent < this.opts.bad ? "bad" : percent < this.opts.warn ? "warn" : "ok";
    // Only what changed: every live update sets the gauge, mostly to what it shows.
    setAttr(this.bar, "stroke-dasharray", `${(this.len * p) / 100} ${this.len}`);
    setAttr(this.bar, "class", `gauge-bar gauge-bar--${level}`);
    if (this.value.textContent !== text) this.value.textContent = text;
    if (isNum(percent)) this.value.dataset.value = String(percent);
    else delete this.value.dataset.value;
  }
}
