"""Take the README screenshot from a running mlpulse (the demo), in Debian's Chromium.

    make demo                      # in one terminal; let it run ~15 minutes
    .venv/bin/python tests/browser/screenshot_demo.py http://127.0.0.1:8003/

Writes docs/img/dashboard.png (light), docs/img/alerts.png and docs/img/admin.png (the
tour in docs/dashboard.md) and test-artifacts/dashboard-demo-dark.png. Not a
test: the browser tests make their own data (tests/browser/test_screenshot.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main(url: str, range_seconds: str = "900") -> None:
    targets = {
        "light": REPO / "docs" / "img" / "dashboard.png",
        "dark": REPO / "test-artifacts" / "dashboard-demo-dark.png",
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for scheme, target in targets.items():
            page = browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme=scheme)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.click(f"[data-range='{range_seconds}']")
            page.wait_for_timeout(2_500)
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target), full_page=True)
            print(target)
            page.close()
        # The tour's other views, light theme: alerts and rules, admin and diagnostics.
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, color_scheme="light")
        for view in ("alerts", "admin"):
            page.goto(f"{url.rstrip('/')}/#{view}")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.wait_for_timeout(2_500)
            target = REPO / "docs" / "img" / f"{view}.png"
            page.screenshot(path=str(target), full_page=False)
            print(target)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
