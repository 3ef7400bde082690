"""B4 live latency: ingest committed → the dashboard in Chromium has the update.

A backend (prefilled with a stretch of the realistic payload so the page's refresh
queries do real work) serves the dashboard to headless Chromium. An init script wraps the
page's own `EventSource` (before dashboards/js/api.js creates it) to timestamp each
`ingest` event on arrival, and watches `body[data-live-updates]`, which
dashboards/js/main.js increments when a live refresh (snapshot numbers + chart tails
fetched and drawn) has finished; the next animation frame after it counts as painted.
Times in the page are `performance.timeOrigin + performance.now()` (epoch ms, sub-ms);
the backend's `committed_at` is `time.time()` after the commit, both on the same clock.

Then one mlapi instance (200 series, real SDK + encoder) exports with the current time,
one export every 0.5-0.7 s (spaced so a refresh is not already running when the next
event arrives — coalescing would add the refresh in progress to the latency).
Three latencies per export: commit → event received by the page (SSE path), commit →
refresh finished (data applied to the charts), commit → next frame painted.
"""

from __future__ import annotations

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
  const b = (window.__bench = { events: [], updates: [] });
  const now = () => performance.timeOrigin + performance.now();
  const Orig = window.EventSource;
  class Timed extends Orig {
    constructor(...args) {
      super(...args);
      super.addEventListener("ingest", (ev) => {
        const t = now();
        try { b.events.push([JSON.parse(ev.data).committed_at * 1000, t]); } catch (e) {}
      });
    }
  }
  window.EventSource = Timed;
  document.addEventListener("DOMContentLoaded", () => {
    new MutationObserver(() => {
      const n = Number(document.body.dataset.liveUpdates || 0);
      const t = now();
      requestAnimationFrame(() => b.updates.push([n, t, now()]));
    }).observe(document.body, { attributes: true, attributeFilter: ["data-live-updates"] });
  });
})();
"""


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    if not Path(CHROMIUM).is_file():
        raise Skip(f"Chromium not found at {CHROMIUM}: scripts/install-system-deps.sh")
    from playwright.sync_api import sync_playwright

    exports = 6 if quick else 200
    prefill = 4 if quick else 360  # 5 s windows before the live part (1 min / 30 min)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    inst = Instance("live-1", seed=5, per_window=20, started=time.time() - 7200)
    now = time.time()
    sent: list[float] = []
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
            # Exports run in this thread; the page is polled only at the end (Playwright's
            # sync API is not thread-safe, and polling would load the page's main thread).
            for _ in range(exports):
                body = inst.export(time.time()).SerializeToString()
                status, _ = poster.post(body)
                if status != 200:
                    raise RuntimeError(f"export: {status}")
                sent.append(time.time())
                time.sleep(rng.uniform(0.5, 0.7))
            page.wait_for_timeout(1500)
            b = page.evaluate("() => window.__bench")
        finally:
            browser.close()
            poster.close()
            inst.shutdown()

    events = sorted(b["events"])  # [committed_ms, received_ms]
    updates = sorted(b["updates"], key=lambda u: u[1])  # [n, applied_ms, painted_ms]
    sse, applied, painted = [], [], []
    for committed, received in events:
        sse.append(received - committed)
        nxt = next((u for u in updates if u[1] >= received), None)
        if nxt is not None:
            applied.append(nxt[1] - committed)
            painted.append(nxt[2] - committed)
    missing = len(sent) - len(events)
    figures = [
        fig("commit → chart updated and painted, p50", percentile(painted, 50), "ms"),
        fig("commit → chart updated and painted, p99", percentile(painted, 99), "ms", at_most=50),
        fig("commit → refresh applied (before paint), p50", percentile(applied, 50), "ms"),
        fig("commit → refresh applied (before paint), p99", percentile(applied, 99), "ms"),
        fig("commit → SSE event in the page, p50", percentile(sse, 50), "ms"),
        fig("commit → SSE event in the page, p99", percentile(sse, 99), "ms"),
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
        "notes": [
            f"{len(sent)} exports of 200 points each, {len(events)} `ingest` events "
            f"received, {len(updates)} live refreshes finished; prefilled with {prefill} "
            "windows (5 s each) of the same instance.",
            "A refresh is the page's own: GET /metrics/current + /health and one "
            "/metrics/history tail per chart signal, then uPlot setData; so the "
            "commit → painted latency is dominated by those queries (see B6).",
        ],
        "details": {
            "sse_ms": [rnd(x) for x in sse],
            "applied_ms": [rnd(x) for x in applied],
            "painted_ms": [rnd(x) for x in painted],
        },
    }
