"""B4 live latency: ingest committed → the dashboard in Chromium has the update.

A backend (prefilled with a stretch of the realistic payload so the page's refresh
queries do real work) serves the dashboard to headless Chromium. An init script wraps the
page's own `EventSource` (before dashboards/js/api.js creates it) to timestamp each
`ingest` event on arrival, and watches `body[data-live-updates]`, which
dashboards/js/main.js increments when a live update (snapshot numbers + the newest chart
steps, taken from the event when it carries them, else fetched) has been drawn; the next
animation frame after it counts as painted. `body[data-live-source]` says which way
(`push` or `fetch`); the whole-range views, lazy by design, are not waited for.
Times in the page are `performance.timeOrigin + performance.now()` (epoch ms, sub-ms);
the backend's `committed_at` is `time.time()` after the commit, both on the same clock.

Then one mlapi instance (200 series, real SDK + encoder) exports with the current time;
each export waits until the page has finished the refresh of the previous one, plus
200-400 ms (a refresh already running when the event arrives would be coalesced, and
its remaining time would add to the latency).
Three latencies per export: commit → event received by the page (SSE path), commit →
refresh finished (data applied to the charts), commit → next frame painted; and the
server's part split from the event's own stamps (`computed_at`, `published_at`): the
push computation, then its delivery (broker → event loop → socket → the page's listener).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from bench._common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Skip,
    backend_child,
    fig,
    free_port,
    percentile,
    rnd,
)
from bench._otlp import Poster
from bench._payload import Instance

TITLE = "Live latency: ingest commit → dashboard updated (Chromium)"

HOOK = """
(() => {
  const b = (window.__bench = { events: [], updates: [], snapshots: [] });
  performance.setResourceTimingBufferSize(100000);  // the default keeps only 250 entries
  const now = () => performance.timeOrigin + performance.now();
  const Orig = window.EventSource;
  class Timed extends Orig {
    constructor(...args) {
      super(...args);
      super.addEventListener("ingest", (ev) => {
        const t = now();
        try {
          const d = JSON.parse(ev.data);
          b.events.push([d.committed_at * 1000, t, (d.computed_at ?? d.committed_at) * 1000,
            (d.published_at ?? d.computed_at ?? d.committed_at) * 1000]);
        } catch (e) {}
      });
    }
  }
  window.EventSource = Timed;
  document.addEventListener("DOMContentLoaded", () => {
    new MutationObserver(() => {
      const c = Number(document.body.dataset.liveSnapshotCommittedAt || 0) * 1000;
      const t = now();
      requestAnimationFrame(() => b.snapshots.push([c, t, now()]));
    }).observe(document.body, { attributes: true, attributeFilter: ["data-live-snapshots"] });
    new MutationObserver(() => {
      const n = Number(document.body.dataset.liveUpdates || 0);
      const t = now();
      const source = document.body.dataset.liveSource || "";
      requestAnimationFrame(() => b.updates.push([n, t, now(), source]));
    }).observe(document.body, { attributes: true, attributeFilter: ["data-live-updates"] });
  });
})();
"""


LIVE_REQUESTS = """
(t0) => performance.getEntriesByType("resource")
  .filter((e) => e.startTime >= t0 && !e.name.includes("/events"))
  .map((e) => {
    const u = new URL(e.name);
    const metric = u.searchParams.get("metric");
    return [u.pathname + (metric ? " " + metric : ""), e.responseEnd - e.startTime];
  })
"""


def _requests_table(entries: list[list[Any]], refreshes: int) -> list[list[Any]]:
    by: dict[str, list[float]] = {}
    for name, dur in entries:
        by.setdefault(name, []).append(dur)
    rows: list[list[Any]] = [
        [name, len(v) / max(refreshes, 1), percentile(v, 50), percentile(v, 99)]
        for name, v in by.items()
    ]
    rows.sort(key=lambda r: -(r[2] or 0))
    return rows


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    if not Path(CHROMIUM).is_file():
        raise Skip(f"Chromium not found at {CHROMIUM}: scripts/install-system-deps.sh")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]

    exports = 6 if quick else 120
    prefill = 4 if quick else 360  # 5 s windows before the live part (1 min / 30 min)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    inst = Instance("live-1", seed=5, per_window=20, started=time.time() - 7200)
    now = time.time()
    sent: list[float] = []
    timeouts = 0
    with backend_child(workdir / "data", port, log=workdir / "backend.log"), sync_playwright() as p:
        poster = Poster(port)
        for w in range(prefill):
            status, _ = poster.post(inst.export(now - (prefill - w) * 5.0).SerializeToString())
            if status != 200:
                raise RuntimeError(f"prefill: {status}")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.add_init_script(HOOK)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            page.wait_for_selector("#conn[data-state=live]", timeout=30_000)
            page.wait_for_timeout(500)
            rng = random.Random(3)
            t_live = page.evaluate("() => performance.now()")
            for _ in range(exports):
                # The next export only once the page has finished the previous refresh (and
                # a pause), so a refresh already running never adds to the latency.
                before = page.evaluate("() => Number(document.body.dataset.liveUpdates || 0)")
                body = inst.export(time.time()).SerializeToString()
                status, _ = poster.post(body)
                if status != 200:
                    raise RuntimeError(f"export: {status}")
                sent.append(time.time())
                try:
                    page.wait_for_function(
                        f"() => Number(document.body.dataset.liveUpdates || 0) > {before}",
                        timeout=30_000,
                    )
                except Exception:  # counted below as an event without update
                    timeouts += 1
                page.wait_for_timeout(rng.uniform(200, 400))
            page.wait_for_timeout(500)
            b = page.evaluate("() => window.__bench")
            live_requests = page.evaluate(LIVE_REQUESTS, t_live)
        finally:
            browser.close()
            poster.close()
            inst.shutdown()

    events = sorted(b["events"])  # [committed_ms, received_ms, computed_ms, published_ms]
    updates = sorted(b["updates"], key=lambda u: u[1])  # [n, applied_ms, painted_ms]
    sse, applied, painted, numbers, wake, computed_sse = [], [], [], [], [], []
    snapshots = {round(c): p for c, _t, p in b["snapshots"]}  # committed ms -> painted ms
    computing, delivery, page = [], [], []
    handler, frame = [], []  # the page's part: applying the event, then the next frame
    for committed, received, computed, published in events:
        computing.append(published - computed)  # the newest steps of every charted signal
        delivery.append(received - published)  # broker → loop → socket → page's listener
        sse.append(received - committed)
        wake.append(computed - committed)  # the pusher's worker started computing
        computed_sse.append(received - computed)  # computing, publishing, delivering
        if round(committed) in snapshots:
            numbers.append(snapshots[round(committed)] - committed)
        nxt = next((u for u in updates if u[1] >= received), None)
        if nxt is not None:
            applied.append(nxt[1] - committed)
            painted.append(nxt[2] - committed)
            page.append(nxt[2] - received)
            handler.append(nxt[1] - received)
            frame.append(nxt[2] - nxt[1])
    missing = len(sent) - len(events)
    req_rows = _requests_table(live_requests, len(updates))
    figures = [
        fig("commit → chart updated and painted, p50", percentile(painted, 50), "ms"),
        fig("commit → chart updated and painted, p99", percentile(painted, 99), "ms", at_most=50),
        fig("commit → refresh applied (before paint), p50", percentile(applied, 50), "ms"),
        fig("commit → refresh applied (before paint), p99", percentile(applied, 99), "ms"),
        fig("commit → SSE event in the page, p50", percentile(sse, 50), "ms"),
        fig("commit → SSE event in the page, p99", percentile(sse, 99), "ms"),
        fig("commit → push computation started (server), p50", percentile(wake, 50), "ms"),
        fig("commit → push computation started (server), p99", percentile(wake, 99), "ms"),
        fig(
            "push computation started → SSE event in the page, p50",
            percentile(computed_sse, 50),
            "ms",
        ),
        fig(
            "push computation started → SSE event in the page, p99",
            percentile(computed_sse, 99),
            "ms",
        ),
        fig("push computation (server, newest steps), p50", percentile(computing, 50), "ms"),
        fig("push computation (server, newest steps), p99", percentile(computing, 99), "ms"),
        fig("event published → in the page (delivery), p50", percentile(delivery, 50), "ms"),
        fig("event published → in the page (delivery), p99", percentile(delivery, 99), "ms"),
        fig("event in the page → update applied (handler), p50", percentile(handler, 50), "ms"),
        fig("event in the page → update applied (handler), p99", percentile(handler, 99), "ms"),
        fig("update applied → next frame (page), p50", percentile(frame, 50), "ms"),
        fig("update applied → next frame (page), p99", percentile(frame, 99), "ms"),
        fig("commit → snapshot numbers updated and painted, p50", percentile(numbers, 50), "ms"),
        fig("commit → snapshot numbers updated and painted, p99", percentile(numbers, 99), "ms"),
        fig(
            "exports whose event never reached the page",
            float(max(missing, 0)),
            "exports",
            at_most=0,
            target="= 0",
        ),
    ]
    figures[-1]["ok"] = missing <= 0
    figures[-1].pop("ratio", None)
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": "Requests of the live refreshes: per refresh, duration p50 and p99 (ms)",
                "columns": ["request", "per refresh", "p50 ms", "p99 ms"],
                "rows": req_rows,
            }
        ],
        "notes": [
            *_notes(sent, events, updates, timeouts, prefill, sse, painted, req_rows),
            _split_note(wake, computing, delivery, page, handler, frame),
            _load_note(load_before),
        ],
        "details": {
            "refresh_timeouts": timeouts,
            "sse_ms": [rnd(x) for x in sse],
            "wake_ms": [rnd(x) for x in wake],
            "computed_to_page_ms": [rnd(x) for x in computed_sse],
            "applied_ms": [rnd(x) for x in applied],
            "painted_ms": [rnd(x) for x in painted],
            "computing_ms": [rnd(x) for x in computing],
            "delivery_ms": [rnd(x) for x in delivery],
            "handler_ms": [rnd(x) for x in handler],
            "frame_ms": [rnd(x) for x in frame],
        },
    }


def _notes(
    sent: list[float],
    events: list[Any],
    updates: list[Any],
    timeouts: int,
    prefill: int,
    sse: list[float],
    painted: list[float],
    req_rows: list[list[Any]],
) -> list[str]:
    sources: dict[str, int] = {}
    for u in updates:
        key = str(u[3]) if len(u) > 3 else "?"
        sources[key] = sources.get(key, 0) + 1
    notes = [
        f"{len(sent)} exports of 200 points each, {len(events)} `ingest` events received, "
        f"{len(updates)} live updates drawn (by source: "
        + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        + f"; {timeouts} waited > 30 s); prefilled "
        f"with {prefill} windows (5 s each) of the same instance; each export waits for "
        "the previous refresh to finish, then 200-400 ms.",
    ]
    p99 = percentile(painted, 99)
    if p99 is not None and p99 > 50 and sources.get("push", 0) >= len(updates) / 2:
        notes.append(
            f"What dominates: the page draws the pushed update without a request, so the "
            f"time is the server's: the event reaches the page {percentile(sse, 50):.0f} ms "
            f"(p50) / {percentile(sse, 99):.0f} ms (p99) after the commit, most of it "
            "computing the newest steps through the query layer; the snapshot numbers "
            "follow in their own event (commit → snapshot numbers above)."
        )
    elif p99 is not None and p99 > 50:
        slow = req_rows[0] if req_rows else None
        notes.append(
            f"What dominates: the event reaches the page in {percentile(sse, 50):.0f} ms "
            f"(p50), but the page then re-fetches before drawing — "
            f"{sum(r[1] for r in req_rows):.0f} requests per refresh, the slowest "
            + (f"{slow[0]} ({slow[2]:.0f} ms p50)" if slow else "—")
            + ", all served by the one backend process that also ingests. "
            "To reach < 50 ms p99: carry the update in the event (the new points of the "
            "charted signals, or the recomputed snapshot, computed once per commit on the "
            "server and pushed to every page) so the page draws without a round trip; "
            "failing that, make the tail queries read only the buckets after the page's "
            "last point."
        )
    return notes


def _split_note(
    wake: list[float],
    computing: list[float],
    delivery: list[float],
    page: list[float],
    handler: list[float],
    frame: list[float],
) -> str:
    """Where commit → painted goes, stage by stage (p50 / p99 of each)."""

    def both(v: list[float]) -> str:
        a, b = percentile(v, 50), percentile(v, 99)
        return "—" if a is None or b is None else f"{a:.1f} / {b:.1f} ms"

    return (
        "Commit → painted by stage (p50 / p99): the pusher's worker starts "
        f"{both(wake)} after the commit; computing the newest steps of every charted "
        f"signal takes {both(computing)}; the event then reaches the page's listener in "
        f"{both(delivery)} (broker → event loop → socket → Chromium); the page applies it "
        f"and paints the next frame in {both(page)} (applying: {both(handler)}; the next "
        f"frame after it: {both(frame)}). Tails of each stage follow the "
        "machine's load (2 shared cores: the backend, Chromium and other work)."
    )


def _load_note(before: float) -> str:
    """How busy the machine was: browser timings on 2 shared cores follow the load."""
    after = os.getloadavg()[0]
    return (
        f"Machine load (1-min load average, {os.cpu_count()} cores) at the start and end of "
        f"this run: {before:.1f} and {after:.1f}; the browser's and the backend's times grow "
        "with it, so compare runs taken at similar loads (or side by side)."
    )
