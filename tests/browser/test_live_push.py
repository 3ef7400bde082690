"""Pushed live updates and the first paint, in Chromium against a real backend.

- an `ingest` event carries the snapshot and the newest chart steps: the page draws them
  without a request, and every number it then holds equals what the API returns;
- a page that fell behind gets a `resync` and re-fetches;
- the first load's requests start before the page's main module runs, once each.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_testing import Backend, PageProbe, batch_urls

pytestmark = pytest.mark.browser

CHARTS = {  # chart -> signals, as dashboards/js/queries.js CHART_SIGNALS
    "requests": ["request_rate"],
    "latency": ["avg_latency_ms", "p95_latency_ms", "p99_latency_ms"],
    "errors": ["error_rate_percent"],
    "mae": ["model_mae"],
}
GROUP = {"model_mae": "service,model"}

PAGE_STATE = """
async () => {
  const m = await import('/js/main.js');
  const w = m.range.window();
  const charts = {};
  for (const [name, chart] of Object.entries(m.graphs.charts)) {
    const series = {};
    for (const key of chart.now.keys()) {
      const e = chart.now.series.get(key);
      series[key] = [...e.points.entries()];
    }
    charts[name] = { series, resolution: chart.resolution };
  }
  const cache = (set) =>
    set ? [...set.series.values()].flatMap((e) => [...e.points.entries()]) : [];
  return {
    w, charts, push: m.lastPush, snap: m.lastSnapshot,
    hits: cache(m.graphs.cacheHits), misses: cache(m.graphs.cacheMisses),
    updates: Number(document.body.dataset.liveUpdates || 0),
    source: document.body.dataset.liveSource || "",
  };
}
"""


def _params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _api_requests(probe: PageProbe, since: int = 0) -> list[Any]:
    return [
        r
        for r in probe.responses[since:]
        if urlsplit(r.url).path.startswith(("/metrics", "/health"))
    ]


def _push_once(pg: Any, backend: Backend, **tick: Any) -> dict[str, Any]:
    """One export (as mlapi does every 5 s); return the page state once it is drawn."""
    count = "Number(document.body.dataset.{} || 0)"
    charts, numbers = (int(pg.evaluate(count.format(k))) for k in ("liveUpdates", "liveSnapshots"))
    backend.traffic.tick(at=time.time(), **tick)
    # The charts' steps (the `ingest` event), then the numbers (the `snapshot` event).
    pg.wait_for_function(
        f"() => {count.format('liveUpdates')} > {charts} && {count.format('liveSnapshots')} > "
        f"{numbers} && document.body.dataset.liveSnapshotCommittedAt === "
        "document.body.dataset.liveCommittedAt",
        timeout=15_000,
    )
    state: dict[str, Any] = pg.evaluate(PAGE_STATE)
    return state


def test_a_pushed_update_is_drawn_without_a_request_and_equals_the_fetched_numbers(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    pg.wait_for_selector("#conn[data-state=live]", timeout=10_000)
    new_model = f"pushed-{time.monotonic_ns()}"
    seen = len(page.responses)
    state = _push_once(pg, backend, new_models=(new_model,))
    assert state["source"] == "push"
    # Nothing fetched for the update: neither the snapshot nor any chart's steps.
    for r in _api_requests(page, seen):
        path, q = urlsplit(r.url).path, _params(r.url)
        assert path != "/metrics/current", r.url
        if q.get("group_by") == "service,route":
            continue  # the per-route table: lazy, every 15 s
        assert q.get("metric") not in {s for ss in CHARTS.values() for s in ss}, r.url
        assert q.get("metric") not in {"cache_hits", "cache_misses"}, r.url

    push, w = state["push"], state["w"]
    pushed = push["windows"][f"3600:{w['step']}"]
    assert pushed["step"] == w["step"] == 30 and pushed["to"] == w["to"]
    newest = pushed["to"] - w["step"]

    # Every step the page holds equals /metrics/history over the page's whole range now.
    for chart, signals in CHARTS.items():
        held = state["charts"][chart]
        assert held["resolution"] == pushed["resolution"]
        for signal in signals:
            fetched = backend.get(
                "/metrics/history",
                metric=signal,
                step=w["step"],
                group_by=GROUP.get(signal, "service"),
                **{"from": w["from"], "to": w["to"]},
            )
            assert fetched["resolution"] == pushed["resolution"]
            for s in fetched["series"]:
                key = f"{signal}|" + _labels_key(s["labels"])
                points = dict(map(tuple, held["series"].get(key, [])))
                for t, v in s["points"]:
                    assert points.get(t) == v, (signal, s["labels"], t, points.get(t), v)
                if signal == "request_rate":  # the newest step is there, from the push
                    value = points.get(newest)
                    assert value is not None and value > 0
    mae_keys = state["charts"]["mae"]["series"]
    assert any(new_model in key for key in mae_keys), "the pushed steps add a new series"

    # The cache gauge's steps: the same sums as fetched.
    for metric, held_points in (("cache_hits", state["hits"]), ("cache_misses", state["misses"])):
        fetched = backend.get(
            "/metrics/history",
            metric=metric,
            step=w["step"],
            group_by="service",
            **{"from": w["from"], "to": w["to"]},
        )
        want = sum(v or 0 for s in fetched["series"] for _, v in s["points"])
        assert sum(v or 0 for _, v in held_points) == want > 0
    gauge = pg.locator("[data-chart=cache] [data-role=value]").get_attribute("data-value")
    hits, misses = sum(v or 0 for _, v in state["hits"]), sum(v or 0 for _, v in state["misses"])
    assert float(gauge or "nan") == pytest.approx(100 * hits / (hits + misses), rel=1e-12)

    # The snapshot: /metrics/current as of the moment it was computed, shown as is.
    snap = state["snap"]
    assert snap["committed_at"] == push["committed_at"]
    at, window = snap["at"], snap["window_seconds"]
    assert snap["doc"] == backend.get("/metrics/summary", **{"from": at - window, "to": at})
    doc = snap["doc"]
    shown = pg.locator("#api-perf [data-stat='requests'] [data-role=value]")
    assert float(shown.get_attribute("data-value") or "nan") == doc["api_metrics"]["total_requests"]
    card = pg.locator(f"#models article[data-model='{new_model}'] [data-role=mae]")
    mae = doc["model_metrics"][new_model]["avg_mae"]
    assert float(card.get_attribute("data-value") or "nan") == mae
    assert not page.errors, page.errors


def _labels_key(labels: dict[str, Any]) -> str:
    """The page's series key for labels: JSON.stringify of the labels object."""
    import json

    return json.dumps(labels, separators=(",", ":"), ensure_ascii=False)


def test_a_page_that_falls_behind_gets_a_resync_and_fetches_again(
    browser: Any, backend: Backend
) -> None:
    broker = backend.app.state.broker
    size = broker.queue_size
    broker.queue_size = 2  # for the page opened now: a tiny queue, as if the tab were slow
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        requests: list[str] = []
        pg.on("request", lambda r: requests.append(r.url))
        pg.goto(backend.url + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        pg.wait_for_selector("#conn[data-state=live]", timeout=10_000)
        seen = len(requests)
        # A burst faster than the stream drains: the queue overflows.
        for i in range(200):
            broker.publish("alert", {"rule": "burst", "i": i})
        pg.wait_for_function("() => document.body.dataset.liveSource === 'resync'", timeout=15_000)
        # The resync re-fetched the whole range of the charts and the snapshot.
        again = [u for u in requests[seen:] if urlsplit(u).path.startswith("/metrics")]
        spans = [
            float(_params(u)["to"]) - float(_params(u)["from"])
            for u in again
            if _params(u).get("metric") == "request_rate"
        ]
        assert 3600 in spans
        assert any(urlsplit(u).path == "/metrics/current" for u in again)
    finally:
        broker.queue_size = size
        context.close()


@pytest.mark.parametrize("hash_", ["", "#dashboard?range=86400"])
def test_the_first_load_asks_before_the_page_code_runs_and_once_each(
    browser: Any, backend: Backend, hash_: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.goto(backend.url + "/" + hash_)
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        entries = pg.evaluate(
            """() => ({
              main: performance.getEntriesByName("mlpulse:main")[0].startTime,
              api: performance.getEntriesByType("resource")
                .filter((e) => /\\/(metrics|health|dashboard\\/(config|batch))/.test(e.name))
                .map((e) => [e.name, e.startTime]),
            })"""
        )
        span = 86400 if hash_ else 3600
        # The first load's reads travel in one `/dashboard/batch` request: each read it
        # carries counts as asked at the batch's start.
        batches = [(u, t) for u, t in entries["api"] if batch_urls(u)]
        assert len(batches) == 1, batches
        asked = [(sub, t) for u, t in entries["api"] for sub in batch_urls(u) or [u]]
        charts = [
            (u, t)
            for u, t in asked
            if urlsplit(u).path == "/metrics/history"
            and float(_params(u)["to"]) - float(_params(u)["from"]) == span
        ]
        metrics = sorted(_params(u)["metric"] for u, _ in charts)
        # Each chart's history asked once (the page took the prefetched answers) ...
        want = sorted([s for ss in CHARTS.values() for s in ss] + ["cache_hits", "cache_misses"])
        assert metrics == want
        # ... and before main.js ran: while the page's modules were still loading.
        for u, t in charts:
            assert t < entries["main"], (u, t, entries["main"])
        firsts = [u for u, _ in asked if urlsplit(u).path == "/metrics/current"]
        assert len(firsts) == 1
    finally:
        context.close()
