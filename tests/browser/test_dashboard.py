"""The dashboard page in Debian's Chromium, against a real backend filled by the OTel SDK.

Each test reads what the page shows and compares it with the JSON the page itself
received from the API (captured from the network), so a number on screen is checked
against the exact document it was rendered from.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_testing import TOKEN, XSS_MODEL, XSS_ROUTE, Backend, PageProbe, save_screenshot

pytestmark = pytest.mark.browser


# -- helpers ------------------------------------------------------------------------------


def responses(probe: PageProbe, path: str) -> list[Any]:
    """The page's successful responses for an API path, oldest first."""
    return [r for r in probe.responses if urlsplit(r.url).path == path and r.ok]


def last_json(probe: PageProbe, path: str) -> Any:
    found = responses(probe, path)
    assert found, f"the page never fetched {path}"
    return found[-1].json()


def stable(probe: PageProbe, read: Any, tries: int = 30) -> Any:
    """Read until two reads agree with no response in between (a live refresh can race)."""
    for _ in range(tries):
        before = len(probe.responses)
        first = read()
        probe.page.wait_for_timeout(200)
        second = read()
        if len(probe.responses) == before and first == second:
            return second
    raise AssertionError("the page kept refreshing; could not read a stable state")


def value_of(probe: PageProbe, selector: str) -> float | None:
    """The raw number behind a displayed value (`data-value`), or None."""
    raw = probe.page.locator(selector).first.get_attribute("data-value")
    return None if raw in (None, "") else float(raw)


def text_of(probe: PageProbe, selector: str) -> str:
    return probe.page.locator(selector).first.inner_text().strip()


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


# -- panels -------------------------------------------------------------------------------


def test_overview_models_and_api_panels_show_the_numbers_the_api_returns(
    page: PageProbe,
) -> None:
    def read() -> tuple[dict[str, Any], dict[str, float | None], dict[str, str]]:
        doc = last_json(page, "/metrics/current")
        card = lambda key: f"[data-card='{key}'] [data-role=value]"  # noqa: E731
        stat = lambda key: f"#api-perf [data-stat='{key}'] [data-role=value]"  # noqa: E731
        values = {
            "rpm": value_of(page, card("requests_per_minute")),
            "errors": value_of(page, card("error_rate_percent")),
            "latency": value_of(page, card("avg_response_time_ms")),
            "cache": value_of(page, card("cache_hit_rate_percent")),
            "uptime": value_of(page, card("uptime")),
            "requests": value_of(page, stat("requests")),
            "avg": value_of(page, stat("avg_response_time_ms")),
            "p95": value_of(page, stat("p95_response_time_ms")),
            "p99": value_of(page, stat("p99_response_time_ms")),
            "throughput": value_of(page, stat("requests_per_minute")),
            "error_rate": value_of(page, stat("error_rate_percent")),
        }
        texts = {
            "p95": text_of(page, "#api-perf [data-stat='p95_response_time_ms'] dd"),
            "rpm": text_of(page, card("requests_per_minute")),
            "status": text_of(page, "[data-card='status'] [data-role=value]"),
        }
        return doc, values, texts

    doc, values, texts = stable(page, read)
    api, cache, system = doc["api_metrics"], doc["cache_metrics"], doc["system_metrics"]
    assert api["total_requests"] > 0, "the backend has no traffic: the fixture did not ingest"

    # Overview.
    assert close(values["rpm"], api["requests_per_minute"])
    assert close(values["errors"], api["error_rate_percent"])
    assert close(values["latency"], api["avg_response_time_ms"])
    assert close(values["cache"], cache["hit_rate_percent"])
    assert close(values["uptime"], system["uptime_seconds"])
    assert texts["rpm"] == f"{api['requests_per_minute']:.0f}" or texts["rpm"] == (
        f"{api['requests_per_minute']:.1f}"
    )
    assert texts["status"] in ("Healthy", "Degraded")  # fresh data: never "Down" here

    # API performance: counts, latency with the percentile's bucket bounds.
    assert close(values["requests"], api["total_requests"])
    assert close(values["avg"], api["avg_response_time_ms"])
    assert close(values["p95"], api["p95_response_time_ms"])
    assert close(values["p99"], api["p99_response_time_ms"])
    assert close(values["throughput"], api["requests_per_minute"])
    assert close(values["error_rate"], api["error_rate_percent"])
    bounds = api["p95_response_time_bounds_ms"]
    match = re.search("\\(([\\d.,]+)\u2013([\\d.,]+)\\)", texts["p95"])
    assert match, f"p95 shows no bounds: {texts['p95']!r}"
    lower, upper = (float(g.replace(",", "")) for g in match.groups())
    assert lower == pytest.approx(bounds["lower"], rel=0.01, abs=0.05)
    assert upper == pytest.approx(bounds["upper"], rel=0.01, abs=0.05)

    # Model performance: every model of the snapshot, every number.
    models = doc["model_metrics"]
    assert {"result", "duration"} <= set(models)
    for name, m in models.items():
        card = page.page.locator("#models article.model").filter(
            has=page.page.locator("h3", has_text=name)
        )
        assert card.count() == 1, name

        def val(sel: str, card: Any = card) -> float | None:
            raw = card.locator(sel).first.get_attribute("data-value")
            return None if raw in (None, "") else float(raw)

        assert close(val("[data-role=mae]"), m["avg_mae"]), name
        assert close(val("[data-role=baseline]"), m["baseline_mae"]), name
        assert close(val("[data-role=degradation]"), m["degradation_percent"]), name
        assert close(val("[data-stat=rmse] [data-role=value]"), m["rmse"]), name
        assert close(val("[data-stat=r2] [data-role=value]"), m["r2"]), name
        assert close(val("[data-stat=predictions_count] [data-role=value]"), m["predictions_count"])
        assert close(val("[data-stat=avg_confidence] [data-role=value]"), m["avg_confidence"])
        assert close(val("[data-stat=feedback_count] [data-role=value]"), m["feedback_count"])
        # The overview's model MAE line too.
        line = page.page.locator("[data-card='model_mae'] .model-line").filter(
            has=page.page.locator(".name", has_text=name)
        )
        raw = line.locator("[data-role=value]").get_attribute("data-value")
        assert raw is not None and close(float(raw), m["avg_mae"]), name

    # Per-route requests: the sum of the 10 s request counts the page received.
    def routes() -> tuple[dict[str, float], dict[str, float]]:
        counts = [
            r
            for r in responses(page, "/metrics/history")
            if params(r.url).get("metric") == "request_count"
        ][-1].json()
        expected = {
            s["labels"]["route"]: sum(v for _, v in s["points"] if v) for s in counts["series"]
        }
        shown = {
            row.get_attribute("data-route") or "": float(
                row.locator("td.num").first.get_attribute("data-value") or "nan"
            )
            for row in page.page.locator("#api-perf tr[data-route]").all()
        }
        return expected, shown

    expected, shown = stable(page, routes)
    assert shown == {k: v for k, v in expected.items() if v > 0}
    assert "/predict/results" in shown
    assert not page.errors, page.errors


def test_charts_have_the_data_of_the_history_api(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    for chart in ("requests", "latency", "errors", "mae", "distribution", "cache"):
        pg.wait_for_function(
            f"() => Number(document.querySelector('[data-chart={chart}]').dataset.points || 0) > 0",
            timeout=10_000,
        )

    def read() -> tuple[int, dict[str, Any], int, dict[str, Any], float | None]:
        points = int(pg.locator("[data-chart=requests]").get_attribute("data-points") or 0)
        rate = [
            r
            for r in responses(page, "/metrics/history")
            if params(r.url).get("metric") == "request_rate"
        ][-1].json()
        total = int(pg.locator("[data-chart=distribution]").get_attribute("data-total") or 0)
        dist = last_json(page, "/metrics/distribution")
        gauge = value_of(page, "[data-chart=cache] [data-role=value]")
        return points, rate, total, dist, gauge

    points, rate, total, dist, gauge = stable(page, read)
    expected = sum(1 for s in rate["series"] for _, v in s["points"] if v is not None)
    # 30 minutes of history at the 1 h range's step; a step still filling is not drawn.
    assert expected > 30
    assert points in (expected, expected - 1)
    assert total == dist["count"] > 0  # every stored bucket counted in a bar

    # The gauge: hits / lookups over the range, summed from the steps the page received —
    # exactly the backend's own hit rate over that window (live tails may add a little).
    def fetched(metric: str) -> list[Any]:
        return [x for x in responses(page, "/metrics/history") if params(x.url)["metric"] == metric]

    hits_r, misses_r = fetched("cache_hits"), fetched("cache_misses")
    q = params(hits_r[0].url)
    assert float(q["to"]) - float(q["from"]) == 3600  # the first fetch is the whole range

    def total(r: Any) -> float:
        return sum(v or 0 for s in r.json()["series"] for _, v in s["points"])

    summary = backend.get("/metrics/summary", **{"from": q["from"], "to": q["to"]})
    expected = summary["cache_metrics"]["hit_rate_percent"]
    first = 100 * total(hits_r[0]) / (total(hits_r[0]) + total(misses_r[0]))
    assert first == pytest.approx(expected, rel=1e-9)
    if len(hits_r) == 1:  # no live update since: the gauge shows exactly that
        assert gauge == pytest.approx(expected, rel=1e-9)
    else:
        assert gauge == pytest.approx(expected, abs=0.5)

    # Model accuracy: one series per model, named as text.
    legend = pg.locator("#chart-mae .u-legend").inner_text()
    assert "result" in legend and "duration" in legend

    # Exemplars: links into Jaeger (the backend's setting), slowest first.
    links = pg.locator("#exemplars a[data-trace]")
    assert links.count() > 0
    href = links.first.get_attribute("href") or ""
    assert re.fullmatch(r"http://jaeger\.example:16686/trace/[0-9a-f]{32}", href), href
    assert links.first.get_attribute("rel") == "noopener noreferrer"

    # On the latency chart itself: a marker per exemplar; clicking one opens its trace.
    markers = pg.locator("[data-chart=latency] a[data-trace-marker]")
    assert markers.count() > 0
    top = markers.last  # drawn last, so nothing covers it
    href = top.get_attribute("href") or ""
    assert re.fullmatch(r"http://jaeger\.example:16686/trace/[0-9a-f]{32}", href), href
    pg.context.route("http://jaeger.example:16686/**", lambda route: route.fulfill(body="jaeger"))
    with pg.context.expect_page() as popup:
        top.click()
    assert popup.value.url == href
    popup.value.close()
    assert not page.errors, page.errors


def test_a_new_ingest_appears_without_a_reload(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    pg.wait_for_selector("#conn[data-state=live]", timeout=10_000)
    pg.evaluate("window.__sameDocument = true")
    pg.evaluate("document.querySelector('[data-chart=requests] .uplot').__sameChart = true")
    points_before = pg.locator("[data-chart=requests]").get_attribute("data-points")
    updates = int(pg.evaluate("Number(document.body.dataset.liveUpdates || 0)"))
    snapshots = int(pg.evaluate("Number(document.body.dataset.liveSnapshots || 0)"))
    history_calls = len(responses(page, "/metrics/history"))

    new_model = f"live-{time.monotonic_ns()}"
    assert not pg.locator(f"#models article[data-model='{new_model}']").count()
    # One export, as mlapi does every 5 s, with a model the page has never seen.
    backend.traffic.tick(at=time.time(), new_models=(new_model,))

    pg.wait_for_function(
        f"() => Number(document.body.dataset.liveUpdates || 0) > {updates}", timeout=15_000
    )
    pg.wait_for_function(  # the numbers follow in the `snapshot` event
        f"() => Number(document.body.dataset.liveSnapshots || 0) > {snapshots}", timeout=15_000
    )

    def read() -> tuple[dict[str, Any], float | None]:
        # The snapshot came with the event (no /metrics/current request): the pushed one.
        pushed = pg.evaluate("async () => (await import('/js/main.js')).lastSnapshot")
        return pushed["doc"], value_of(page, "#api-perf [data-stat='requests'] [data-role=value]")

    doc, shown = stable(page, read)
    assert new_model in doc["model_metrics"]
    card = pg.locator(f"#models article[data-model='{new_model}']")
    card.wait_for(timeout=15_000)
    mae = card.locator("[data-role=mae]").get_attribute("data-value")
    assert close(float(mae or "nan"), doc["model_metrics"][new_model]["avg_mae"])
    assert close(shown, doc["api_metrics"]["total_requests"])
    assert pg.evaluate("window.__sameDocument") is True  # no reload happened
    # The chart is the same uPlot instance (data replaced, not rebuilt) and still full.
    assert pg.evaluate("document.querySelector('[data-chart=requests] .uplot').__sameChart")
    points_after = pg.locator("[data-chart=requests]").get_attribute("data-points")
    assert int(points_after or 0) >= int(points_before or 0) > 0
    # Charts appended from the pushed steps: no chart asked for its range again (only the
    # lazy whole-range views may refresh, and never over the whole hour of a chart).
    charted = {"request_rate", "avg_latency_ms", "p95_latency_ms", "p99_latency_ms",
               "error_rate_percent", "model_mae", "cache_hits", "cache_misses"}  # fmt: skip
    assert pg.evaluate("document.body.dataset.liveSource") == "push"
    for r in responses(page, "/metrics/history")[history_calls:]:
        q = params(r.url)
        assert q["metric"] not in charted or q.get("group_by") == "service,route", r.url
    assert not page.errors, page.errors


def test_polling_takes_over_when_the_event_stream_is_down(browser: Any, backend: Backend) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.route("**/events?*", lambda route: route.abort())
        pg.goto(backend.url + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        pg.wait_for_selector("#conn[data-state=polling]", timeout=10_000)
        assert "Polling" in pg.locator("#conn").inner_text()
        updates = int(pg.evaluate("Number(document.body.dataset.liveUpdates || 0)"))
        backend.traffic.tick(at=time.time())
        pg.wait_for_function(
            f"() => Number(document.body.dataset.liveUpdates || 0) > {updates}", timeout=20_000
        )
    finally:
        context.close()


# -- time range and export ------------------------------------------------------------------


def _window_of(resp: Any) -> tuple[float, float] | None:
    """The (from, to) of a request_rate history response, else None."""
    if urlsplit(resp.url).path != "/metrics/history":
        return None
    q = params(resp.url)
    if q.get("metric") != "request_rate":
        return None
    return float(q["from"]), float(q["to"])


def _span(resp: Any) -> float:
    window = _window_of(resp)
    return round(window[1] - window[0]) if window else 0


def _history_windows(probe: PageProbe, since: int) -> list[tuple[float, float]]:
    return [
        (float(params(r.url)["from"]), float(params(r.url)["to"]))
        for r in responses(probe, "/metrics/history")[since:]
        if params(r.url).get("metric") == "request_rate"
    ]


def test_time_range_presets_custom_range_and_export(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    assert pg.locator("[data-range='3600']").get_attribute("aria-pressed") == "true"

    # Preset: 15 minutes.
    seen = len(responses(page, "/metrics/history"))
    with pg.expect_response(lambda r: _window_of(r) is not None and _span(r) == 900):
        pg.click("[data-range='900']")
    assert any(round(t - f) == 900 for f, t in _history_windows(page, seen))
    assert pg.locator("#range-label").inner_text() == "last 15 minutes"
    # The range lives in the URL: a reload (or a shared link) keeps it.
    assert pg.evaluate("location.hash") == "#dashboard?range=900"
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    assert pg.locator("[data-range='900']").get_attribute("aria-pressed") == "true"

    # Custom: an absolute 20-minute window (the context's time zone is UTC).
    end = datetime.fromtimestamp((int(time.time()) // 60) * 60, UTC)
    start = datetime.fromtimestamp(end.timestamp() - 1200, UTC)
    pg.click("#range-custom-btn")
    pg.fill("#range-from", start.strftime("%Y-%m-%dT%H:%M"))
    pg.fill("#range-to", end.strftime("%Y-%m-%dT%H:%M"))
    seen = len(responses(page, "/metrics/history"))
    with pg.expect_response(lambda r: _window_of(r) == (start.timestamp(), end.timestamp())):
        pg.click("#custom-range button[type=submit]")
    assert (start.timestamp(), end.timestamp()) in _history_windows(page, seen)
    pg.wait_for_function(
        "() => Number(document.querySelector('[data-chart=requests]').dataset.points || 0) > 0"
    )

    # Export what is visible: CSV and JSON of exactly that window.
    href = pg.locator("#export-csv").get_attribute("href") or ""
    assert float(params(href)["from"]) == start.timestamp()
    assert float(params(href)["to"]) == end.timestamp()
    with pg.expect_download() as dl:
        pg.click("#export-csv")
    body = Path(dl.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows, body[:300]
    assert {"time", "signal", "value"} <= set(rows[0])
    assert {r["signal"] for r in rows} >= {"request_rate"}
    epochs = [float(r["epoch"]) for r in rows if r.get("epoch")]
    assert epochs and min(epochs) >= start.timestamp() - 600 and max(epochs) < end.timestamp()

    with pg.expect_download() as dl:
        pg.click("#export-json")
    doc = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert doc["from"] == start.timestamp() and doc["to"] == end.timestamp()
    assert any(r["signal"] == "request_rate" and r["value"] > 0 for r in doc["rows"])

    # Comparison: the previous period is fetched and overlaid (dashed series).
    seen = len(responses(page, "/metrics/history"))
    previous = (start.timestamp() - 1200, end.timestamp() - 1200)
    with pg.expect_response(lambda r: _window_of(r) == previous):
        pg.check("#compare")
    pg.wait_for_function(
        "() => document.querySelector('#chart-requests .u-legend')?.textContent"
        ".includes('(previous)')"
    )
    windows = _history_windows(page, seen)
    assert (start.timestamp() - 1200, end.timestamp() - 1200) in windows
    assert "(previous)" in pg.locator("#chart-requests .u-legend").inner_text()
    assert not page.errors, page.errors


# -- alert rules ----------------------------------------------------------------------------


def test_editing_a_rule_round_trips(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    pg.click("a.tab[data-view=alerts]")
    row = pg.locator("tr[data-rule=high_error_rate]")
    row.wait_for(timeout=10_000)

    row.locator("[data-field=threshold]").fill("7.5")
    row.locator("[data-field=clear_threshold]").fill("6")
    row.locator("[data-field=for]").fill("2m")
    row.locator("input[data-channel=file]").uncheck()
    row.locator("[data-field=enabled]").uncheck()
    row.locator("[data-action=save]").click()

    # The token is asked once, in the page's own dialog (never window.prompt).
    pg.wait_for_selector("#token-dialog[open]")
    pg.fill("#token-input", TOKEN)
    # The save's own answer first, so a refusal says what it was (CI once saw the toast
    # not come within 10 s, with a failed POST in the console and no status to read).
    with pg.expect_response(
        lambda r: urlsplit(r.url).path == "/alerts/configure" and r.request.method == "POST",
        timeout=30_000,
    ) as first_save:
        pg.click("#token-dialog button[type=submit]")
    assert first_save.value.status == 200, (first_save.value.status, first_save.value.text())
    pg.wait_for_selector(".toast:has-text('Saved high_error_rate')", timeout=30_000)
    assert pg.evaluate("sessionStorage.getItem('mlpulse.token')") == TOKEN

    rule = next(
        r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "high_error_rate"
    )
    assert rule["threshold"] == 7.5
    assert rule["clear_threshold"] == 6
    assert rule["for"] in ("2m", 120, 120.0)
    assert rule["enabled"] is False
    assert rule["channels"] == ["console"]

    # A second change does not ask again; the page shows the saved values after a reload.
    row = pg.locator("tr[data-rule=high_error_rate]")
    row.locator("[data-field=enabled]").check()
    with pg.expect_response(
        lambda r: urlsplit(r.url).path == "/alerts/configure" and r.request.method == "POST"
    ) as saved:
        row.locator("[data-action=save]").click()
    assert saved.value.status == 200
    assert not pg.locator("#token-dialog[open]").count()
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    row = pg.locator("tr[data-rule=high_error_rate]")
    row.wait_for()
    assert row.locator("[data-field=threshold]").input_value() == "7.5"
    assert row.locator("[data-field=clear_threshold]").input_value() == "6"
    assert row.locator("[data-field=for]").input_value() in ("2m", "2m0s")
    assert row.locator("[data-field=enabled]").is_checked()
    assert not row.locator("input[data-channel=file]").is_checked()
    assert not page.dialogs and not page.errors, (page.dialogs, page.errors)


def test_send_test_reports_the_delivery(page: PageProbe) -> None:
    pg = page.page
    pg.evaluate(f"sessionStorage.setItem('mlpulse.token', {json.dumps(TOKEN)})")
    pg.click("a.tab[data-view=alerts]")
    pg.locator("tr[data-channel=console] button").click()
    pg.wait_for_selector(".toast:has-text('Test to console: delivered')", timeout=10_000)


# -- safety ---------------------------------------------------------------------------------


def test_markup_in_attribute_values_renders_as_text(page: PageProbe) -> None:
    pg = page.page
    # The model name: overview, model card, chart legend.
    title = pg.locator("#models article.model h3").filter(has_text="<img")
    assert title.count() == 1
    assert title.inner_text() == XSS_MODEL
    assert XSS_MODEL in pg.locator("[data-card='model_mae']").inner_text()
    pg.wait_for_function(
        "() => document.querySelector('#chart-mae .u-legend')?.textContent.includes('<img')"
    )
    # The route: the per-route table and the slowest exemplars name it.
    cell = pg.locator("#api-perf td.route").filter(has_text="<img")
    cell.wait_for(timeout=10_000)
    assert cell.inner_text() == XSS_ROUTE
    pg.wait_for_selector("#exemplars a[data-trace]")
    assert XSS_ROUTE in pg.locator("#exemplars").inner_text()
    # Nothing became an element; nothing ran.
    assert pg.locator("img[src='x']").count() == 0
    assert pg.evaluate("document.querySelectorAll('img:not([src$=\"logo.svg\"])').length") == 0
    pg.wait_for_timeout(500)
    assert page.dialogs == []
    assert not page.errors, page.errors


def test_page_is_served_with_a_strict_content_security_policy(backend: Backend) -> None:
    resp = backend.client.get("/")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert '<script type="module" src=' in resp.text
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", resp.text) is None  # no inline script
    assert backend.client.get("/js/main.js").headers["content-type"].startswith("text/javascript")
    assert backend.client.get("/js/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
    assert backend.client.get("/dashboard/config").json()["jaeger_ui_url"] == (
        "http://jaeger.example:16686"
    )


def test_full_page_screenshot(page: PageProbe) -> None:
    pg = page.page
    pg.wait_for_function(
        "() => Number(document.querySelector('[data-chart=requests]').dataset.points || 0) > 0"
    )
    pg.wait_for_timeout(500)
    path = save_screenshot(pg, "dashboard-test.png")
    assert path.stat().st_size > 50_000


def test_a_firing_latency_alert_links_to_its_slowest_trace(
    page: PageProbe, backend: Backend
) -> None:
    rule = next(
        r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "high_p95_latency"
    )
    rule.update(threshold=50, clear_threshold=40, min_samples=1, **{"for": "0s"})
    resp = backend.client.post(
        "/alerts/configure",
        json={"rules": [rule]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 200, resp.text
    # The engine evaluates every 5 s and pushes an `alert` event: no reload needed.
    pg = page.page
    alert = pg.locator("#alerts-active [data-alert]").filter(has_text="high_p95_latency")
    alert.wait_for(timeout=20_000)
    link = alert.locator("a[data-trace]")
    link.wait_for(timeout=10_000)
    href = link.get_attribute("href") or ""
    assert re.fullmatch(r"http://jaeger\.example:16686/trace/[0-9a-f]{32}", href), href
    assert "Slowest trace" in link.inner_text()
    pg.wait_for_selector("#status-pill[data-status=degraded]", timeout=10_000)

    # Acknowledge, then silence it, from the page (the token is asked once).
    pg.evaluate(f"sessionStorage.setItem('mlpulse.token', {json.dumps(TOKEN)})")
    alert.locator(".tag", has_text="firing").wait_for(timeout=15_000)
    alert.locator("button", has_text="Acknowledge").click()
    pg.wait_for_selector(".toast:has-text('Acknowledged high_p95_latency')")
    acked = [a for a in backend.get("/alerts/active")["alerts"] if a["rule"] == "high_p95_latency"]
    assert acked and all(a["acknowledged_at"] for a in acked)
    alert.filter(has_text="acknowledged by dashboard").wait_for(timeout=10_000)
    alert.locator("button", has_text="Silence 1 h").click()
    pg.wait_for_selector(".toast:has-text('Silenced high_p95_latency for 1 hour')")
    silences = backend.get("/alerts/silences")["silences"]
    assert any(
        {"name": "alertname", "op": "=", "value": "high_p95_latency"} in s["matchers"]
        for s in silences
    )
    assert not page.errors, page.errors
