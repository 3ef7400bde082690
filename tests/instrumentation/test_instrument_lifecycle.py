"""instrument_app / uninstrument_app / shutdown: idempotent, reversible, flushing."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_reading import TestClient, collect, points

import mlpulse_instrumentation
from mlpulse_instrumentation import get_telemetry, instrument_app, uninstrument_app

DURATION = "http.server.request.duration"


class _ListExporter(MetricExporter):
    """Keeps exported batches in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        pass


def _names(batches: Sequence[MetricsData]) -> set[str]:
    return {
        metric.name
        for batch in batches
        for rm in batch.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def _our_middleware(app: FastAPI) -> int:
    return sum(
        getattr(m.cls, "__name__", "") == "HttpServerMiddleware" for m in app.user_middleware
    )


def test_instrumenting_twice_returns_the_same_telemetry(app: FastAPI) -> None:
    reader = InMemoryMetricReader()
    first = instrument_app(app, metric_readers=[reader], span_processors=[])
    second = instrument_app(app, metric_readers=[InMemoryMetricReader()], span_processors=[])
    assert second is first
    assert _our_middleware(app) == 1
    with TestClient(app) as client:
        client.get("/items/1")
    assert points(collect(reader), DURATION)[0].count == 1
    uninstrument_app(app)


def test_uninstrument_then_reinstrument(app: FastAPI) -> None:
    old_reader, old_spans = InMemoryMetricReader(), InMemorySpanExporter()
    instrument_app(
        app, metric_readers=[old_reader], span_processors=[SimpleSpanProcessor(old_spans)]
    )
    with TestClient(app) as client:
        client.get("/items/1")
        uninstrument_app(app)
        assert get_telemetry(app) is None
        assert _our_middleware(app) == 0
        client.get("/items/2")  # served bare
        assert len(old_spans.get_finished_spans()) == 1

        new_reader, new_spans = InMemoryMetricReader(), InMemorySpanExporter()
        instrument_app(
            app, metric_readers=[new_reader], span_processors=[SimpleSpanProcessor(new_spans)]
        )
        client.get("/items/3")
    assert len(old_spans.get_finished_spans()) == 1
    assert len(new_spans.get_finished_spans()) == 1
    assert points(collect(new_reader), DURATION)[0].count == 1
    assert _our_middleware(app) == 1
    uninstrument_app(app)
    uninstrument_app(app)  # a second call is a no-op


def test_instrumenting_an_app_that_already_serves(app: FastAPI) -> None:
    reader = InMemoryMetricReader()
    with TestClient(app) as client:
        client.get("/items/1")  # builds the middleware stack
        instrument_app(app, metric_readers=[reader], span_processors=[])
        client.get("/items/2")
    assert points(collect(reader), DURATION)[0].count == 1
    uninstrument_app(app)


def test_traces_are_off_without_an_endpoint_or_processors(app: FastAPI) -> None:
    telemetry = instrument_app(app, metric_readers=[InMemoryMetricReader()])
    assert not telemetry.traces_enabled
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert not telemetry.tracer.start_span("x").is_recording()
    uninstrument_app(app)


def test_shutdown_flushes_every_instrumentation(app: FastAPI) -> None:
    exporter = _ListExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    telemetry = instrument_app(app, metric_readers=[reader], span_processors=[])
    telemetry.models.record_prediction(
        "result", "v1", value=1.0, confidence=0.9, duration_s=0.001, cache_hit=False
    )
    assert exporter.batches == []
    mlpulse_instrumentation.shutdown()
    assert "ml.model.predictions" in _names(exporter.batches)
    exported = len(exporter.batches)
    telemetry.shutdown()  # idempotent
    mlpulse_instrumentation.shutdown()
    assert len(exporter.batches) == exported
    uninstrument_app(app)


def test_force_flush_exports_without_stopping(app: FastAPI) -> None:
    exporter = _ListExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    telemetry = instrument_app(app, metric_readers=[reader], span_processors=[])
    telemetry.models.set_baseline("result", "v1", mae=1.0, r2=0.5)
    assert telemetry.force_flush()
    assert "ml.model.baseline.mae" in _names(exporter.batches)
    telemetry.models.set_baseline("result", "v2", mae=1.0, r2=0.5)
    assert telemetry.force_flush()
    assert len(exporter.batches) == 2
    uninstrument_app(app)


def test_two_apps_keep_separate_providers(app: FastAPI, other_app: FastAPI) -> None:
    app_a, app_b = app, other_app
    reader_a, reader_b = InMemoryMetricReader(), InMemoryMetricReader()
    instrument_app(app_a, service_name="a", metric_readers=[reader_a], span_processors=[])
    instrument_app(app_b, service_name="b", metric_readers=[reader_b], span_processors=[])
    with TestClient(app_a) as client:
        client.get("/items/1")
        client.get("/items/2")
    with TestClient(app_b) as client:
        client.get("/items/1")
    assert points(collect(reader_a), DURATION)[0].count == 2
    assert points(collect(reader_b), DURATION)[0].count == 1
    uninstrument_app(app_a)
    uninstrument_app(app_b)
