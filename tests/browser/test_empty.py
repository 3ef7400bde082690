"""The page on a backend that has received nothing yet: empty states, never a blank page."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from browser_testing import Backend, PageProbe

pytestmark = pytest.mark.browser

MARKUP_LABELS = False
HISTORY_MINUTES = 0  # no export at all


def test_an_empty_backend_shows_empty_states_and_no_data_status(
    page: PageProbe, backend: Backend
) -> None:
    pg = page.page
    assert backend.get("/health")["last_ingest_at"] is None
    for chart in ("requests", "latency", "errors", "mae"):
        empty = pg.locator(f"[data-chart={chart}] .state--empty")
        empty.wait_for(timeout=10_000)
        assert "No data in this range" in empty.inner_text()
    assert "No requests in this range" in pg.locator("[data-chart=distribution]").inner_text()
    assert "No model metrics yet" in pg.locator("#models").inner_text()
    assert "All clear" in pg.locator("#alerts-active").inner_text()
    assert "No alert changed state" in pg.locator("#alerts-history").inner_text()
    assert pg.locator("#status-pill").get_attribute("data-status") == "down"
    assert pg.locator("[data-card=status] [data-role=value]").inner_text() == "No data"
    assert pg.locator("[data-card=requests_per_minute] [data-role=value]").inner_text() == "—"
    # The only failed request: the distribution of a metric never stored (404, shown empty).
    failed = {urlsplit(r.url).path for r in page.responses if not r.ok}
    assert failed <= {"/metrics/distribution"}, failed
    assert all("Failed to load resource" in e for e in page.errors), page.errors
