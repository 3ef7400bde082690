"""Fixtures for the browser tests (helpers in browser_testing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser_testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TOKEN,
    XSS_MODEL,
    XSS_ROUTE,
    Backend,
    PageProbe,
    ServerThread,
    require_chromium,
    with_batch_parts,
)
from browser_traffic import Traffic

from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings


@pytest.fixture(scope="module")
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A backend with 30 minutes of realistic traffic (one per test module).

    Unless the module sets `MARKUP_LABELS = False`, the traffic also carries a model name
    and a route that are HTML markup, which the page must show as text.
    """
    data_dir = tmp_path_factory.mktemp("browser-data")
    mlapi_server = None
    mlapi_url = "http://127.0.0.1:9"  # nothing listens: admin actions answer 502
    if getattr(request.module, "WITH_MLAPI", False):
        from mlpulse.mlapi.app import create_app as create_mlapi
        from mlpulse.mlapi.config import MlapiSettings

        mlapi_settings = MlapiSettings(
            api_token=TOKEN, telemetry_enabled=False, training_samples=300, model_trees=8
        )
        mlapi_server = ServerThread(create_mlapi(mlapi_settings))
        mlapi_url = mlapi_server.start()
    settings = BackendSettings(
        data_dir=data_dir,
        api_token=TOKEN,
        jaeger_ui_url="http://jaeger.example:16686",
        mlapi_url=mlapi_url,
    )
    app = create_app(settings)
    server = ServerThread(app)
    url = server.start()
    client = httpx.Client(base_url=url, timeout=30)
    traffic = Traffic(url)
    if getattr(request.module, "MARKUP_LABELS", True):
        traffic.extra_model = XSS_MODEL
        traffic.extra_route = XSS_ROUTE
    try:
        traffic.backfill(minutes=getattr(request.module, "HISTORY_MINUTES", 30))
        yield Backend(url, app, client, traffic)
    finally:
        traffic.shutdown()
        client.close()
        server.stop()
        if mlapi_server is not None:
            mlapi_server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, backend: Backend) -> Iterator[PageProbe]:
    """A fresh browser context (light theme, 1600 px wide) on the dashboard, loaded."""
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000},
        color_scheme="light",
        accept_downloads=True,
        timezone_id="UTC",
        locale="en-US",
    )
    pg = context.new_page()
    probe = PageProbe(pg)

    def on_dialog(dialog: Any) -> None:
        probe.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda exc: probe.errors.append(f"pageerror: {exc}"))
    pg.on("response", lambda resp: probe.responses.extend(with_batch_parts(resp)))
    pg.on(
        "console",
        lambda msg: probe.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    pg.goto(backend.url + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    try:
        yield probe
    finally:
        context.close()
