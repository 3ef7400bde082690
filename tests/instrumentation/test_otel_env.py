"""Standard OTEL_* variables and mlpulse's defaults (reads a few SDK internals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_reading import TestClient, collect, points

from mlpulse_instrumentation import Telemetry, build_resource, instrument_app, uninstrument_app


def _reader(telemetry: Telemetry) -> Any:
    (reader,) = telemetry.metric_readers
    assert isinstance(reader, PeriodicExportingMetricReader)
    return reader


@pytest.fixture
def instrumented(app: FastAPI) -> Iterator[Callable[..., Telemetry]]:
    """Instrument with env-configured exporters; always uninstrument afterwards."""
    made: list[FastAPI] = []

    def instrument(**kwargs: object) -> Telemetry:
        made.append(app)
        return instrument_app(app, system_metrics=False, **kwargs)  # type: ignore[arg-type]

    yield instrument
    for instrumented_app in made:
        uninstrument_app(instrumented_app)


def test_resource_takes_arguments_and_env_overrides_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=ml")
    resource = build_resource(
        service_name="from-code",
        service_version="1.2.3",
        service_instance_id="i-1",
        deployment_environment="dev",
    )
    assert resource.attributes["service.name"] == "from-env"
    assert resource.attributes["deployment.environment.name"] == "prod"
    assert resource.attributes["team"] == "ml"
    assert resource.attributes["service.version"] == "1.2.3"
    assert resource.attributes["service.instance.id"] == "i-1"


def test_instance_id_defaults_to_a_fresh_uuid() -> None:
    first = build_resource(service_name="x").attributes["service.instance.id"]
    second = build_resource(service_name="x").attributes["service.instance.id"]
    assert isinstance(first, str) and len(first) == 36
    assert first != second


def test_default_metrics_endpoint_and_5s_interval(
    instrumented: Callable[..., Telemetry],
) -> None:  # type: ignore[no-untyped-def]
    telemetry = instrumented(metrics_endpoint="http://127.0.0.1:9/v1/metrics")
    reader = _reader(telemetry)
    assert reader._export_interval_millis == 5000
    exporter: Any = reader._exporter.exporter  # the OTLP exporter inside the buffered one
    assert isinstance(exporter, HttpMetricExporter)
    assert exporter._endpoint == "http://127.0.0.1:9/v1/metrics"
    assert not telemetry.traces_enabled


def test_otel_endpoint_beats_the_default_and_interval_is_read(
    instrumented: Callable[..., Telemetry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "250")
    telemetry = instrumented(metrics_endpoint="http://127.0.0.1:9/v1/metrics")
    reader = _reader(telemetry)
    assert reader._export_interval_millis == 250
    assert (
        getattr(reader._exporter.exporter, "_endpoint", None) == "http://collector:4318/v1/metrics"
    )
    # The general endpoint serves traces too.
    assert telemetry.traces_enabled


def test_grpc_protocol_selects_the_grpc_exporter(
    instrumented: Callable[..., Telemetry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://collector:4317")
    telemetry = instrumented(span_processors=[])
    assert isinstance(_reader(telemetry)._exporter.exporter, GrpcMetricExporter)


def test_metrics_exporter_none_means_no_reader(
    instrumented: Callable[..., Telemetry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    telemetry = instrumented()
    assert telemetry.metric_readers == ()
    assert not telemetry.traces_enabled


def test_sampler_from_env_drops_spans_and_exemplars(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    instrument_app(
        app,
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(spans)],
        system_metrics=False,
    )
    with TestClient(app) as client:
        client.get("/items/1")
    assert spans.get_finished_spans() == ()
    (hist,) = points(collect(reader), "http.server.request.duration")
    assert hist.count == 1
    assert hist.exemplars == []
    uninstrument_app(app)
