/**
 * The backend's HTTP API and its live stream.
 *
 * The page is served by the backend itself, so every path is resolved against the page's
 * own URL (`document.baseURI`): the page works at `/` and behind a reverse proxy that
 * mounts mlpulse under a prefix such as `/mlpulse/`.
 */

const TOKEN_KEY = "mlpulse.token";

/** An HTTP error with the status and the server's `detail`, if any. */
export class ApiError extends Error {
  /** @param {number} status @param {string} message @param {any} [detail] the body's `detail` */
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

/**
 * Resolve an API path ("metrics/current") with query parameters against the page's base.
 * @param {string} path
 * @param {Record<string, any>} [params]
 */
export function url(path, params) {
  const u = new URL(path.replace(/^\//, ""), document.baseURI);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    u.searchParams.set(k, String(v));
  }
  return u.toString();
}

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText}`;
  let detail;
  try {
    const body = await res.json();
    detail = body && (body.detail ?? body.error ?? body.message);
    if (typeof detail === "string") message = detail;
    else if (Array.isArray(detail)) message = detail.map((d) => (d.field ? `${d.field}: ${d.msg}` : d.msg) || JSON.stringify(d)).join("; ");
    else if (detail) message = JSON.stringify(detail);
  } catch { /* not JSON */ }
  return new ApiError(res.status, message, detail);
}

async function fetchJSON(href, signal) {
  const res = await fetch(href, { headers: { Accept: "application/json" }, signal, cache: "no-store" });
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}

/** Requests started ahead (boot.js), by URL; each is handed out once, while fresh. */
const prefetched = new Map();
const PREFETCH_TTL_MS = 10_000;

/**
 * Start a GET now; the first `getJSON` of the same URL within PREFETCH_TTL_MS takes its
 * answer instead of asking again. Returns the answer's promise.
 * @param {string} path
 * @param {Record<string, any>} [params]
 */
export function prefetchJSON(path, params) {
  const href = url(path, params);
  let entry = prefetched.get(href);
  if (!entry) {
    entry = { promise: fetchJSON(href), at: Date.now() };
    entry.promise.catch(() => { /* the taker sees the error */ });
    prefetched.set(href, entry);
  }
  return entry.promise;
}

/** Most requests per batch (the backend's `BATCH_MAX`). */
const BATCH_MAX = 40;

/**
 * Start several GETs in one round trip (`GET dashboard/batch`): each answer is then taken
 * by the first `getJSON` of its URL, exactly as with `prefetchJSON`. A first load makes
 * ~20 requests; one origin gets six browser connections, so one request instead of twenty
 * saves rounds of queueing. When the batch itself fails, each request is fetched alone.
 * @param {Array<[string, Record<string, any>|undefined]>} requests [path, params] pairs
 * @returns {Promise<any>[]} the answers' promises, in order
 */
export function prefetchBatch(requests) {
  const todo = [];
  const promises = requests.map(([path, params]) => {
    const href = url(path, params);
    let entry = prefetched.get(href);
    if (!entry) {
      let settle;
      const promise = new Promise((resolve, reject) => { settle = { resolve, reject }; });
      promise.catch(() => { /* the taker sees the error */ });
      entry = { promise, at: Date.now() };
      prefetched.set(href, entry);
      todo.push({ href, settle });
    }
    return entry.promise;
  });
  for (let i = 0; i < todo.length; i += BATCH_MAX) runBatch(todo.slice(i, i + BATCH_MAX));
  return promises;
}

/** @param {Array<{href: string, settle: {resolve: (v: any) => void, reject: (e: any) => void}}>} items */
async function runBatch(items) {
  const base = new URL(".", document.baseURI).toString();
  const batch = new URL("dashboard/batch", document.baseURI);
  for (const { href } of items) batch.searchParams.append("get", href.startsWith(base) ? href.slice(base.length) : href);
  let answers;
  try {
    const doc = await fetchJSON(batch.toString());
    answers = doc.responses;
    if (!Array.isArray(answers) || answers.length !== items.length) throw new Error("batch: wrong answer count");
  } catch {
    // An older backend, a proxy that refuses long URLs: ask one by one.
    for (const { href, settle } of items) fetchJSON(href).then(settle.resolve, settle.reject);
    return;
  }
  items.forEach(({ settle }, i) => {
    const { status, body } = answers[i] || {};
    if (status >= 200 && status < 300) { settle.resolve(body); return; }
    const detail = body && (body.detail ?? body.error ?? body.message);
    const message = typeof detail === "string" ? detail : `${status}`;
    settle.reject(new ApiError(status, message, detail));
  });
}

/** Forget the prefetched answers nobody took (the first load is done: they are stale). */
export function dropPrefetched() {
  prefetched.clear();
}

/**
 * GET a JSON document (or take the prefetched answer for the same URL).
 * @param {string} path
 * @param {Record<string, any>} [params]
 * @param {AbortSignal} [signal]
 */
export async function getJSON(path, params, signal) {
  const href = url(path, params);
  const entry = prefetched.get(href);
  if (entry) {
    prefetched.delete(href);
    if (Date.now() - entry.at < PREFETCH_TTL_MS) return entry.promise;
  }
  return fetchJSON(href, signal);
}

/** The token kept for this browser tab, or null. */
export function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

/** Forget the token (after a 401). */
export function forgetToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
}

/** @type {(() => Promise<string|null>)|null} */
let tokenPrompt = null;

/**
 * Register the function that asks the user for the bearer token (a dialog in the page).
 * @param {() => Promise<string|null>} fn
 */
export function setTokenPrompt(fn) { tokenPrompt = fn; }

async function ensureToken(force = false) {
  let token = force ? null : storedToken();
  if (!token && tokenPrompt) {
    token = await tokenPrompt();
    if (token) {
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* private mode */ }
    }
  }
  return token;
}

/**
 * Send a state-changing request with the bearer token. Asks for the token once per tab
 * (kept in sessionStorage); on 401/403 asks again once.
 * @param {"GET"|"POST"|"PUT"|"DELETE"|"PATCH"} method
 * @param {string} path
 * @param {any} [body]
 * @param {{ask?: boolean}} [opts] `ask: false` uses the stored token only, never a dialog
 */
export async function send(method, path, body, { ask = true } = {}) {
  for (let attempt = 0; attempt < (ask ? 2 : 1); attempt++) {
    const token = ask ? await ensureToken(attempt > 0) : storedToken();
    if (!token) throw new ApiError(401, "An API token is needed for this action.");
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
    if (res.status === 401 || res.status === 403) {
      forgetToken();
      if (attempt === 0) continue;
    }
    if (!res.ok) throw await errorFrom(res);
    const type = res.headers.get("content-type") || "";
    return type.includes("json") ? res.json() : res.text();
  }
  throw new ApiError(401, "The API token was refused.");
}

export const post = (path, body) => send("POST", path, body);

/**
 * The live connection: Server-Sent Events from `GET /events`, with reconnects and a
 * polling fallback.
 *
 * While the stream is open, `onEvent(type, data)` fires for `ingest`, `alert` and `resync`
 * (the server dropped events this page was too slow to take: re-fetch). `params()` gives
 * what the page wants pushed with each `ingest` (`{snapshot: 1, range, step}`); call
 * `reconnect()` when they change. When the stream drops, the browser's own retry runs; if
 * it stays down (or the server refuses it) `onPoll()` runs every `pollMs` until the stream
 * is back, and reconnects are retried with backoff. `onState(state)` reports
 * "connecting" | "live" | "polling" | "offline".
 *
 * @example
 *   const live = new LiveStream({ onEvent: (t, d) => ..., onPoll: refresh, onState: show,
 *                                 params: () => ({ snapshot: 1, range: 3600, step: 30 }) });
 *   live.start();
 */
export class LiveStream {
  /**
   * @param {{onEvent:(type:string,data:any)=>void, onPoll:()=>Promise<any>|void,
   *          onState:(state:string)=>void, path?:string, pollMs?:number,
   *          params?:()=>Record<string, any>}} opts
   */
  constructor(opts) {
    this.opts = { path: "events", pollMs: 5000, params: () => ({}), ...opts };
    this.connectedWith = "";
    this.source = null;
    this.pollTimer = null;
    this.retryTimer = null;
    this.retryDelay = 1000;
    this.state = "";
    this.lastMessageAt = 0;
  }

  start() {
    this.connect();
  }

  /** Reconnect if `params()` changed since the stream opened (a new range or step). */
  reconnect() {
    if (!this.source || url(this.opts.path, this.opts.params()) === this.connectedWith) return;
    this.connect();
  }

  stop() {
    this.source?.close();
    this.source = null;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    this.pollTimer = this.retryTimer = null;
  }

  /** @param {string} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.opts.onState(state);
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.source) this.source.close();
    if (this.state !== "polling") this.setState("connecting");
    let source;
    try {
      this.connectedWith = url(this.opts.path, this.opts.params());
      source = new EventSource(this.connectedWith);
    } catch {
      this.fallBack();
      return;
    }
    this.source = source;
    source.addEventListener("open", () => {
      this.retryDelay = 1000;
      this.stopPolling();
      this.setState("live");
    });
    for (const type of ["ingest", "snapshot", "alert", "resync"]) {
      source.addEventListener(type, (ev) => {
        this.lastMessageAt = Date.now();
        let data = null;
        try { data = JSON.parse(/** @type {MessageEvent} */ (ev).data); } catch { /* keep null */ }
        this.opts.onEvent(type, data);
      });
    }
    source.addEventListener("error", () => {
      // CLOSED: the browser gave up (an HTTP error): reconnect ourselves, with backoff.
      // CONNECTING: the browser retries by itself. Either way, poll until "open".
      if (source.readyState === EventSource.CLOSED) this.fallBack();
      else this.startPolling();
    });
  }

  fallBack() {
    this.source?.close();
    this.source = null;
    this.startPolling();
    this.retryTimer = setTimeout(() => this.connect(), this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 30000);
  }

  startPolling() {
    this.setState("polling");
    if (this.pollTimer) return;
    const tick = () => { try { this.opts.onPoll(); } catch { /* shown by the panels */ } };
    tick();
    this.pollTimer = setInterval(tick, this.opts.pollMs);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }
}
