"""Traces end to end in Chromium: the real Jaeger UI behind `mlpulse demo --with-collector`,
and trace links of the dashboard that always lead somewhere.

The first tests run the demo as a user does (`python -m mlpulse demo --with-collector`,
backend and mlapi on free ports; the collector and Jaeger on the demo's fixed ports, so
outside CI they are skipped when one is taken, as in tests/pipeline/test_end_to_end.py).
Jaeger is the binary of scripts/build-binaries.sh serving the UI assets kept in
collector-config/jaeger-ui/. A short latency-spike scenario makes slow requests, so the
slowest exemplar is a known slow one and a latency alert fires.

The last test is the embedded default (no trace backend): the page says so where the trace
links would be, with the command that adds traces, and no link points anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
from browser_testing import ServerThread, require_chromium, save_screenshot
from browser_traffic import Traffic

from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings
from tests.pipeline.harness import Proc, free_port, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.pipeline, pytest.mark.slow]

TOKEN = "jaeger-ui-test-token"
JAEGER = "http://127.0.0.1:16686"
DEMO_PORTS = (4317, 4318, 13133, 14317, 14318, 13134, 16686, 16685, 8888, 8889)
SPIKE_S = 25.0  # latency-spike: each prediction waits an extra 400-900 ms
SLOW_MS = 400.0
PLACEHOLDER = "This is not the Jaeger UI you are looking for"


@dataclass
class Demo:
    proc: Proc
    backend: str
    mlapi: str
    slow: dict[str, Any]  # the slowest exemplar: trace_id, span_id, value (s), ...

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(self.backend + path, params=params, timeout=10)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()


def _taken(ports: tuple[int, ...]) -> list[int]:
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _json(url: str) -> Any:
    try:
        resp = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _jaeger_span(trace_id: str, span_id: str) -> dict[str, Any] | None:
    body = _json(f"{JAEGER}/api/traces/{trace_id}")
    for trace in (body or {}).get("data") or []:
        for span in trace["spans"]:
            if span["spanID"] == span_id:
                return dict(span)
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    require_chromium()
    from mlpulse import _binaries

    try:
        _binaries.find()
    except RuntimeError as exc:
        _skip_or_fail(str(exc))
    taken = _taken(DEMO_PORTS)
    if taken:
        _skip_or_fail(f"the demo's fixed collector/Jaeger ports are in use: {taken}")
    tmp = tmp_path_factory.mktemp("demo-jaeger")
    backend_port, mlapi_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLPULSE_"))}
    for name in ("MLPULSE_BIN_CACHE", "MLPULSE_OTELCOL_BIN", "MLPULSE_JAEGER_BIN"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(PYTHONUNBUFFERED="1", MLPULSE_API_TOKEN=TOKEN)
    argv = [
        sys.executable, "-m", "mlpulse", "demo", "--with-collector",
        "--backend-port", str(backend_port), "--mlapi-port", str(mlapi_port),
        "--data-dir", str(tmp / "data"), "--rate", "10", "--export-interval", "1",
    ]  # fmt: skip
    proc = Proc("demo", argv, env, tmp)
    children: list[psutil.Process] = []
    try:
        demo = Demo(proc, f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{mlapi_port}", {})

        def up(what: str, predicate: Any, timeout: float = 180) -> None:
            try:
                wait_until(lambda: proc.alive() and predicate(), timeout, what, interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{proc.describe()}") from None

        up(
            "mlapi traced in Jaeger",
            lambda: "mlapi" in ((_json(f"{JAEGER}/api/services") or {}).get("data") or []),
        )
        up("mlapi ready", lambda: _json(f"{demo.mlapi}/health") is not None)
        children = psutil.Process(proc.popen.pid).children(recursive=True)
        # A latency alert that fires on this spike, within seconds.
        rules = demo.get("/alerts/configure")["rules"]
        rule = next(r for r in rules if r["name"] == "high_p95_latency")
        rule.update(threshold=300, clear_threshold=250, window="1m", min_samples=1, **{"for": "0s"})
        resp = httpx.post(
            demo.backend + "/alerts/configure", json={"rules": [rule]},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        resp = httpx.post(
            demo.mlapi + "/admin/scenario", json={"name": "latency-spike", "duration_s": SPIKE_S},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text

        def slow_exemplar_in_jaeger() -> bool:
            body = _json(f"{demo.backend}/metrics/exemplars?limit=1") or {}
            top = (body.get("exemplars") or [None])[0]
            if not top or top["value"] * 1000 < SLOW_MS:
                return False
            if _jaeger_span(top["trace_id"], top["span_id"]) is None:
                return False
            demo.slow = top
            return True

        up(
            "a slow request's exemplar in the backend and its trace in Jaeger",
            slow_exemplar_in_jaeger,
            60,
        )
        yield demo
    finally:
        if not children and proc.alive():
            children = psutil.Process(proc.popen.pid).children(recursive=True)
        if proc.alive():
            proc.popen.send_signal(signal.SIGINT)
            with contextlib.suppress(Exception):
                proc.popen.wait(timeout=60)
        proc.stop()
        for child in children:  # only the demo's own children, by pid
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    child.kill()


@dataclass
class Browsing:
    """A fresh browser context, and the JavaScript errors of every page opened in it."""

    ctx: Any
    errors: list[str]

    def new_page(self) -> Any:
        return self.ctx.new_page()

    def expect_page(self) -> Any:
        return self.ctx.expect_page()


@pytest.fixture
def context(browser: Any) -> Iterator[Browsing]:
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 900}, color_scheme="light", timezone_id="UTC",
        locale="en-US",
    )  # fmt: skip
    errors: list[str] = []
    ctx.on("page", lambda page: page.on("pageerror", lambda exc: errors.append(str(exc))))
    try:
        yield Browsing(ctx, errors)
    finally:
        ctx.close()


def test_jaeger_ui_lists_mlapi_in_its_search_form_and_shows_a_traces_spans(
    demo: Demo, context: Browsing
) -> None:
    pg = context.new_page()
    pg.goto(f"{JAEGER}/search")
    assert pg.title() == "Jaeger UI"
    assert PLACEHOLDER not in pg.content()
    # The service picker of the search form offers mlapi (from Jaeger's /api/services).
    pg.locator("form .ant-select").first.click()
    option = pg.locator(".ant-select-item-option", has_text=re.compile(r"^mlapi$"))
    option.wait_for(timeout=15_000)
    option.click()
    pg.locator("[data-test=submit-btn]").click()
    results = pg.locator(".ResultItem")
    results.first.wait_for(timeout=15_000)
    assert "service=mlapi" in pg.url
    assert "mlapi" in results.first.inner_text()

    # A trace's spans: the slow request's trace, in the trace view.
    trace_id, span_id = demo.slow["trace_id"], demo.slow["span_id"]
    pg.goto(f"{JAEGER}/trace/{trace_id}")
    row = pg.locator(".span-row", has=pg.locator(".span-svc-name", has_text="mlapi"))
    row.first.wait_for(timeout=15_000)
    assert pg.locator(".TracePageHeader").inner_text().find(trace_id[:7]) >= 0
    span = _jaeger_span(trace_id, span_id)
    assert span is not None
    assert row.first.locator(".span-name").inner_text().strip().endswith(span["operationName"])
    assert not context.errors, context.errors


def test_an_exemplar_link_opens_its_trace_in_the_jaeger_ui_with_the_slow_span(
    demo: Demo, context: Browsing
) -> None:
    assert demo.get("/dashboard/config")["jaeger_ui_url"] == JAEGER  # set by the demo itself
    pg = context.new_page()
    pg.goto(demo.backend + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    chip = pg.locator("#exemplars a[data-trace]").first  # slowest first
    chip.wait_for(timeout=20_000)
    trace_id = chip.get_attribute("data-trace") or ""
    assert chip.get_attribute("href") == f"{JAEGER}/trace/{trace_id}"
    # The slowest exemplar shown is a request of the spike (over 400 ms), with its span.
    exemplars = demo.get("/metrics/exemplars", limit=1000)["exemplars"]
    matching = [e for e in exemplars if e["trace_id"] == trace_id]
    assert matching, (chip.inner_text(), chip.get_attribute("title"), exemplars[:3], len(exemplars))
    exemplar = matching[0]
    assert exemplar["value"] * 1000 >= SLOW_MS, exemplar
    # The trace goes through the collector's batch to Jaeger, the exemplar through the
    # metrics pipeline to the backend: the newest may be on the page a moment first.
    wait_until(
        lambda: _jaeger_span(trace_id, exemplar["span_id"]) is not None,
        30, f"the span of exemplar {exemplar} in Jaeger", interval=0.5,
    )  # fmt: skip
    span = _jaeger_span(trace_id, exemplar["span_id"])
    assert span is not None
    # The span is the interval the exemplar measured: the same length, to the microsecond
    # Jaeger keeps (the middleware gives the span the duration's own clock readings).
    assert span["duration"] / 1000 == pytest.approx(exemplar["value"] * 1000, abs=0.002)

    with context.expect_page() as popup_info:
        chip.click()
    jaeger_pg = popup_info.value
    jaeger_pg.wait_for_load_state()
    assert jaeger_pg.url == f"{JAEGER}/trace/{trace_id}"
    header = jaeger_pg.locator(".TracePageHeader")
    header.wait_for(timeout=15_000)
    assert PLACEHOLDER not in jaeger_pg.content()
    assert trace_id[:7] in header.inner_text()
    assert f"{span['operationName']}" in header.inner_text()
    # Open the span's details: its span id is the exemplar's, its duration the slow one.
    row = jaeger_pg.locator(".span-row", has_text=span["operationName"]).first
    row.locator(".span-name-wrapper").click()
    details = jaeger_pg.locator(".TraceTimelineViewer")
    details.get_by_text(exemplar["span_id"]).first.wait_for(timeout=10_000)
    assert "http.route=" + exemplar["labels"]["http.route"] in details.inner_text()
    # The picture of docs/setup.md (copied from test-artifacts/ by hand).
    jaeger_pg.set_viewport_size({"width": 1400, "height": 640})
    save_screenshot(jaeger_pg, "jaeger-trace.png")
    assert not context.errors, context.errors


def test_a_latency_alert_links_to_its_slowest_trace_and_a_prefilled_jaeger_search(
    demo: Demo, context: Browsing
) -> None:
    pg = context.new_page()
    pg.goto(demo.backend + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    alert = pg.locator("#alerts-active [data-alert]").filter(has_text="high_p95_latency")
    alert.wait_for(timeout=60_000)
    slowest = alert.locator("a[data-trace]")
    slowest.wait_for(timeout=20_000)
    assert re.fullmatch(rf"{JAEGER}/trace/[0-9a-f]{{32}}", slowest.get_attribute("href") or "")
    search = alert.locator("a[data-trace-search]")
    href = search.get_attribute("href") or ""
    active = next(
        a for a in demo.get("/alerts/active")["alerts"] if a["rule"] == "high_p95_latency"
    )
    q = dict(httpx.URL(href).params)
    assert href.startswith(f"{JAEGER}/search?")
    assert q["service"] == "mlapi" and q["lookback"] == "custom"
    assert q["minDuration"] == "300ms"  # the rule's threshold
    # The window: from a minute before the alert went pending, to when the page drew it.
    assert int(q["start"]) == int((active["pending_since"] - 60) * 1e6)
    assert int(q["start"]) < int(q["end"]) <= int((time.time() + 1) * 1e6)

    with context.expect_page() as popup_info:
        search.click()
    jaeger_pg = popup_info.value
    results = jaeger_pg.locator(".ResultItem")
    results.first.wait_for(timeout=20_000)
    assert PLACEHOLDER not in jaeger_pg.content()
    # The form is prefilled, and every trace found lasted at least the threshold.
    assert jaeger_pg.locator("input[name=minDuration]").input_value() == "300ms"
    found = _json(
        f"{JAEGER}/api/traces?service=mlapi&start={q['start']}&end={q['end']}"
        f"&minDuration=300ms&limit=1500"
    )
    assert found and found["data"]
    for trace in found["data"]:
        assert max(s["duration"] for s in trace["spans"]) >= 300_000  # µs
    # What the UI lists is that search: each result's trace id is among those found.
    shown = jaeger_pg.locator(".ResultItemTitle--idExcerpt").all_inner_texts()
    assert shown and len(shown) <= 20
    ids = {t["traceID"][:7] for t in found["data"]}
    assert all(text.strip() in ids for text in shown), (shown, ids)
    assert not context.errors, context.errors


# --------------------------------------------------------------------------- embedded default


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A backend with no trace backend configured (MLPULSE_JAEGER_UI_URL unset)."""
    settings = BackendSettings(
        data_dir=tmp_path_factory.mktemp("embedded"), api_token=TOKEN, jaeger_ui_url=""
    )
    server = ServerThread(create_app(settings))
    url = server.start()
    traffic = Traffic(url)
    try:
        traffic.backfill(minutes=10)
        yield url
    finally:
        traffic.shutdown()
        server.stop()


def test_without_a_trace_backend_the_page_says_so_where_the_links_would_be(
    embedded: str, browser: Any
) -> None:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="en-US")
    try:
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(embedded + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        note = pg.locator("#exemplars [data-no-traces]")
        note.wait_for(timeout=10_000)
        assert "No trace backend is configured" in note.inner_text()
        assert note.locator("code").inner_text() == "mlpulse demo --with-collector"
        # A firing latency alert says the same where its trace links would be.
        rule = next(
            r for r in httpx.get(embedded + "/alerts/configure").json()["rules"]
            if r["name"] == "high_p95_latency"
        )  # fmt: skip
        rule.update(threshold=50, clear_threshold=40, min_samples=1, **{"for": "0s"})
        resp = httpx.post(
            embedded + "/alerts/configure", json={"rules": [rule]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        alert = pg.locator("#alerts-active [data-alert]").filter(has_text="high_p95_latency")
        alert.wait_for(timeout=30_000)
        alert_note = alert.locator("[data-no-traces]")
        alert_note.wait_for(timeout=10_000)
        assert "mlpulse demo --with-collector" in alert_note.inner_text()
        # No trace link, no chart marker: nothing points at a trace view that is not there.
        hrefs = pg.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        assert not [h for h in hrefs if "/trace/" in h or "/search?" in h], hrefs
        assert pg.locator("a[data-trace], a[data-trace-marker], a[data-trace-search]").count() == 0
        assert json.loads(httpx.get(embedded + "/dashboard/config").text)["jaeger_ui_url"] == ""
        assert not errors, errors
    finally:
        ctx.close()
