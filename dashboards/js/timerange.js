/**
 * What the page shows: the time range — a relative one ("last 1 h", follows now) or a
 * fixed custom one — and the scope: all services, one service, or one of its instances.
 * Listeners hear every change; the step gives roughly 150–400 points on a chart. Both
 * live in the URL (`#dashboard?range=3600&service=mlapi&instance=i-2`).
 */

export const PRESETS = [
  { seconds: 900, label: "last 15 minutes" },
  { seconds: 3600, label: "last hour" },
  { seconds: 21600, label: "last 6 hours" },
  { seconds: 86400, label: "last 24 hours" },
  { seconds: 604800, label: "last 7 days" },
];

// Steps line up with the backend's stored resolutions (10 s, 1 min, 1 h).
const STEPS = [10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400];

/** A step (seconds) giving at most ~150 points over `span` seconds (at least 10 s). */
export function stepFor(span) {
  const wanted = span / 150;
  return STEPS.find((s) => s >= wanted) ?? STEPS[STEPS.length - 1];
}

/**
 * Set `range` from the page's URL hash (`#dashboard?range=900&compare=1`, or `from`/`to`;
 * `service` and `instance` for the scope).
 * @param {TimeRange} range
 * @param {string} hash
 */
export function readHash(range, hash) {
  const q = new URLSearchParams(hash.split("?")[1] || "");
  range.service = (q.get("service") || "").slice(0, 1024);
  range.instance = range.service ? (q.get("instance") || "").slice(0, 1024) : "";
  const from = Number(q.get("from")), to = Number(q.get("to")), rel = Number(q.get("range"));
  if (from > 0 && to > from) {
    range.relative = null;
    range.customFrom = from;
    range.customTo = to;
  } else if (rel > 0) {
    range.relative = rel;
  }
  range.compare = q.get("compare") === "1";
}

export class TimeRange {
  constructor(seconds = 3600) {
    /** @type {number|null} seconds of a relative range, null when custom */
    this.relative = seconds;
    this.customFrom = 0;
    this.customTo = 0;
    this.compare = false;
    /** the selected service ("" = all services) and instance ("" = all its instances) */
    this.service = "";
    this.instance = "";
    /** @type {Array<() => void>} */
    this.listeners = [];
  }

  /** @param {() => void} fn */
  onChange(fn) { this.listeners.push(fn); }

  emit() { for (const fn of this.listeners) fn(); }

  /** @param {number} seconds */
  setRelative(seconds) {
    this.relative = seconds;
    this.emit();
  }

  /** @param {number} from epoch s @param {number} to epoch s */
  setCustom(from, to) {
    if (!(to > from)) throw new Error("The end of the range must be after its start.");
    this.relative = null;
    this.customFrom = Math.floor(from);
    this.customTo = Math.ceil(to);
    this.emit();
  }

  /** @param {boolean} on */
  setCompare(on) {
    this.compare = on;
    this.emit();
  }

  /**
   * Show one service (or all with ""), optionally one of its instances.
   * @param {string} service @param {string} [instance]
   */
  setScope(service, instance = "") {
    this.service = service || "";
    this.instance = this.service ? instance || "" : "";
    this.emit();
  }

  /** The scope as API filters: `{service, instance}` without empty values. */
  filters() {
    const out = {};
    if (this.service) out.service = this.service;
    if (this.instance) out.instance = this.instance;
    return out;
  }

  /** "all services", "mlapi", "mlapi · instance i-2". */
  scopeLabel() {
    if (!this.service) return "all services";
    return this.instance ? `${this.service} · instance ${this.instance}` : this.service;
  }

  get isLive() { return this.relative !== null; }

  /** The current window as epoch seconds, `to` aligned up to the step. */
  window(now = Date.now() / 1000) {
    if (this.relative !== null) {
      const step = stepFor(this.relative);
      const to = Math.ceil(now / step) * step;
      return { from: to - this.relative, to, step, span: this.relative };
    }
    const span = this.customTo - this.customFrom;
    return { from: this.customFrom, to: this.customTo, step: stepFor(span), span };
  }

  /** A human label for the range. */
  label() {
    if (this.relative !== null) {
      return PRESETS.find((p) => p.seconds === this.relative)?.label ?? `last ${this.relative} s`;
    }
    const fmt = (t) => new Date(t * 1000).toLocaleString("en-US", {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
    });
    return `${fmt(this.customFrom)} → ${fmt(this.customTo)}`;
  }
}
