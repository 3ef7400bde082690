"""The dashboard's screenshots: test-artifacts/ on every run, the README's on request.

The backend holds 30 minutes of realistic traffic (no markup labels here) and one rule is
tightened so an alert fires, as it would on a real day. Set
`MLPULSE_UPDATE_README_SCREENSHOT=1` to also write docs/img/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import pytest
from browser_testing import REPO, TOKEN, Backend, save_screenshot

pytestmark = pytest.mark.browser

MARKUP_LABELS = False  # a clean backend: this page is the one users see in the README
HISTORY_MINUTES = 60  # fill the default 1 h range


def _fire_an_alert(backend: Backend) -> None:
    # A latency rule tightened below the traffic's p95: it fires and stays firing (the
    # MAE rule fires on its interval's lower bound, which sampling noise can clear).
    rule = next(
        r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "high_p95_latency"
    )
    rule.update(
        threshold=1,
        clear_threshold=0.5,
        min_samples=1,
        description="The 95th percentile request latency is above 1 ms.",
        **{"for": "0s", "keep_firing_for": "1h"},
    )
    resp = backend.client.post(
        "/alerts/configure",
        json={"rules": [rule]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(a["state"] == "firing" for a in backend.get("/alerts/active")["alerts"]):
            return
        time.sleep(0.5)  # the engine evaluates every 5 s
    raise AssertionError("the tightened latency rule did not fire")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_full_page_screenshot(browser: Any, backend: Backend, scheme: str) -> None:
    _fire_an_alert(backend)  # both schemes: the interval-based MAE rule may have cleared
    context = browser.new_context(
        viewport={"width": 1440, "height": 900},
        color_scheme=scheme,
        device_scale_factor=1,
        timezone_id="UTC",
        locale="en-US",
    )
    try:
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(backend.url + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        pg.wait_for_selector("#alerts-active [data-alert]", timeout=30_000)
        for chart in ("requests", "latency", "errors", "mae", "distribution"):
            pg.wait_for_function(
                f"() => Number(document.querySelector('[data-chart={chart}]')"
                ".dataset.points || 0) > 0"
            )
        pg.wait_for_timeout(600)  # gauge transition
        name = "dashboard.png" if scheme == "light" else "dashboard-dark.png"
        path = save_screenshot(pg, name)
        assert path.stat().st_size > 50_000
        assert not errors, errors
        if scheme == "light" and os.environ.get("MLPULSE_UPDATE_README_SCREENSHOT"):
            target = REPO / "docs" / "img" / "dashboard.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    finally:
        context.close()
