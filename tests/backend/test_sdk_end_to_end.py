"""The real OTel SDK (MeterProvider + OTLP/HTTP exporter) against the backend under uvicorn:
known inputs, exact numbers from the HTTP API."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from backend_testing import Backend, meter_provider
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

CONFIDENCE_BOUNDS = [round(0.05 * i, 2) for i in range(1, 20)]


def _record_http(meter: Any, n_ok: int, n_err: int, route: str = "/predict") -> None:
    dur = meter.create_histogram("http.server.request.duration", unit="s")
    for i in range(n_ok):
        dur.record(
            0.010 + 0.001 * (i % 50),
            {"http.route": route, "http.response.status_code": 200, "http.request.method": "POST"},
        )
    for _ in range(n_err):
        dur.record(
            0.5,
            {
                "http.route": route,
                "http.response.status_code": 503,
                "http.request.method": "POST",
                "error.type": "503",
            },
        )


def test_counts_rates_errors_model_errors_and_cache(backend: Backend) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=f"{backend.url}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "a"}),
        views=[
            View(
                instrument_name="ml.model.prediction.confidence",
                aggregation=ExplicitBucketHistogramAggregation(CONFIDENCE_BOUNDS),
            ),
        ],
    )
    meter = provider.get_meter("mlapi")
    _record_http(meter, 285, 15)

    rng = np.random.default_rng(7)
    y = rng.normal(120.0, 30.0, 400)
    yhat = y + rng.normal(3.0, 12.0, 400)
    e = y - yhat
    conf = rng.uniform(0.2, 0.99, 500)
    attrs = {"ml.model.name": "result", "ml.model.version": "3"}
    preds = meter.create_counter("ml.model.predictions")
    conf_h = meter.create_histogram("ml.model.prediction.confidence", unit="1")
    for c in conf:
        preds.add(1, {**attrs, "ml.prediction.cache_hit": False})
        conf_h.record(float(c), attrs)
    fb = meter.create_counter("ml.model.feedback")
    ea = meter.create_counter("ml.model.error.absolute")
    es = meter.create_counter("ml.model.error.squared")
    ya = meter.create_up_down_counter("ml.model.actual")
    ys = meter.create_counter("ml.model.actual.squared")
    for yi, ei in zip(y, e, strict=True):
        fb.add(1, attrs)
        ea.add(abs(float(ei)), attrs)
        es.add(float(ei) ** 2, attrs)
        ya.add(float(yi), attrs)
        ys.add(float(yi) ** 2, attrs)
    meter.create_gauge("ml.model.baseline.mae").set(8.0, attrs)
    lookups = meter.create_counter("ml.cache.lookups")
    lookups.add(70, {"ml.cache.result": "hit", "ml.model.name": "result"})
    lookups.add(30, {"ml.cache.result": "miss", "ml.model.name": "result"})
    meter.create_gauge("system.cpu.utilization", unit="1").set(0.35)
    meter.create_gauge("process.memory.usage", unit="By").set(256 * 2**20)
    assert provider.force_flush()

    snap = backend.get("/metrics/current", window="1m")
    api = snap["api_metrics"]
    assert api["total_requests"] == 300
    assert api["requests_per_minute"] == 300.0  # 300 requests over a 60 s window
    assert api["error_rate_percent"] == pytest.approx(5.0, rel=1e-12)
    ok = 0.010 + 0.001 * (np.arange(285) % 50)
    assert api["avg_response_time_ms"] == pytest.approx(
        (ok.sum() + 15 * 0.5) / 300 * 1000, rel=1e-9
    )
    model = snap["model_metrics"]["result"]
    mae = float(np.mean(np.abs(e)))
    assert model["feedback_count"] == 400
    assert model["predictions_count"] == 500
    assert model["avg_mae"] == pytest.approx(mae, rel=1e-9)
    assert model["rmse"] == pytest.approx(float(np.sqrt(np.mean(e**2))), rel=1e-9)
    r2 = 1 - np.sum(e**2) / np.sum((y - y.mean()) ** 2)
    assert model["r2"] == pytest.approx(float(r2), rel=1e-9)
    assert model["avg_confidence"] == pytest.approx(float(conf.mean()), rel=1e-9)
    assert model["baseline_mae"] == 8.0
    assert model["degradation_percent"] == pytest.approx((mae - 8.0) / 8.0 * 100, rel=1e-9)
    assert model["feedback_coverage_percent"] == pytest.approx(80.0)
    cache = snap["cache_metrics"]
    assert (cache["hit_rate_percent"], cache["total_hits"], cache["total_misses"]) == (70, 70, 30)
    assert snap["system_metrics"]["cpu_percent"] == pytest.approx(35.0)
    assert snap["system_metrics"]["memory_usage_mb"] == 256.0

    # More traffic, exported cumulatively again: only the increase is added.
    _record_http(meter, 100, 0)
    lookups.add(10, {"ml.cache.result": "miss", "ml.model.name": "result"})
    assert provider.force_flush()
    snap = backend.get("/metrics/current", window="1m")
    assert snap["api_metrics"]["total_requests"] == 400
    assert snap["api_metrics"]["error_rate_percent"] == pytest.approx(15 / 400 * 100)
    assert snap["cache_metrics"]["hit_rate_percent"] == pytest.approx(70 / 110 * 100)
    provider.shutdown()

    # The same numbers through the per-route history, the summary and the export.
    hist = backend.get(
        "/metrics/history", metric="error_rate_percent", **{"from": "now-2m"}, step="2m"
    )
    (series,) = hist["series"]
    assert series["labels"] == {"service": "mlapi", "route": "/predict"}
    assert [v for _, v in series["points"] if v is not None] == [pytest.approx(3.75)]
    summary = backend.get("/metrics/summary", **{"from": "now-5m"})
    assert summary["api_metrics"]["total_requests"] == 400


def test_lognormal_percentiles_within_bounds_and_error_bound(backend: Backend) -> None:
    rng = np.random.default_rng(42)
    samples = rng.lognormal(mean=-2.5, sigma=0.8, size=100_000)
    provider = meter_provider(backend.url)
    hist = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    for x in samples.tolist():
        hist.record(x, {"http.route": "/predict", "http.response.status_code": 200})
    assert provider.force_flush()
    provider.shutdown()

    dist = backend.get("/metrics/distribution", **{"from": "now-1m"})
    assert dist["count"] == 100_000
    bound = dist["relative_error"]
    assert bound == pytest.approx(
        (2 ** (2 ** -dist["scale"]) - 1) / (2 ** (2 ** -dist["scale"]) + 1)
    )
    assert bound < 0.05
    snap = backend.get("/metrics/current", window="1m")["api_metrics"]
    for q in (50, 95, 99):
        exact = float(np.percentile(samples, q, method="inverted_cdf")) * 1000
        got = snap[f"p{q}_response_time_bounds_ms"]
        assert got["value"] == snap[f"p{q}_response_time_ms"]
        assert got["lower"] * (1 - 1e-9) <= exact <= got["upper"] * (1 + 1e-9), (q, exact, got)
        assert abs(got["value"] - exact) / exact <= bound * (1 + 1e-9), (q, exact, got)


def test_producer_restart_counts_from_zero_without_loss_or_double(backend: Backend) -> None:
    first = meter_provider(backend.url, instance="i-1")
    c = first.get_meter("mlapi").create_counter("ml.model.predictions")
    c.add(100, {"ml.model.name": "result"})
    assert first.force_flush()
    c.add(20, {"ml.model.name": "result"})
    assert first.force_flush()
    first.shutdown()
    # Same instance id, new process: new start time, counter restarts from zero.
    second = meter_provider(backend.url, instance="i-1")
    c2 = second.get_meter("mlapi").create_counter("ml.model.predictions")
    c2.add(7, {"ml.model.name": "result"})
    assert second.force_flush()
    c2.add(3, {"ml.model.name": "result"})
    assert second.force_flush()
    second.shutdown()
    model = backend.get("/metrics/current", window="1m")["model_metrics"]["result"]
    assert model["predictions_count"] == 130


def test_two_instances_add_up(backend: Backend) -> None:
    a = meter_provider(backend.url, instance="i-1")
    b = meter_provider(backend.url, instance="i-2", gzip=True)  # the SDK's gzip encoding
    rng = np.random.default_rng(3)
    xa, xb = rng.lognormal(-3, 0.5, 3000), rng.lognormal(-2, 0.5, 1000)
    for provider, xs, errors in ((a, xa, 30), (b, xb, 70)):
        meter = provider.get_meter("mlapi")
        h = meter.create_histogram("http.server.request.duration", unit="s")
        for i, x in enumerate(xs.tolist()):
            code = 500 if i < errors else 200
            h.record(x, {"http.route": "/predict", "http.response.status_code": code})
        meter.create_counter("ml.cache.lookups").add(len(xs), {"ml.cache.result": "hit"})
        assert provider.force_flush()
    api = backend.get("/metrics/current", window="1m")["api_metrics"]
    assert api["total_requests"] == 4000
    assert api["error_rate_percent"] == pytest.approx(100 / 4000 * 100)
    both = np.concatenate([xa, xb]) * 1000
    exact = float(np.percentile(both, 95, method="inverted_cdf"))
    got = api["p95_response_time_bounds_ms"]
    assert got["lower"] * (1 - 1e-9) <= exact <= got["upper"] * (1 + 1e-9)
    per_instance = backend.get(
        "/metrics/history", metric="request_count", group_by="instance", step="1h",
        **{"from": "now-10m"},
    )  # fmt: skip
    totals = {
        s["labels"]["instance"]: sum(v for _, v in s["points"] if v) for s in per_instance["series"]
    }
    assert totals == {"i-1": 3000, "i-2": 1000}
    a.shutdown()
    b.shutdown()


def test_replayed_export_changes_nothing(backend: Backend) -> None:
    """Re-send the exact bytes the SDK exporter sent (cumulative, delta and gauge)."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

    for temporality in (AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA):
        reader = InMemoryMetricReader(
            preferred_temporality={Counter: temporality, Histogram: temporality}
        )
        provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.create({"service.name": f"svc-{temporality.name}"}),
        )
        meter = provider.get_meter("mlapi")
        meter.create_counter("ml.model.predictions").add(11, {"ml.model.name": "m"})
        meter.create_histogram("http.server.request.duration", unit="s").record(0.25)
        meter.create_gauge("system.cpu.utilization").set(0.5)
        body = encode_metrics(reader.get_metrics_data()).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf"}
        assert backend.client.post("/v1/metrics", content=body, headers=headers).status_code == 200
        before = _dump_buckets(backend)
        for _ in range(3):
            assert (
                backend.client.post("/v1/metrics", content=body, headers=headers).status_code == 200
            )
        assert _dump_buckets(backend) == before
        provider.shutdown()
    snap = backend.get("/metrics/current", window="1m")
    assert snap["model_metrics"]["m"]["predictions_count"] == 22
    assert snap["api_metrics"]["total_requests"] == 2


def _dump_buckets(backend: Backend) -> list[Any]:
    import sqlite3

    with sqlite3.connect(backend.settings.database_path) as conn:
        return conn.execute("SELECT * FROM buckets ORDER BY 1, 2, 3").fetchall()


def test_json_export_with_hex_trace_ids_is_understood(backend: Backend) -> None:
    now_ns = str(int(time.time() * 1e9))
    body = {
        "resourceMetrics": [{
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "mlapi"}}]
            },
            "scopeMetrics": [{"scope": {"name": "t"}, "metrics": [{
                "name": "http.server.request.duration", "unit": "s",
                "histogram": {"aggregationTemporality": 1, "dataPoints": [{
                    "timeUnixNano": now_ns,
                    "count": "3", "sum": 1.5, "explicitBounds": [0.1, 1.0],
                    "bucketCounts": ["1", "1", "1"], "min": 0.05, "max": 1.2,
                    "attributes": [{"key": "http.route", "value": {"stringValue": "/p"}}],
                    "exemplars": [{"asDouble": 1.2, "timeUnixNano": now_ns,
                                   "traceId": "5b8efff798038103d269b633813fc60c",
                                   "spanId": "eee19b7ec3c1b174"}],
                }]},
            }]}],
        }]
    }  # fmt: skip
    resp = backend.client.post("/v1/metrics", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {}
    api = backend.get("/metrics/current", window="1m")["api_metrics"]
    assert api["total_requests"] == 3
    # p50 is the 2nd of 3 observations: in (0.1, 1.0], interpolated at the bucket's middle.
    assert api["p50_response_time_bounds_ms"] == {"value": 550.0, "lower": 100.0, "upper": 1000.0}
    (ex,) = backend.get("/metrics/exemplars", **{"from": "now-1m"}, min_value=1)["exemplars"]
    assert (ex["trace_id"], ex["span_id"], ex["value"]) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        1.2,
    )
    assert ex["trace_url"] == "http://127.0.0.1:16686/trace/5b8efff798038103d269b633813fc60c"
    assert ex["labels"] == {"service": "mlapi", "http.route": "/p"}
    assert backend.get("/metrics/exemplars", **{"from": "now-1m"}, min_value=2)["exemplars"] == []
    assert math.isclose(backend.get("/metrics/distribution", **{"from": "now-1m"})["max"], 1.2)
