"""The Admin view against a real mlapi behind the backend's `/admin/*` proxy."""

from __future__ import annotations

import pytest
from browser_testing import TOKEN, Backend, PageProbe
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

MARKUP_LABELS = False
HISTORY_MINUTES = 2
WITH_MLAPI = True  # the backend's mlapi_url points at a real mlapi in this process


def _toast(page: PageProbe, text: str) -> str:
    toast = page.page.locator(".toast", has_text=text).last
    toast.wait_for(timeout=30_000)
    return toast.inner_text()


def test_admin_actions_ask_for_the_token_once_and_reach_mlapi(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    pg.click("a.tab[data-view=admin]")

    # The first state-changing action asks for the token, in the page's own dialog.
    pg.click("[data-action='admin/retrain']")
    pg.wait_for_selector("#token-dialog[open]")
    pg.fill("#token-input", TOKEN)
    pg.click("#token-dialog button[type=submit]")
    assert "trained" in _toast(page, "Retrain the models:")

    # Later actions use the token kept in sessionStorage: no dialog.
    pg.click("[data-action='admin/cache/clear']")
    assert "cache entries dropped" in _toast(page, "Clear the cache:")
    assert not pg.locator("#token-dialog[open]").count()

    # A fault scenario starts on mlapi and stops again.
    pg.click("[data-scenario=latency-spike]")
    pg.wait_for_selector("[data-scenario=latency-spike].is-active", timeout=10_000)
    state = backend.client.get(
        "/admin/scenario", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert state["active"] is True and state["name"] == "latency-spike"
    # After a reload the tab shows the running scenario (the token is still in the tab).
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    pg.click("a.tab[data-view=admin]")
    pg.wait_for_selector("[data-scenario=latency-spike].is-active", timeout=10_000)
    assert "latency-spike running" in pg.locator("[data-role=scenario-status]").inner_text()
    pg.click("text=Stop scenario")
    pg.wait_for_selector("[data-role=scenario-status]:has-text('No scenario running')")
    state = backend.client.get(
        "/admin/scenario", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert state["active"] is False
    # Both are annotations on the charts: the start with its planned end, then the stop.
    marks = [a for a in backend.get("/annotations")["annotations"] if a["kind"] == "scenario"]
    assert [a["title"] for a in marks] == ["latency-spike started", "scenario stopped"]
    assert marks[0]["end"] - marks[0]["at"] == pytest.approx(300, abs=2)  # "5 minutes"
    pg.click("a.tab[data-view=dashboard]")
    chart = pg.locator("[data-chart=latency] [data-annotation=scenario]")
    # Both markers, however the page's refreshes fall between the two annotations.
    expect(chart).to_have_count(2, timeout=20_000)
    pg.click("a.tab[data-view=admin]")

    # Diagnostics and the effective configuration, secrets redacted.
    pg.click("[data-load='admin/diagnostics']")
    diagnostics = pg.locator("pre[data-doc='admin/diagnostics']")
    diagnostics.wait_for(timeout=10_000)
    assert "result" in diagnostics.inner_text()
    pg.click("[data-load='admin/config']")
    config = pg.locator("pre[data-doc='admin/config']")
    config.wait_for(timeout=10_000)
    text = config.inner_text()
    assert "[REDACTED]" in text and TOKEN not in text
    assert not page.dialogs and not page.errors, (page.dialogs, page.errors)


def test_a_wrong_token_is_asked_again_and_changes_nothing(page: PageProbe) -> None:
    pg = page.page
    pg.evaluate("sessionStorage.setItem('mlpulse.token', 'wrong-token')")
    pg.click("a.tab[data-view=admin]")
    pg.click("[data-action='admin/cache/clear']")
    # 401 with the stored token: the page forgets it and asks once.
    pg.wait_for_selector("#token-dialog[open]", timeout=10_000)
    pg.click("#token-cancel")
    assert "failed" in _toast(page, "Clear the cache failed")
    assert pg.evaluate("sessionStorage.getItem('mlpulse.token')") is None
