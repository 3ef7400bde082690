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
    rule = next(
        r for r in backend.get("/alerts/configure")["rules"] if r["name"] == "model_mae_degradation"
    )
    rule.update(
        threshold=15,
        clear_threshold=12,
        description="A model's MAE is more than 15 % above its version's training baseline.",
        **{"for": "0s"},
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
    raise AssertionError("the tightened MAE rule did not fire")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_full_page_screenshot(browser: Any, backend: Backend, scheme: str) -> None:
    if scheme == "light":
        _fire_an_alert(backend)
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
        pg.wait_for_selector("#alerts-active [data-alert]", timeout=10_000)
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
