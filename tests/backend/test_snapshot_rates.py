"""Rates in the snapshot divide by the time the producer was up, not the whole window."""

from __future__ import annotations

from backend_testing import Backend, meter_provider
from opentelemetry.metrics import CallbackOptions, Observation


def _export(backend: Backend, requests: int, uptime_s: float | None) -> None:
    provider = meter_provider(backend.url)
    meter = provider.get_meter("mlapi")
    hist = meter.create_histogram("http.server.request.duration", unit="s")
    predictions = meter.create_counter("ml.model.predictions")
    if uptime_s is not None:

        def uptime(_: CallbackOptions) -> list[Observation]:
            return [Observation(uptime_s)]

        meter.create_observable_gauge("process.uptime", [uptime], unit="s")
    for _ in range(requests):
        hist.record(0.01, {"http.route": "/predict/result", "http.response.status_code": 200})
        predictions.add(1, {"ml.model.name": "result", "ml.model.version": "v1"})
    assert provider.force_flush()
    provider.shutdown()


def test_a_service_up_for_30_s_has_its_rate_over_30_s(backend: Backend) -> None:
    _export(backend, requests=60, uptime_s=30.0)
    snap = backend.get("/metrics/current", window="5m")
    assert snap["api_metrics"]["total_requests"] == 60
    # 60 requests in the 30 s the service has been up: 120 per minute, not 12.
    assert snap["api_metrics"]["requests_per_minute"] == 120.0
    assert snap["model_metrics"]["result"]["prediction_rate_per_minute"] == 120.0


def test_without_an_uptime_the_rate_is_over_the_whole_window(backend: Backend) -> None:
    _export(backend, requests=60, uptime_s=None)
    snap = backend.get("/metrics/current", window="5m")
    assert snap["api_metrics"]["requests_per_minute"] == 12.0


def test_a_service_up_longer_than_the_window_uses_the_window(backend: Backend) -> None:
    _export(backend, requests=60, uptime_s=3600.0)
    snap = backend.get("/metrics/current", window="1m")
    assert snap["api_metrics"]["requests_per_minute"] == 60.0
