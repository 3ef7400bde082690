"""The model cards in Debian's Chromium: prediction drift (PSI, JS, the chart with its
version marker), label coverage and delay, the MAE with its interval, features that
moved and the versions side by side, each equal to what the API returns."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_testing import Backend, PageProbe
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

pytestmark = pytest.mark.browser
MARKUP_LABELS = False

V3 = {"ml.model.name": "result", "ml.model.version": "3"}
V4 = {"ml.model.name": "result", "ml.model.version": "4"}  # a retrain, now
CACHED_ERRORS = (9.0, -7.0, 11.0, -9.0)
COMPUTED_ERRORS = (2.0, -3.0, 1.0)


@pytest.fixture(scope="module")
def monitored(backend: Backend) -> Iterator[dict[str, Any]]:
    """Reference distributions, drifted live values, features, label lag and a v4."""
    exporter = OTLPMetricExporter(
        endpoint=f"{backend.url}/v1/metrics",
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
    )
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "monitor"}),
    )
    meter = provider.get_meter("mlapi")
    rng = random.Random(8)
    ref = meter.create_histogram("ml.model.reference.prediction.value", unit="1")
    live = meter.create_histogram("ml.model.prediction.value", unit="1")
    ref_feature = meter.create_histogram("ml.model.reference.feature.value", unit="1")
    feature = meter.create_histogram("ml.model.feature.value", unit="1")
    lag = meter.create_histogram("ml.model.feedback.lag", unit="s")
    for attrs in (V3, V4):
        for _ in range(3000):
            ref.record(rng.lognormvariate(4.0, 0.5), attrs)
    for _ in range(400):
        live.record(rng.lognormvariate(4.5, 0.5), V4)  # drifted upwards
        lag.record(rng.uniform(2, 120), V3)
    for _ in range(2000):
        ref_feature.record(rng.randint(1, 8), {**V4, "ml.feature.name": "filter_count"})
    for _ in range(300):
        feature.record(rng.randint(20, 30), {**V4, "ml.feature.name": "filter_count"})
    meter.create_gauge("ml.model.baseline.mae").set(3.9, V4)
    # Labels of cached and computed answers apart, of predictions made in this 5-minute
    # window (their ml.prediction.window), and 7 entries v3 left in the cache.
    window = int(time.time() // 300) % 16
    fb = meter.create_counter("ml.model.feedback")
    ea = meter.create_counter("ml.model.error.absolute")
    es = meter.create_counter("ml.model.error.squared")
    for hit, errors in ((True, CACHED_ERRORS), (False, COMPUTED_ERRORS)):
        for e in errors:
            attrs = {**V4, "ml.prediction.cache_hit": hit, "ml.prediction.window": window}
            fb.add(1, attrs)
            ea.add(abs(e), attrs)
            es.add(e * e, attrs)
    meter.create_gauge("ml.cache.stale_entries").set(7, {"ml.model.name": "result"})
    meter.create_counter("ml.model.predictions").add(400, {**V4, "ml.prediction.cache_hit": False})
    assert provider.force_flush()
    yield {}
    provider.shutdown()


def _card(page: PageProbe, name: str) -> Any:
    return page.page.locator("#models article.model").filter(
        has=page.page.locator("h3", has_text=name)
    )


def _num(locator: Any, attribute: str = "data-value") -> float | None:
    raw = locator.first.get_attribute(attribute)
    return None if raw in (None, "") else float(raw)


# The figures of a card this test compares with the API.
_COMPARED = (
    "prediction_psi",
    "prediction_js",
    "label_coverage_percent",
    "label_lag_p95_s",
    "mae_interval",
    "feature_drift",
    "versions",
    "mae_by_cache_hit",
    "cache_stale_entries",
)


def _current_as_the_page_saw_it(backend: Backend, page: PageProbe) -> dict[str, Any]:
    """The result model's `/metrics/current` figures as the page drew them.

    The module's backfilled traffic (model `result` v3 too) leaves the 5-minute window one
    10 s bucket at a time, so a read made after the page's own can differ from what the page
    shows. A read just before and one just after a reload that agree bracket it."""
    for _ in range(5):
        before = backend.get("/metrics/current")["model_metrics"]["result"]
        page.page.reload()
        page.page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        _card(page, "result").locator("[data-role=version-marker][data-version='4']").wait_for(
            state="attached", timeout=20_000
        )
        after = backend.get("/metrics/current")["model_metrics"]["result"]
        if all(before.get(key) == after.get(key) for key in _COMPARED):
            return dict(after)
    pytest.fail("the result model's figures moved during each of 5 page loads")


def test_model_cards_show_psi_coverage_mae_interval_and_version_marker(
    monitored: dict[str, Any], backend: Backend, page: PageProbe
) -> None:
    card = _card(page, "result")
    card.locator("[data-role=version-marker][data-version='4']").wait_for(
        state="attached", timeout=20_000
    )
    assert card.locator(".version-label[data-version='4']").is_visible()
    m = _current_as_the_page_saw_it(backend, page)
    card = _card(page, "result")

    assert m["prediction_psi"] is not None and m["prediction_psi"] > 0.25
    assert _num(card.locator("[data-role=psi]")) == pytest.approx(m["prediction_psi"], rel=1e-9)
    assert _num(card.locator("[data-role=js]")) == pytest.approx(m["prediction_js"], rel=1e-9)
    assert card.locator("[data-role=drift]").inner_text() == "significant"
    assert "tag--bad" in (card.locator("[data-role=drift]").get_attribute("class") or "")

    coverage = card.locator("[data-stat=label_coverage_percent] [data-role=value]")
    assert _num(coverage) == pytest.approx(m["label_coverage_percent"], rel=1e-9)
    lag = card.locator("[data-stat=label_lag_p95_s] [data-role=value]")
    assert _num(lag) == pytest.approx(m["label_lag_p95_s"], rel=1e-9)

    interval = card.locator("[data-role=mae-interval]")
    assert _num(interval, "data-lower") == pytest.approx(m["mae_interval"]["lower"], rel=1e-9)
    assert _num(interval, "data-upper") == pytest.approx(m["mae_interval"]["upper"], rel=1e-9)
    assert interval.inner_text().startswith("95 % CI ")

    # The chart: a PSI line and the marker of v4 where the API puts it.
    chart = card.locator("[data-role=psi-chart]")
    assert int(chart.get_attribute("data-points") or 0) >= 1
    markers = backend.get("/metrics/versions", **{"from": "now-1h"})["markers"]
    assert {(mk["model"], mk["version"]) for mk in markers} >= {("result", "4")}
    assert "4 first reported" in chart.locator("[data-version='4'] title").text_content()

    # Which features moved, and v3 next to v4.
    first = card.locator("[data-role=features] li").first
    assert first.get_attribute("data-feature") == "filter_count"
    assert _num(first.locator(".num")) == pytest.approx(m["feature_drift"][0]["psi"], rel=1e-9)
    rows = card.locator("[data-role=versions] tbody tr")
    assert [rows.nth(i).get_attribute("data-version") for i in range(rows.count())] == ["3", "4"]
    for i, entry in enumerate(m["versions"]):
        cells = rows.nth(i).locator("td")
        if entry["prediction_psi"] is not None:
            assert _num(cells.nth(4)) == pytest.approx(entry["prediction_psi"], rel=1e-9)
        if entry["avg_mae"] is not None:
            assert _num(cells.nth(2)) == pytest.approx(entry["avg_mae"], rel=1e-9)

    # Cache-honest: the MAE of cached and of computed answers apart, stale entries.
    hit = card.locator("[data-stat=mae_cache_hit] [data-role=value]")
    miss = card.locator("[data-stat=mae_cache_miss] [data-role=value]")
    assert m["mae_by_cache_hit"]["hit"] == pytest.approx(9.0)  # mean |e| of CACHED_ERRORS
    assert m["mae_by_cache_hit"]["miss"] == pytest.approx(2.0)
    assert _num(hit) == pytest.approx(m["mae_by_cache_hit"]["hit"], rel=1e-9)
    assert _num(miss) == pytest.approx(m["mae_by_cache_hit"]["miss"], rel=1e-9)
    # The MAE by prediction window: this window's 7 labels, as /metrics/history gives it.
    cohort = card.locator("[data-role=cohorts] li.cohort").first
    cohort.wait_for(timeout=20_000)
    doc = backend.get(
        "/metrics/history", metric="mae_by_prediction_time", **{"from": "now-1h"}, step="300"
    )
    (newest,) = [p for p in doc["series"][0]["points"] if p[1] is not None][-1:]
    assert newest[1] == pytest.approx(42 / 7, rel=1e-9)  # mean |e| of all 7 errors
    assert cohort.get_attribute("data-time") == str(newest[0])
    assert _num(cohort.locator(".num")) == pytest.approx(newest[1], rel=1e-9)
    stale = card.locator("[data-stat=cache_stale_entries] [data-role=value]")
    assert m["cache_stale_entries"] == 7
    assert _num(stale) == 7
    assert page.errors == []
