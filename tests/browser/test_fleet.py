"""The dashboard for a fleet: two services with two instances each, filled by the real
OTel SDK through `/v1/metrics`, in Debian's Chromium.

`mlapi` (instances i-1, i-2) and `search` (s-1, s-2, three times the traffic, routes under
`/search`) send 30 minutes of history, then export every 2 s of wall-clock time from a
thread. What the page shows is compared with what the API answers for the same scope.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from browser_testing import REPO, TOKEN, Backend, PageProbe, ServerThread, save_screenshot
from browser_traffic import Fleet, Traffic

from mlpulse.backend.alerts.config import AlertSettings
from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import AlertConfig, Rule
from mlpulse.backend.alerts.service import signal_source
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings

pytestmark = pytest.mark.browser

STALE_AFTER_S = 10.0
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A backend with two services x two instances of traffic, still exporting live."""
    data_dir = tmp_path_factory.mktemp("fleet-data")
    settings = BackendSettings(
        data_dir=data_dir,
        api_token=TOKEN,
        jaeger_ui_url="http://jaeger.example:16686",
        mlapi_url="http://127.0.0.1:9",
        stale_after_s=STALE_AFTER_S,
    )
    app = create_app(settings)
    app.state.alert_settings = AlertSettings(alert_eval_interval=1.0)
    server = ServerThread(app)
    url = server.start()
    client = httpx.Client(base_url=url, timeout=30)
    members = [
        Traffic(url, service="mlapi", instance="i-1", seed=1, memory_bytes=18e7, uptime_offset=6e2),
        Traffic(url, service="mlapi", instance="i-2", seed=2, memory_bytes=3e8, uptime_offset=9e3),
        Traffic(
            url, service="search", instance="s-1", seed=3, rate_scale=3.0, route_prefix="/search",
            memory_bytes=120e6, uptime_offset=1200,
        ),
        Traffic(
            url, service="search", instance="s-2", seed=4, rate_scale=3.0, route_prefix="/search",
            memory_bytes=130e6, uptime_offset=1500,
        ),
    ]  # fmt: skip
    fleet = Fleet(members)
    try:
        fleet.backfill(minutes=30)
        fleet.start_live(interval=2.0)
        yield Backend(url, app, client, members[0], extra={"fleet": fleet, "members": members})
    finally:
        fleet.shutdown()
        client.close()
        server.stop()


# -- helpers ------------------------------------------------------------------------------


def fleet_of(backend: Backend) -> Fleet:
    fleet: Fleet = backend.extra["fleet"]
    return fleet


def member(backend: Backend, service: str, instance: str) -> Traffic:
    return next(
        m for m in backend.extra["members"] if m.service == service and m.instance == instance
    )


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def page_json(probe: PageProbe, path: str, **want: str) -> Any:
    """The newest successful response of the page for `path` whose query has `want`."""
    for r in reversed(probe.responses):
        if urlsplit(r.url).path != path or not r.ok:
            continue
        q = params(r.url)
        if all(q.get(k, "") == v for k, v in want.items()):
            return r.json()
    raise AssertionError(f"the page never fetched {path} with {want}")


def value(probe: PageProbe, selector: str) -> float | None:
    raw = probe.page.locator(selector).first.get_attribute("data-value")
    return None if raw in (None, "") else float(raw)


def select_service(probe: PageProbe, service: str, instance: str = "") -> None:
    pg = probe.page
    pg.select_option("#service-select", service)
    if instance:
        pg.wait_for_selector(f"#instance-select option[value='{instance}']", state="attached")
        pg.select_option("#instance-select", instance)
    pg.wait_for_function(
        f"() => document.body.dataset.service === {json.dumps(service)}"
        f" && document.body.dataset.instance === {json.dumps(instance)}"
    )


def settle(probe: PageProbe, quiet_ms: int = 600, tries: int = 60) -> None:
    """Wait until the page made no request for `quiet_ms` (its loads have landed)."""
    for _ in range(tries):
        before = len(probe.responses)
        probe.page.wait_for_timeout(quiet_ms)
        if len(probe.responses) == before:
            return
    raise AssertionError("the page kept fetching")


def chart_series(probe: PageProbe, chart: str) -> list[dict[str, Any]]:
    """The series a chart draws: label, stroke colour, dash, values."""
    return list(
        probe.page.evaluate(
            """async (name) => {
              const m = await import('/js/main.js');
              const plot = m.graphs.charts[name].chart.plot;
              return plot.series.slice(1).map((s, i) => ({
                label: s.label,
                stroke: typeof s.stroke === 'function' ? s.stroke(plot, i + 1) : s.stroke,
                dash: Boolean(s.dash && s.dash.length), values: plot.data[i + 1],
                xs: plot.data[0],
              }));
            }""",
            chart,
        )
    )


# -- the selector -----------------------------------------------------------------------


def test_selector_filters_every_panel_to_the_numbers_the_api_returns(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    # The services list loads after the first paint: wait for it, then compare.
    pg.wait_for_function(
        "() => document.querySelectorAll('#service-select option').length >= 3", timeout=20_000
    )
    options = pg.locator("#service-select option").all_inner_texts()
    assert options == ["All services", "mlapi", "search"]
    fleet = fleet_of(backend)
    fleet.pause()  # no new data while the page and the API are compared
    try:
        mark = len(page.responses)
        select_service(page, "search")
        assert "service=search" in pg.url
        settle(page)
        # Every query the page made for the new scope is filtered to the service.
        asked = [
            r
            for r in page.responses[mark:]
            if urlsplit(r.url).path.startswith("/metrics/")
            and urlsplit(r.url).path not in ("/metrics/services", "/metrics/catalog")
        ]
        assert asked and all(params(r.url).get("service") == "search" for r in asked), [
            r.url for r in asked if params(r.url).get("service") != "search"
        ]

        # The cards: exactly the API's snapshot for search.
        doc = page_json(page, "/metrics/current", service="search")
        assert doc["service"] == "search"
        api = doc["api_metrics"]
        card = lambda key: f"[data-card='{key}'] [data-role=value]"  # noqa: E731
        assert value(page, card("requests_per_minute")) == pytest.approx(api["requests_per_minute"])
        assert value(page, card("error_rate_percent")) == pytest.approx(api["error_rate_percent"])
        assert value(page, card("avg_response_time_ms")) == pytest.approx(
            api["avg_response_time_ms"]
        )
        fresh = backend.get("/metrics/current", service="search")["api_metrics"]
        total = backend.get("/metrics/current")["api_metrics"]
        # search's own numbers, not the fleet's sum (3x mlapi's traffic: ~75 % of it).
        assert fresh["requests_per_minute"] == pytest.approx(api["requests_per_minute"], rel=0.1)
        assert 0.6 < api["requests_per_minute"] / total["requests_per_minute"] < 0.9

        # The model cards are search's models, named with the service.
        names = pg.locator("#models article[data-model]").evaluate_all(
            "els => els.map(e => e.dataset.service + ' · ' + e.dataset.model)"
        )
        assert sorted(names) == ["search · duration", "search · result"]
        for name, m in doc["model_metrics"].items():
            shown = value(
                page, f"#models [data-service=search][data-model='{name}'] [data-role=mae]"
            )
            assert shown == pytest.approx(m["avg_mae"])

        # The route table: search's routes only, each with its service.
        services = pg.locator("#api-perf tr[data-route]").evaluate_all(
            "els => els.map(e => e.dataset.routeService)"
        )
        routes = pg.locator("#api-perf tr[data-route]").evaluate_all(
            "els => els.map(e => e.dataset.route)"
        )
        assert services and set(services) == {"search"}
        assert all(r.startswith("/search/") for r in routes), routes

        # The request chart: the points the API returns for search, at the page's own query.
        req = next(
            r for r in reversed(page.responses)
            if urlsplit(r.url).path == "/metrics/history"
            and params(r.url).get("metric") == "request_rate"
            and params(r.url).get("service") == "search"
        )  # fmt: skip
        q = params(req.url)
        again = backend.get("/metrics/history", **q)
        assert [s["labels"] for s in again["series"]] == [{"service": "search"}]
        want = {t: v for t, v in again["series"][0]["points"] if v is not None}
        (drawn,) = chart_series(page, "requests")
        assert "search" in drawn["label"] and "mlapi" not in drawn["label"]
        got = {t: v for t, v in zip(drawn["xs"], drawn["values"], strict=True) if v is not None}
        complete = {t: v for t, v in want.items() if t <= max(got)}
        assert got == pytest.approx(complete)
        assert len(got) >= 55  # 30 minutes at the 1 h range's 30 s steps

        # The fleet table lists search alone; the instance drill-down filters further.
        rows = pg.locator("#fleet tr[data-instance]").evaluate_all(
            "els => els.map(e => e.dataset.instanceService + '/' + e.dataset.instance)"
        )
        assert rows == ["search/s-1", "search/s-2"]
        select_service(page, "search", "s-2")
        assert "instance=s-2" in pg.url
        settle(page)
        one = page_json(page, "/metrics/current", service="search", instance="s-2")
        assert one["instance"] == "s-2"
        assert value(page, card("requests_per_minute")) == pytest.approx(
            one["api_metrics"]["requests_per_minute"]
        )
        assert one["api_metrics"]["total_requests"] < api["total_requests"]
        # Reloading keeps the scope (it is in the URL).
        pg.reload()
        pg.wait_for_selector("body[data-ready='1']")
        assert pg.locator("#service-select").input_value() == "search"
        assert pg.locator("#instance-select").input_value() == "s-2"
    finally:
        fleet.resume()
    assert not page.errors, page.errors


def test_live_push_follows_the_selected_service(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    select_service(page, "search")
    pg.wait_for_selector("#conn[data-state=live]", timeout=15_000)
    # The stream reconnects with the service, and the pushed steps are search's own.
    pg.wait_for_function(
        "async () => { const m = await import('/js/main.js');"
        " return Boolean(m.lastPush?.windows?.['3600:30:search']); }",
        timeout=20_000,
    )
    before = int(pg.evaluate("document.body.dataset.liveUpdates || '0'"))
    pg.wait_for_function(
        f"() => Number(document.body.dataset.liveUpdates || 0) > {before}"
        " && document.body.dataset.liveSource === 'push'",
        timeout=20_000,
    )
    pushed = pg.evaluate(
        "async () => (await import('/js/main.js')).lastPush.windows['3600:30:search']"
    )
    labels = [s["labels"] for s in pushed["signals"]["request_rate"]]
    assert labels == [{"service": "search"}]
    models = {s["labels"]["service"] for s in pushed["signals"]["model_mae"]}
    assert models == {"search"}
    streams = [r.url for r in page.responses if urlsplit(r.url).path == "/events"]
    assert streams and params(streams[-1]).get("service") == "search"
    assert not page.errors, page.errors


def test_all_services_shows_per_service_breakdowns(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    fleet = fleet_of(backend)
    fleet.pause()
    try:
        settle(page)
        doc = page_json(page, "/metrics/services")
        by_service = {s["service"]: s for s in doc["services"]}
        assert sorted(by_service) == ["mlapi", "search"]
        for name, svc in by_service.items():
            row = f"#fleet tr[data-service='{name}']"
            api = svc["current"]["api_metrics"]
            assert value(page, f"{row} [data-field=requests_per_minute]") == pytest.approx(
                api["requests_per_minute"]
            )
            assert value(page, f"{row} [data-field=error_rate_percent]") == pytest.approx(
                api["error_rate_percent"]
            )
            assert value(page, f"{row} [data-field=p95_response_time_ms]") == pytest.approx(
                api["p95_response_time_ms"]
            )
        # The cards name each service's share next to the total.
        shown = pg.locator("[data-card='requests_per_minute'] [data-role=breakdown]").inner_text()
        rate = lambda v: f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"  # noqa: E731 - format.js rate()
        rpm = {n: s["current"]["api_metrics"]["requests_per_minute"] for n, s in by_service.items()}
        assert shown == f"mlapi {rate(rpm['mlapi'])} · search {rate(rpm['search'])}"
        # One model card per service and model: no card adds two services' predictions.
        names = sorted(
            pg.locator("#models article[data-model]").evaluate_all(
                "els => els.map(e => e.dataset.service + ' · ' + e.dataset.model)"
            )
        )
        assert names == [
            "mlapi · duration", "mlapi · result", "search · duration", "search · result",
        ]  # fmt: skip
        # The overview's MAE lines too: per service and model, each service's own MAE.
        lines = pg.locator("[data-card='model_mae'] .model-line").evaluate_all(
            "els => els.map(e => e.dataset.model)"
        )
        assert sorted(lines) == names
        for svc in by_service.values():
            for model, m in svc["current"]["model_metrics"].items():
                line = (
                    f"[data-card='model_mae'] .model-line[data-model='{svc['service']} · {model}']"
                )
                assert value(page, f"{line} [data-role=value]") == pytest.approx(m["avg_mae"])
                card = f"#models [data-service='{svc['service']}'][data-model='{model}']"
                assert value(page, f"{card} [data-role=mae]") == pytest.approx(m["avg_mae"])
                assert (
                    value(page, f"{card} [data-stat=predictions_count] [data-role=value]")
                    == m["predictions_count"]
                )
        # The route table separates mlapi's and search's routes.
        pairs = pg.locator("#api-perf tr[data-route]").evaluate_all(
            "els => els.map(e => e.dataset.routeService + ' ' + e.dataset.route)"
        )
        assert "mlapi /predict/results" in pairs and "search /search/predict/results" in pairs
        # Every chart's legend names the service of each line.
        for chart in ("requests", "latency", "errors", "mae"):
            labels = [s["label"] for s in chart_series(page, chart)]
            assert labels and all(("mlapi" in x) != ("search" in x) for x in labels), labels
    finally:
        fleet.resume()
    assert not page.errors, page.errors


def test_no_two_series_of_one_chart_share_a_colour(page: PageProbe, backend: Backend) -> None:
    page.page.click("#compare")  # the previous period adds dashed twins
    settle(page)
    for chart in ("requests", "latency", "errors", "mae"):
        series = [s for s in chart_series(page, chart) if not s["dash"]]
        colours = [s["stroke"] for s in series]
        assert len(series) >= 2, (chart, series)
        assert len(set(colours)) == len(colours), (chart, colours)
    latency = [s["label"] for s in chart_series(page, "latency") if not s["dash"]]
    assert sorted(latency) == [
        "avg · mlapi", "avg · search", "p95 · mlapi", "p95 · search", "p99 · mlapi", "p99 · search",
    ]  # fmt: skip
    # With 30 minutes stored, the hour before has no data: the page says so.
    page.page.click("[data-range='3600']")
    page.page.wait_for_selector("#graphs-note[data-previous-empty='1']")
    assert "no data in the previous period" in page.page.inner_text("#graphs-note")
    assert not page.errors, page.errors


def test_a_killed_instance_is_shown_stopped_and_leaves_uptime_and_memory(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    select_service(page, "mlapi")
    card = lambda key: f"[data-card='{key}'] [data-role=value]"  # noqa: E731
    # Both running: uptime is the longest-running instance's (i-2), memory the sum.
    pg.wait_for_function(
        "() => document.querySelectorAll(\"#fleet tr[data-state='running']"
        "[data-instance-service='mlapi']\").length === 2"
    )
    before = backend.get("/metrics/current", service="mlapi")["system_metrics"]
    assert before["memory_usage_mb"] > 420  # ~172 MiB + ~286 MiB
    assert before["uptime_seconds"] > 9000
    victim = member(backend, "mlapi", "i-2")
    killed_at = fleet_of(backend).kill(victim)
    row = "#fleet tr[data-instance='i-2']"
    pg.wait_for_selector(f"{row}[data-state='stopped']", timeout=(STALE_AFTER_S + 30) * 1000)
    stopped_after = time.time() - killed_at
    assert stopped_after <= STALE_AFTER_S + 25  # the window, a 10 s bucket, a refresh
    assert "last seen" in pg.inner_text(row)
    assert pg.locator(f"{row} [data-field=memory_usage_mb]").get_attribute("data-value") == ""

    # The "now" figures are i-1's alone, as the API says.
    def instance_one() -> dict:
        services = backend.get("/metrics/services")["services"]
        return next(
            i
            for s in services
            if s["service"] == "mlapi"
            for i in s["instances"]
            if i["instance"] == "i-1"
        )

    i1 = instance_one()
    pg.wait_for_function(
        f'() => Number(document.querySelector("{card("uptime")}").dataset.value) < 5000'
    )
    uptime = value(page, card("uptime"))
    later = instance_one()  # uptime moves on while the page is read: bracket it
    assert uptime is not None
    assert i1["uptime_seconds"] - 10 < uptime < later["uptime_seconds"] + 10
    now = backend.get("/metrics/current", service="mlapi")["system_metrics"]
    assert now["memory_usage_mb"] == pytest.approx(i1["memory_usage_mb"], rel=0.05)
    assert now["memory_usage_mb"] < 200
    sub = pg.inner_text("[data-card='uptime'] [data-role=sub]")
    assert "MB" in sub and float(re.search(r"([\d.]+) MB", sub).group(1)) < 200  # type: ignore[union-attr]
    assert not page.errors, page.errors


# -- annotations, the rule editor, silences ---------------------------------------------


def test_a_retrain_and_an_alert_appear_as_annotations(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    search = [m for m in backend.extra["members"] if m.service == "search"]
    for m in search:
        m.versions["result"] = "4"  # retrained: the next exports carry the new version
    rule = {
        "name": "search_traffic_seen", "signal": "request_rate", "comparison": ">",
        "threshold": 1, "window": "30s", "for": "0s", "filters": {"service": "search"},
        "channels": [], "severity": "info",
    }  # fmt: skip
    resp = backend.client.post("/alerts/rules", json=rule, headers=AUTH)
    assert resp.status_code == 201, resp.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = backend.get("/annotations", **{"from": str(time.time() - 600)})["annotations"]
        kinds = {a["kind"] for a in got}
        if {"alert", "version"} <= kinds:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"annotations missing: {got}")
    version = next(a for a in got if a["kind"] == "version")
    assert version["title"] == "result v4" and version["service"] == "search"
    assert "was 3" in version["text"]
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    for kind, text in (("version", "result v4"), ("alert", "search_traffic_seen firing")):
        marks = pg.locator(f"[data-chart='latency'] [data-annotation='{kind}']")
        marks.first.wait_for(state="attached", timeout=20_000)
        titles = marks.evaluate_all("els => els.map(e => e.getAttribute('title'))")
        assert any(text in t for t in titles), titles
    # The backend's own start is an annotation too (on the 1 h chart: it started minutes ago).
    restarts = pg.locator("[data-chart='requests'] [data-annotation='restart']")
    assert restarts.count() >= 1
    # Hovering shows what happened: the mark's tooltip (its title).
    mark = pg.locator("[data-chart='requests'] [data-annotation='version']").first
    assert "now version 4 (was 3)" in (mark.get_attribute("title") or "")
    backend.client.delete("/alerts/rules/search_traffic_seen", headers=AUTH)
    assert not page.errors, page.errors


def _open_alerts_tab(probe: PageProbe) -> None:
    pg = probe.page
    pg.evaluate(f"sessionStorage.setItem('mlpulse.token', {json.dumps(TOKEN)})")
    pg.click("a.tab[data-view='alerts']")
    pg.wait_for_selector("#rules tr[data-rule]")


def test_a_rule_created_in_the_editor_fires(page: PageProbe, backend: Backend) -> None:
    pg = page.page
    _open_alerts_tab(page)
    pg.click("[data-action='new-rule']")
    form = pg.locator("#rule-editor form")
    form.locator("[data-field=name]").fill("bad name!")
    assert "letters, digits" in form.locator("[data-error-for=name]").inner_text()
    form.locator("[data-field=name]").fill("mlapi_busy")
    form.locator("[data-field=signal]").select_option("request_rate")
    form.locator("[data-field=threshold]").fill("")
    assert form.locator("[data-error-for=threshold]").inner_text() == "a number is needed"
    form.locator("[data-field=threshold]").fill("10")
    form.locator("[data-field=clear_threshold]").fill("20")  # above the threshold for '>'
    assert (
        "must be ≤ the threshold" in form.locator("[data-error-for=clear_threshold]").inner_text()
    )
    form.locator("[data-field=clear_threshold]").fill("8")
    form.locator("[data-field=window]").fill("1m")
    form.locator("[data-field=for]").fill("0s")
    form.locator("[data-field=min_samples]").fill("5")
    form.locator("[data-field=severity]").select_option("critical")
    form.locator("[data-field=service]").select_option("mlapi")
    assert form.get_attribute("data-errors") == "0"
    form.locator("[data-action=save-rule]").click()
    pg.wait_for_selector("#rules tr[data-rule=mlapi_busy]")
    saved = next(r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "mlapi_busy")
    assert saved["signal"] == "request_rate" and saved["threshold"] == 10
    assert saved["clear_threshold"] == 8 and saved["window"] == 60 and saved["for"] == 0
    assert saved["min_samples"] == 5 and saved["severity"] == "critical"
    assert saved["filters"] == {"service": "mlapi"}
    # It fires (mlapi serves ~100 requests a minute), on the API and on the page.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        firing = [
            a for a in backend.get("/alerts/active")["alerts"]
            if a["rule"] == "mlapi_busy" and a["state"] == "firing"
        ]  # fmt: skip
        if firing:
            break
        time.sleep(0.5)
    assert firing and firing[0]["labels"] == {"service": "mlapi"}
    pg.click("a.tab[data-view='dashboard']")
    pg.locator("#alerts-active [data-alert]").filter(has_text="mlapi_busy").wait_for(timeout=20_000)

    # A duplicate starts from the rule; a server-side error lands next to its field.
    _open_alerts_tab(page)
    pg.locator("tr[data-rule=mlapi_busy] [data-action=duplicate]").click()
    assert form.locator("[data-field=name]").input_value() == "mlapi_busy_copy"
    assert form.locator("[data-field=threshold]").input_value() == "10"
    form.locator("[data-field=name]").fill("high_error_rate")  # taken
    form.locator("[data-action=save-rule]").click()
    err = form.locator("[data-error-for=name]")
    err.wait_for()
    assert "exists already" in err.inner_text()
    form.locator("[data-action=cancel]").click()
    # Delete (asks for a second click), and the alert goes with the rule.
    delete = pg.locator("tr[data-rule=mlapi_busy] [data-action=delete]")
    delete.click()
    delete.click()
    pg.wait_for_selector("tr[data-rule=mlapi_busy]", state="detached")
    assert all(r["name"] != "mlapi_busy" for r in backend.get("/alerts/configure")["rules"])
    # The one failed request is the refused save (Chromium logs every 4xx to the console).
    assert page.errors == [
        "console: Failed to load resource: the server responded with a status of 422"
        " (Unprocessable Entity)"
    ], page.errors


def test_the_preview_shows_the_intervals_the_engine_computes(
    page: PageProbe, backend: Backend, tmp_path: Path
) -> None:
    pg = page.page
    fleet = fleet_of(backend)
    fleet.pause()  # the same stored data for the page's preview and the replay below
    try:
        _open_alerts_tab(page)
        pg.locator("tr[data-rule=high_error_rate] [data-action=edit]").click()
        form = pg.locator("#rule-editor form")
        # search's rate swings (660 ± 210 /min, a 63-minute period): above 750 for a while.
        form.locator("[data-field=signal]").select_option("request_rate")
        form.locator("[data-field=threshold]").fill("750")
        form.locator("[data-field=clear_threshold]").fill("720")
        form.locator("[data-field=window]").fill("1m")
        form.locator("[data-field=for]").fill("2m")
        form.locator("[data-field=min_samples]").fill("1")
        form.locator("[data-field=service]").select_option("search")
        form.locator("[data-action=preview]").click()
        pg.wait_for_selector("[data-role=preview] [data-preview-count]", timeout=60_000)
        doc = page_json(page, "/alerts/preview")
        shown = pg.locator("[data-preview-interval]").evaluate_all(
            """els => els.map(e => ({labels: JSON.parse(e.dataset.labels),
                 pending_at: Number(e.dataset.pendingAt), fired_at: Number(e.dataset.firedAt),
                 resolved_at: e.dataset.resolvedAt === ''
                   ? null : Number(e.dataset.resolvedAt)}))"""
        )
        # The alert engine itself, with its clock at the same evaluation times.
        rule = Rule.model_validate(
            {
                **next(
                    r for r in backend.get("/alerts/configure")["rules"]
                    if r["name"] == "high_error_rate"
                ),
                "signal": "request_rate", "comparison": ">",
                "threshold": 750, "clear_threshold": 720, "window": 60, "for": 120,
                "min_samples": 1, "filters": {"service": "search"}, "channels": [],
            }
        )  # fmt: skip
        clock = [0.0]
        engine = AlertEngine(
            AlertStore(tmp_path / "replay.db"),
            signal_source(backend.app.state.store),
            None,
            clock=lambda: clock[0],
        )
        engine.set_config(AlertConfig(rules=[rule]))
        expected: list[dict[str, Any]] = []
        pending: dict[str, float] = {}
        t = doc["from"]
        while t <= doc["to"]:
            clock[0] = t
            for tr in engine.evaluate_once():
                key = json.dumps(tr.labels, sort_keys=True)
                if tr.to_state == "pending":
                    pending[key] = tr.at
                elif tr.to_state == "firing":
                    expected.append(
                        {
                            "labels": tr.labels,
                            "pending_at": pending.pop(key, tr.at),
                            "fired_at": tr.at,
                            "resolved_at": None,
                        }
                    )
                elif tr.to_state == "resolved":
                    next(e for e in reversed(expected) if e["labels"] == tr.labels)[
                        "resolved_at"
                    ] = tr.at
            t += doc["step"]
        engine.close()
        assert expected, "the replayed engine never fired: the test data missed the threshold"
        assert shown == expected
        assert doc["step"] == 60 and doc["to"] - doc["from"] == 86_400
        count = pg.locator("[data-preview-count]").get_attribute("data-preview-count")
        assert count == str(len(expected))
        form.locator("[data-action=cancel]").click()
        # Nothing was saved by previewing.
        saved = next(
            r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "high_error_rate"
        )
        assert saved["signal"] == "error_rate_percent"
    finally:
        fleet.resume()
    assert not page.errors, page.errors


def test_a_silence_is_created_listed_and_expired_from_the_page(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    _open_alerts_tab(page)
    form = pg.locator("#silences form")
    form.locator("[data-field=matchers]").fill("nonsense")
    form.locator("[data-action=add-silence]").click()
    assert "write name=value" in form.locator("[data-error-for=matchers]").inner_text()
    form.locator("[data-field=matchers]").fill("alertname=high_p95_latency, service=~sea.*")
    form.locator("[data-field=hours]").fill("2")
    form.locator("[data-field=comment]").fill("deploying search")
    form.locator("[data-action=add-silence]").click()
    row = pg.locator("#silences tr[data-silence]").filter(has_text="deploying search")
    row.wait_for()
    assert row.get_attribute("data-state") == "active"
    listed = [
        s for s in backend.get("/alerts/silences")["silences"] if s["comment"] == "deploying search"
    ]
    assert len(listed) == 1 and listed[0]["active"]
    assert listed[0]["matchers"] == [
        {"name": "alertname", "op": "=", "value": "high_p95_latency"},
        {"name": "service", "op": "=~", "value": "sea.*"},
    ]
    assert listed[0]["ends_at"] - listed[0]["starts_at"] == pytest.approx(7200, abs=1)
    assert "alertname=high_p95_latency, service=~sea.*" in row.inner_text()
    row.locator("[data-action=expire]").click()
    # Expired early: it leaves the list of silences, on the page and in the API.
    pg.wait_for_selector(f"#silences tr[data-silence='{listed[0]['id']}']", state="detached")
    pg.wait_for_selector(".toast:has-text('Silence expired')")
    left = [s for s in backend.get("/alerts/silences")["silences"] if s["id"] == listed[0]["id"]]
    assert left == []
    assert not page.errors, page.errors


def test_an_acknowledged_and_silenced_alert_looks_handled(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    rule = {
        "name": "search_handled", "signal": "request_rate", "comparison": ">", "threshold": 1,
        "window": "30s", "for": "0s", "filters": {"service": "search"}, "channels": [],
    }  # fmt: skip
    assert backend.client.post("/alerts/rules", json=rule, headers=AUTH).status_code == 201
    try:
        pg.evaluate(f"sessionStorage.setItem('mlpulse.token', {json.dumps(TOKEN)})")
        card = pg.locator("#alerts-active [data-alert]").filter(has_text="search_handled")
        card.locator(".tag", has_text="firing").wait_for(timeout=20_000)
        assert card.get_attribute("data-acknowledged") == "0"
        card.locator("button", has_text="Acknowledge").click()
        pg.wait_for_selector(
            "#alerts-active [data-alert][data-acknowledged='1']:has-text('search_handled')"
        )
        card.locator("button", has_text="Silence 1 h").click()
        handled = pg.locator("#alerts-active [data-alert][data-silenced='1']").filter(
            has_text="search_handled"
        )
        handled.wait_for()
        assert "is-silenced" in (handled.get_attribute("class") or "")
        assert "silenced until" in handled.locator("[data-badge=silenced]").inner_text()
        assert handled.locator("[data-badge=acknowledged]").count() == 1
        handled.locator("[data-action=unsilence]").click()
        pg.wait_for_selector(
            "#alerts-active [data-alert][data-silenced='0']:has-text('search_handled')"
        )
        active = [
            a for a in backend.get("/alerts/active")["alerts"] if a["rule"] == "search_handled"
        ]
        assert active and active[0]["silenced_by"] is None
    finally:
        backend.client.delete("/alerts/rules/search_handled", headers=AUTH)
    assert not page.errors, page.errors


# -- screenshots ------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["dashboard", "alerts", "admin"])
def test_full_page_screenshots_with_two_services(browser: Any, backend: Backend, view: str) -> None:
    """Full-page screenshots of each tab; `MLPULSE_UPDATE_DOC_SCREENSHOTS=1` copies them
    into docs/img/ (fleet-<view>.png), the pictures docs/dashboard.md shows."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, color_scheme="light", device_scale_factor=1,
        timezone_id="UTC", locale="en-US",
    )  # fmt: skip
    try:
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(f"{backend.url}/#{view}")
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        if view == "dashboard":
            for chart in ("requests", "latency", "errors", "mae"):
                pg.wait_for_function(
                    f"() => Number(document.querySelector('[data-chart={chart}]')"
                    ".dataset.points || 0) > 0"
                )
            pg.wait_for_selector("#fleet tr[data-instance]")
        else:
            pg.wait_for_selector("#rules tr[data-rule]" if view == "alerts" else ".scenario")
        if view == "alerts":
            # The editor open on a rule, previewed at a threshold these services cross.
            pg.evaluate(f"sessionStorage.setItem('mlpulse.token', {json.dumps(TOKEN)})")
            pg.locator("tr[data-rule=high_p95_latency] [data-action=edit]").click()
            form = pg.locator("#rule-editor form")
            form.locator("[data-field=threshold]").fill("230")
            form.locator("[data-field=clear_threshold]").fill("210")
            form.locator("[data-action=preview]").click()
            pg.wait_for_selector("[data-role=preview] [data-preview-count]", timeout=60_000)
        pg.wait_for_timeout(800)
        path = save_screenshot(pg, f"fleet-{view}.png")
        assert path.stat().st_size > 30_000
        assert not errors, errors
        if os.environ.get("MLPULSE_UPDATE_DOC_SCREENSHOTS"):
            target = REPO / "docs" / "img" / f"fleet-{view}.png"
            shutil.copyfile(path, target)
    finally:
        context.close()
