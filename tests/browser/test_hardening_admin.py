"""The Admin view shows the backend's refused OTLP points by reason (issue 16)."""

from __future__ import annotations

import time

import pytest
from browser_testing import Backend, PageProbe
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

pytestmark = pytest.mark.browser

MARKUP_LABELS = False
HISTORY_MINUTES = 2


def test_admin_shows_rejected_points_by_reason(page: PageProbe, backend: Backend) -> None:
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name="ml.model.predictions")
    metric.gauge.data_points.add(time_unix_nano=int((time.time() + 10 * 365 * 86400) * 1e9))
    metric.gauge.data_points.add(time_unix_nano=0)
    resp = backend.client.post(
        "/v1/metrics", content=req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )  # fmt: skip
    assert resp.status_code == 200
    pg = page.page
    pg.click("a.tab[data-view=admin]")
    row = pg.locator("[data-role=rejections] tr[data-reason=time_in_future]")
    row.wait_for(timeout=10_000)
    assert row.locator("td").nth(1).inner_text() == "1"
    assert (
        pg.locator("[data-role=rejections] tr[data-reason=time_missing] td").nth(1).inner_text()
        == "1"
    )
