/**
 * Number and time formatting. Fixed `en-US` grouping so the page reads the same for every
 * visitor (and tests can reason about it); raw values stay in `data-value`.
 */

const nf = (digits) => new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const cache = new Map();
function fixed(value, digits) {
  if (!cache.has(digits)) cache.set(digits, nf(digits));
  return cache.get(digits).format(value);
}

/** @param {any} v */
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export const DASH = "—";

/** A count: 12,345 or 1.2M for large values. */
export function count(v) {
  if (!isNum(v)) return DASH;
  if (Math.abs(v) >= 1e7) return `${fixed(v / 1e6, 1)}M`;
  return fixed(v, Number.isInteger(v) ? 0 : 1);
}

/** A value with adaptive precision: 3 significant digits under 100, else 1 decimal. */
export function num(v) {
  if (!isNum(v)) return DASH;
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000) return fixed(v, 0);
  if (a >= 100) return fixed(v, 1);
  if (a >= 10) return fixed(v, 2);
  if (a >= 1) return fixed(v, 3);
  return v.toPrecision(3);
}

/** Milliseconds: 0.42 ms, 8.3 ms, 212 ms, 1.84 s. */
export function ms(v) {
  if (!isNum(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 10000) return `${fixed(v / 1000, 1)} s`;
  if (a >= 1000) return `${fixed(v / 1000, 2)} s`;
  if (a >= 100) return `${fixed(v, 0)} ms`;
  if (a >= 10) return `${fixed(v, 1)} ms`;
  return `${fixed(v, 2)} ms`;
}

/** A bare millisecond number without unit (for bounds such as "208–217"). */
export function msBare(v) {
  return ms(v).replace(/ ms$/, "");
}

/** A percentage: 12.34 %. */
export function pct(v, digits = 2) {
  return isNum(v) ? `${fixed(v, digits)} %` : DASH;
}

/** A signed percentage: +12.3 %. */
export function signedPct(v, digits = 1) {
  if (!isNum(v)) return DASH;
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${fixed(Math.abs(v), digits)} %`;
}

/** Per-minute rate: 123.4 /min. */
export function rate(v) {
  return isNum(v) ? fixed(v, v >= 100 ? 0 : 1) : DASH;
}

/** A ratio in [0,1] as a percentage. */
export function ratio(v) {
  return isNum(v) ? pct(v * 100, 1) : DASH;
}

/** Megabytes. */
export function mb(v) {
  return isNum(v) ? `${fixed(v, v >= 100 ? 0 : 1)} MB` : DASH;
}

/** A duration in seconds as "3d 4h", "5h 12m", "4m 10s". */
export function duration(sec) {
  if (!isNum(sec)) return DASH;
  const s = Math.max(0, Math.floor(sec));
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** "12 s ago" for an epoch in seconds. */
export function ago(epochSec, now = Date.now() / 1000) {
  if (!isNum(epochSec)) return DASH;
  const d = Math.max(0, now - epochSec);
  if (d < 5) return "just now";
  return `${duration(d).split(" ")[0]} ago`;
}

/** Local date and time of an epoch in seconds: "Nov 26, 14:03:07". */
export function dateTime(epochSec) {
  if (!isNum(epochSec)) return DASH;
  return new Date(epochSec * 1000).toLocaleString("en-US", {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
}

/** Labels object as "model=result, route=/predict". */
export function labels(obj) {
  if (!obj || typeof obj !== "object") return "";
  return Object.entries(obj).map(([k, v]) => `${k}=${v}`).join(", ");
}

/** An axis tick: at most 3 significant digits, no trailing zeros, k/M for large values. */
export function axis(v) {
  if (!isNum(v)) return "";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return String(Math.round(v));
  return String(+v.toPrecision(3));
}

/**
 * A percentile's bounds as "208–217" (ms) or "2.48 s–2.59 s", with just enough decimals
 * that the two ends differ when they do.
 */
export function msRange(lo, hi) {
  if (!isNum(lo) || !isNum(hi)) return "";
  const inSeconds = Math.max(Math.abs(lo), Math.abs(hi)) >= 1000;
  const scale = inSeconds ? 1000 : 1;
  const unit = inSeconds ? " s" : "";
  const base = inSeconds ? 2 : Math.abs(hi) >= 100 ? 0 : Math.abs(hi) >= 10 ? 1 : 2;
  for (let d = base; d <= base + 3; d++) {
    const a = fixed(lo / scale, d), b = fixed(hi / scale, d);
    if (a !== b || lo === hi) return `${a}${unit}–${b}${unit}`;
  }
  return `${fixed(lo / scale, base + 3)}${unit}–${fixed(hi / scale, base + 3)}${unit}`;
}
