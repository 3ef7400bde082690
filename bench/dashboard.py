"""B5 dashboard cold load: headless Chromium, a day of 5 s data for 20 series.

The backend serves the day database of bench/_dataset.py. Each load uses a new browser
context (empty HTTP cache, no storage: a cold load for the page; the server's SQLite
cache is warm after the first). An init script marks, with `performance.now()` (ms since
navigation start), the moment the page sets `body[data-ready="1"]` — which
dashboards/js/main.js does after the snapshot numbers and every chart's data have been
fetched and drawn — and the next animation frame after it (painted). After each load the
script checks every chart panel (`[data-chart]`) has its data (`data-points` > 0).
Two views alternate: the default range (last hour) and the 24 h range, opened cold
through its URL (`/#dashboard?range=86400`), so every chart asks for the whole day.
"""

from __future__ import annotations

import os
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
from bench._dataset import day_database

TITLE = "Dashboard cold load (headless Chromium, 24 h of 5 s data, 20 series)"

HOOK = """
(() => {
  const b = (window.__bench = { inflight: 0, lastDone: 0, fetches: 0 });
  performance.setResourceTimingBufferSize(10000);
  const origFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    b.inflight += 1; b.fetches += 1;
    try { return await origFetch(...args); }
    finally { b.inflight -= 1; b.lastDone = performance.now(); }
  };
  const mark = () => {
    if (b.ready !== undefined) return;
    b.ready = performance.now();
    requestAnimationFrame(() => { b.painted = performance.now(); });
  };
  document.addEventListener("DOMContentLoaded", () => {
    b.dcl = performance.now();
    new MutationObserver(() => { if (document.body.dataset.ready === "1") mark(); })
      .observe(document.body, { attributes: true, attributeFilter: ["data-ready"] });
    if (document.body.dataset.ready === "1") mark();
  });
})();
"""

PANELS = """
() => [...document.querySelectorAll("[data-chart]")].map((el) => [
  el.dataset.chart,
  Number(el.dataset.points || 0),
  el.querySelectorAll("canvas, .gauge-value").length,
])
"""


WATERFALL = """
() => performance.getEntriesByType("resource")
  .filter((e) => e.startTime <= window.__bench.ready)
  .map((e) => {
    const u = new URL(e.name);
    const gets = u.searchParams.getAll("get").length;  // /dashboard/batch: reads carried
    const metric = u.searchParams.get("metric");
    return [u.pathname + (metric ? " " + metric : gets ? ` (${gets} reads)` : ""),
      e.initiatorType, e.startTime, e.responseEnd];
  })
"""


def _waterfall(loads: list[list[Any]]) -> list[list[Any]]:
    """Median start and end (ms since navigation start) of each resource over the loads."""
    by: dict[str, list[tuple[float, float]]] = {}
    for load in loads:
        for name, _kind, start, end in load:
            if name.startswith("/events"):
                continue
            by.setdefault(name, []).append((start, end))
    rows = []
    for name, v in by.items():
        starts = [a for a, _ in v]
        ends = [b for _, b in v]
        durs = [b - a for a, b in v]
        rows.append([name, percentile(starts, 50), percentile(ends, 50), percentile(durs, 50)])
    rows.sort(key=lambda r: r[1] or 0)
    return rows


def _late_modules(rows: list[list[Any]]) -> bool:
    """Whether some module only starts loading after main.js has arrived."""
    main = next((r for r in rows if r[0] == "/js/main.js"), None)
    if main is None:
        return False
    return any(r[0].endswith(".js") and r[1] > main[2] for r in rows if r is not main)


def _analysis(rows: list[list[Any]], painted: float | None) -> list[str]:
    """Say where a cold load's time goes, from the median waterfall."""
    api = [r for r in rows if r[0].startswith(("/metrics", "/alerts", "/health", "/dashboard"))]
    if not api or painted is None:
        return []
    first_api = min(r[1] for r in api)
    metrics = [r for r in api if r[0].startswith("/metrics")]
    batch = [r for r in api if r[0].startswith("/dashboard/batch")]
    slowest = max(batch or metrics or api, key=lambda r: r[2])
    page_files = [r for r in rows if r[0].startswith(("/js/", "/css/", "/vendor/", "/img/"))]
    files_end = max((r[2] for r in page_files), default=0.0)
    lines = [
        f"Where the time goes (median waterfall): the page's own files and module graph "
        f"until the first API call {first_api:.0f} ms; then API calls until the last "
        f"answer ({slowest[0]}, {slowest[3]:.0f} ms long, ending at {slowest[2]:.0f} ms) — "
        f"{(slowest[2] - first_api) / painted:.0%} of the {painted:.0f} ms. "
        + (
            f"The first load's reads travel in one batched request ({batch[0][0]}), computed "
            "by the one backend process (one GIL) while the browser still loads and runs the "
            f"page's modules (the last page file arrives at {files_end:.0f} ms)."
            if batch
            else f"The {len(metrics)} /metrics queries start together and are served by one "
            "uvicorn process (sync routes in its thread pool, one GIL), so they queue behind "
            "each other: the sum of their CPU is what the page waits for (see B6 for each "
            "alone)."
        )
    ]
    last_end = max(r[2] for r in rows)
    if painted - last_end > 0.2 * painted:
        lines.append(
            f"After the last response ({last_end:.0f} ms) the page works another "
            f"{painted - last_end:.0f} ms on its main thread before the frame is painted "
            "(JSON parsing, series building, uPlot setData/redraw of every chart)."
        )
    if painted > 500 and batch:
        lines.append(
            "To reach < 500 ms: the page's main thread (style, layout and paint of the whole "
            "dashboard, uPlot's first draw of each chart, the module graph's evaluation) and "
            "the batch's server time are what is left; both share the machine's two cores."
        )
    elif painted > 500:
        heavy = sorted(metrics, key=lambda r: -(r[3] or 0))[:3]
        lines.append(
            "To reach < 500 ms: make the heavy queries cheap rather than parallel (slowest "
            "here: " + ", ".join(f"{r[0]} {r[3]:.0f} ms" for r in heavy) + "); each "
            "re-reads and re-merges every stored bucket of its range per request (B6's "
            "profile: row decoding and histogram merging), so cache results per range until "
            "the next ingest, or read the 1 min / 1 h rollups for wider ranges"
            + (
                "; and preload the ES modules (a second level of imports costs a round of "
                "requests before the first API call)."
                if _late_modules(rows)
                else "."
            )
        )
    return lines


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    if not Path(CHROMIUM).is_file():
        raise Skip(f"Chromium not found at {CHROMIUM}: scripts/install-system-deps.sh")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]

    hours = 1.0 if quick else 24.0
    loads = 1 if quick else 15
    data = workdir / "data"
    meta = day_database(data, hours, log=workdir / "fill.log")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    views = {"1h": url, "24h": url + "#dashboard?range=86400"}
    ready: dict[str, list[float]] = {v: [] for v in views}
    painted: dict[str, list[float]] = {v: [] for v in views}
    dcl: list[float] = []
    fetches: list[int] = []
    panels_seen: list[Any] = []
    incomplete = 0
    waterfalls: dict[str, list[list[Any]]] = {v: [] for v in views}
    with backend_child(data, port, log=workdir / "backend.log"), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # Round 0 warms the server and the browser and is not counted; then the two
            # views alternate, each load in a fresh context.
            for i in range(loads + 1):
                for view, target in views.items():
                    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
                    page = ctx.new_page()
                    page.add_init_script(HOOK)
                    page.goto(target, wait_until="commit")
                    page.wait_for_function(
                        "() => window.__bench && window.__bench.painted !== undefined",
                        timeout=60_000,
                    )
                    b = page.evaluate("() => window.__bench")
                    panels = page.evaluate(PANELS)
                    waterfall = page.evaluate(WATERFALL)
                    ctx.close()
                    if i == 0:
                        continue
                    ready[view].append(b["ready"])
                    painted[view].append(b["painted"])
                    waterfalls[view].append(waterfall)
                    if view == "1h":
                        dcl.append(b.get("dcl", 0.0))
                        fetches.append(b["fetches"])
                        panels_seen = panels
                    if any(n <= 0 for name, n, _c in panels if name != "cache"):
                        incomplete += 1
        finally:
            browser.close()
    figures = []
    for view in views:
        label = "default range (1 h)" if view == "1h" else "24 h range (#dashboard?range=86400)"
        figures += [
            fig(f"cold load, {label} → every panel painted, p50",
                percentile(painted[view], 50), "ms", at_most=500),
            fig(f"cold load, {label} → every panel painted, p95",
                percentile(painted[view], 95), "ms", at_most=500),
            fig(f"cold load, {label} → data-ready (before paint), p50",
                percentile(ready[view], 50), "ms"),
        ]  # fmt: skip
    figures += [
        fig("DOMContentLoaded (default range), p50", percentile(dcl, 50), "ms"),
        fig("loads where a chart had no data", float(incomplete), "loads", at_most=0,
            target="= 0"),
    ]  # fmt: skip
    figures[-1]["ok"] = incomplete == 0
    figures[-1].pop("ratio", None)
    notes = [
        f"{loads} cold loads of each view (after one warm-up round), alternating, viewport "
        f"1440x1000, on a database holding {meta['points']:,} points ({hours:g} h); "
        f"{rnd(percentile([float(f) for f in fetches], 50))} fetches per load (median).",
    ]
    for view in views:
        notes += [f"[{view}] " + n for n in _analysis(_waterfall(waterfalls[view]),
                                                      percentile(painted[view], 50))]  # fmt: skip
    notes.append(_load_note(load_before))
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": "Chart panels after the last load (data-points, drawn elements)",
                "columns": ["panel", "points", "canvas/gauge elements"],
                "rows": [list(x) for x in panels_seen],
            },
        ]
        + [
            {
                "title": f"[{view}] Where a cold load's time goes: each request's median start, "
                "end and duration (ms since navigation start), up to data-ready",
                "columns": ["resource", "start ms", "end ms", "duration ms"],
                "rows": _waterfall(waterfalls[view]),
            }
            for view in views
        ],
        "notes": notes,
        "details": {
            "ready_ms": {v: [rnd(x) for x in ready[v]] for v in views},
            "painted_ms": {v: [rnd(x) for x in painted[v]] for v in views},
            "dataset": meta,
        },
    }


def _load_note(before: float) -> str:
    """How busy the machine was: browser timings on 2 shared cores follow the load."""
    after = os.getloadavg()[0]
    return (
        f"Machine load (1-min load average, {os.cpu_count()} cores) at the start and end of "
        f"this run: {before:.1f} and {after:.1f}; the browser's and the backend's times grow "
        "with it, so compare runs taken at similar loads (or side by side)."
    )
