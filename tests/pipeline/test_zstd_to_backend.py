"""The real collector sends its metrics to the real backend zstd-compressed
(`MLPULSE_BACKEND_OTLP_COMPRESSION=zstd`), and every number arrives exactly.

Before the backend inflated zstd it answered 415 to such exports, which the collector
drops as permanent errors: nothing would arrive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from .harness import CollectorFactory, Jaeger, Proc, free_port, http_get, wait_until

pytestmark = pytest.mark.pipeline

BACKEND_EXPORTER = "otlp_http/backend"


def _export(n: int) -> tuple[bytes, float]:
    """An SDK export of `n` requests (exponential histogram) and their mean latency."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "zstd"}),
    )
    dur = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    latencies = np.random.default_rng(5).lognormal(np.log(0.04), 0.5, n)
    for v in latencies:
        dur.record(
            float(v),
            {"http.route": "/predict/result", "http.request.method": "POST",
             "http.response.status_code": 200},
        )  # fmt: skip
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return bytes(encode_metrics(data).SerializeToString()), float(latencies.mean())


def test_the_collector_sends_zstd_and_the_backend_stores_it_exactly(
    collectors: CollectorFactory, jaeger: Jaeger, tmp_path: Path
) -> None:
    port = free_port()
    backend_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLPULSE_"))}
    env.update(MLPULSE_DATA_DIR=str(tmp_path / "data"), MLPULSE_API_TOKEN="t", PYTHONUNBUFFERED="1")
    backend = Proc(
        "backend",
        [sys.executable, "-m", "mlpulse", "backend", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path,
    )
    try:
        backend.wait_healthy(f"{backend_url}/health")
        collector = collectors.start(
            jaeger_otlp=jaeger.otlp_grpc,
            backend_endpoint=backend_url,
            extra_env={"MLPULSE_BACKEND_OTLP_COMPRESSION": "zstd"},
        )
        body, mean_s = _export(1234)
        resp = httpx.post(
            f"{collector.otlp_http}/v1/metrics", content=body,
            headers={"Content-Type": "application/x-protobuf"}, timeout=10,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text

        snap: dict[str, Any] = {}

        def arrived() -> bool:
            status, _ = http_get(f"{backend_url}/health")
            if status != 200:
                return False
            resp = httpx.get(f"{backend_url}/metrics/current", params={"window": "1h"})
            snap.update(resp.json())
            return bool(snap["api_metrics"]["total_requests"])

        wait_until(arrived, 30, "the export in the backend, through the collector")
        assert snap["api_metrics"]["total_requests"] == 1234
        assert snap["api_metrics"]["avg_response_time_ms"] == pytest.approx(mean_s * 1e3, 1e-9)
        assert (
            collector.own_metric("otelcol_exporter_sent_metric_points", exporter=BACKEND_EXPORTER)
            > 0
        )
        assert collector.own_metric("otelcol_exporter_send_failed_metric_points") == 0
    finally:
        backend.stop()
