"""The alerts view says "muted until …" for an alert inside a mute time interval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from browser_testing import TOKEN, Backend, PageProbe

pytestmark = pytest.mark.browser

MARKUP_LABELS = False
HISTORY_MINUTES = 2


def test_an_alert_in_a_mute_interval_shows_until_when(page: PageProbe, backend: Backend) -> None:
    today = datetime.now(UTC)
    weekday = today.strftime("%A").lower()
    config = backend.get("/alerts/configure")
    rule = next(r for r in config["rules"] if r["name"] == "high_p95_latency")
    rule.update(threshold=0, clear_threshold=0, min_samples=1, mute_time_intervals=["today"])
    rule["for"] = "0s"
    resp = backend.client.post(
        "/alerts/configure",
        json={
            "rules": [rule],
            # All of today (UTC): muted until the next midnight.
            "time_intervals": [{"name": "today", "weekdays": [weekday], "action": "hold"}],
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 200, resp.text
    if datetime.now(UTC).date() != today.date():  # midnight passed meanwhile
        pytest.skip("the test straddled midnight UTC")
    pg = page.page
    alert = pg.locator("#alerts-active [data-alert]").filter(has_text="high_p95_latency")
    alert.wait_for(timeout=20_000)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() + 86400
    active = [a for a in backend.get("/alerts/active")["alerts"] if a["rule"] == "high_p95_latency"]
    assert active and {a["muted_until"] for a in active} == {midnight}
    assert {tuple(a["muted_by"]) for a in active} == {("today",)}
    alert.filter(has_text="muted until").filter(has_text="(today)").wait_for(timeout=10_000)
    assert not page.errors, page.errors
