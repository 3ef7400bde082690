"""Percentiles after merging many 10 s buckets (and the 1 h rollup) stay within the bound.

100 000 lognormal latencies are aggregated by the SDK into 120 delta exponential
histograms (each at its own scale), exported 30 s apart across one past hour.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from backend_testing import Backend
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

CHUNKS = 120


def _ingest_hour(backend: Backend, samples: np.ndarray, hour: int) -> set[int]:
    reader = InMemoryMetricReader(
        preferred_temporality={Histogram: AggregationTemporality.DELTA},
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "mlapi"})
    )
    hist = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    scales = set()
    for i, chunk in enumerate(np.array_split(samples, CHUNKS)):
        for x in chunk.tolist():
            hist.record(x, {"http.route": "/predict", "http.response.status_code": 200})
        request = encode_metrics(reader.get_metrics_data())
        t_end = hour + (i + 1) * 3600 // CHUNKS - 1
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for dp in m.exponential_histogram.data_points:
                        dp.start_time_unix_nano = int((t_end - 3600 // CHUNKS) * 1e9)
                        dp.time_unix_nano = int(t_end * 1e9)
                        scales.add(dp.scale)
        resp = backend.client.post(
            "/v1/metrics",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert resp.status_code == 200
    provider.shutdown()
    return scales


def _check(bounds: dict[str, Any], exact_ms: float, rel_bound: float) -> None:
    assert bounds["lower"] * (1 - 1e-9) <= exact_ms <= bounds["upper"] * (1 + 1e-9), (
        exact_ms,
        bounds,
    )
    assert abs(bounds["value"] - exact_ms) / exact_ms <= rel_bound * (1 + 1e-9)


def test_percentiles_over_many_buckets_and_the_hour_rollup(backend: Backend) -> None:
    rng = np.random.default_rng(2024)
    samples = rng.lognormal(mean=-2.0, sigma=0.9, size=100_000)
    hour = (int(time.time()) // 3600 - 1) * 3600  # the previous full hour
    scales = _ingest_hour(backend, samples, hour)
    assert len(scales) > 1  # the SDK chose different scales: merging must downscale

    window = {"from": str(hour), "to": str(hour + 3600)}
    dist = backend.get("/metrics/distribution", **window)
    assert dist["count"] == 100_000
    assert dist["scale"] == min(scales)
    bound = dist["relative_error"]
    exact = {q: float(np.percentile(samples, q, method="inverted_cdf")) for q in (50, 95, 99)}
    for q in (50, 95, 99):
        _check(dist["percentiles"][f"p{q}"], exact[q], bound)
    assert sum(b["count"] for b in dist["buckets"]) == 100_000

    # Over 360 ten-second buckets (step 10 s, summed per point).
    fine = backend.get(
        "/metrics/history", metric="request_count", group_by="", step="10s", **window
    )
    assert fine["resolution"] == 10
    assert sum(v for _, v in fine["series"][0]["points"] if v) == 100_000
    assert sum(1 for _, v in fine["series"][0]["points"] if v) == CHUNKS

    # The 1 h rollup: one bucket holding the whole hour.
    for q in (50, 95, 99):
        h = backend.get(
            "/metrics/history", metric=f"p{q}_latency_ms", group_by="", step="1h", **window
        )
        assert h["resolution"] == 3600
        ((t, value),) = h["series"][0]["points"]
        ((_, lower, upper),) = h["series"][0]["bounds"]
        assert t == hour
        _check({"value": value, "lower": lower, "upper": upper}, exact[q] * 1000, bound)
    # The 1 min rollup, merged over the hour again, gives the same count.
    mid = backend.get("/metrics/history", metric="request_count", group_by="", step="1m", **window)
    assert mid["resolution"] == 60
    assert sum(v for _, v in mid["series"][0]["points"] if v) == pytest.approx(100_000)
