"""Every reader gets its own temporality and its own exemplars, on both export paths.

Readers the caller builds get the histograms through the SDK's aggregation; exporters
built from OTEL_* get them through the buffered exporter. Both are driven here through
the public API only: `instrument_app`, real SDK readers and exporters, requests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_reading import TestClient, collect, point
from otlp_receiver import attrs, data_points, otlp_receiver

from mlpulse_instrumentation import instrument_app, uninstrument_app

DURATION = "http.server.request.duration"
ITEMS = {
    "http.request.method": "GET",
    "http.route": "/items/{item_id}",
    "http.response.status_code": 200,
    "url.scheme": "http",
    "network.protocol.version": "1.1",
}
MODEL = {"ml.model.name": "result", "ml.model.version": "v1"}
DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE


def _delta_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader(
        preferred_temporality={Histogram: DELTA, Counter: DELTA, ObservableCounter: DELTA}
    )


def _requests(client: TestClient, n: int) -> None:
    for i in range(n):
        assert client.get(f"/items/{i}").status_code == 200
        assert client.post("/predict").status_code == 200


def test_delta_reader_counts_new_requests_while_a_cumulative_reader_counts_all(
    app: FastAPI,
) -> None:
    delta, cumulative, spans = _delta_reader(), InMemoryMetricReader(), InMemorySpanExporter()
    instrument_app(
        app,
        metric_readers=[delta, cumulative],
        span_processors=[SimpleSpanProcessor(spans)],
        system_metrics=False,
    )
    with TestClient(app) as client:
        _requests(client, 3)
        first_delta, first_cumulative = collect(delta), collect(cumulative)
        _requests(client, 2)
        second_cumulative, second_delta = collect(cumulative), collect(delta)
    uninstrument_app(app)

    assert point(first_delta, DURATION, ITEMS).count == 3
    assert point(first_cumulative, DURATION, ITEMS).count == 3
    assert point(second_delta, DURATION, ITEMS).count == 2
    assert point(second_cumulative, DURATION, ITEMS).count == 5
    delta_data: Any = second_delta[DURATION].data
    cumulative_data: Any = second_cumulative[DURATION].data
    assert delta_data.aggregation_temporality == DELTA
    assert cumulative_data.aggregation_temporality == CUMULATIVE
    misses = {**MODEL, "ml.prediction.cache_hit": False}
    assert point(second_delta, "ml.model.predictions", misses).value == 2
    assert point(second_cumulative, "ml.model.predictions", misses).value == 5
    assert point(second_delta, "ml.model.prediction.value", MODEL).count == 2

    # Both readers get exemplars, each from the requests since its last collection.
    traces = {s.context.span_id: s.context.trace_id for s in spans.get_finished_spans()}
    assert len(traces) == 10
    for metrics in (first_delta, first_cumulative, second_delta, second_cumulative):
        for name, attributes in ((DURATION, ITEMS), ("ml.model.inference.duration", MODEL)):
            exemplars = point(metrics, name, attributes).exemplars
            assert exemplars, name
            for exemplar in exemplars:
                assert traces[exemplar.span_id] == exemplar.trace_id


def test_views_are_honoured_for_the_hot_path_histograms(app: FastAPI) -> None:
    reader = InMemoryMetricReader()
    bounds = [0.5, 1.0, 10.0]
    instrument_app(
        app,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="ml.model.prediction.value",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=bounds),
            )
        ],
        system_metrics=False,
        span_processors=[],
    )
    with TestClient(app) as client:
        _requests(client, 4)
    value = point(collect(reader), "ml.model.prediction.value", MODEL)
    uninstrument_app(app)
    assert isinstance(value, HistogramDataPoint)
    assert list(value.explicit_bounds) == bounds
    assert list(value.bucket_counts) == [0, 0, 0, 4]  # the toy model predicts 12.0


def _items(request: Any) -> list[Any]:
    """The /items/{item_id} points of DURATION in one OTLP request."""
    return [p for _, p in data_points(request, DURATION) if attrs(p.attributes) == ITEMS]


def _console_documents(text: str) -> list[dict[str, Any]]:
    decoder, documents, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        document, index = decoder.raw_decode(text, start)
        documents.append(document)
    return documents


def _console_count(document: dict[str, Any], name: str) -> int:
    for rm in document["resource_metrics"]:
        for sm in rm["scope_metrics"]:
            for metric in sm["metrics"]:
                if metric["name"] == name:
                    return sum(
                        p["count"]
                        for p in metric["data"]["data_points"]
                        if p["attributes"].get("http.route", "/items/{item_id}")
                        == "/items/{item_id}"
                    )
    return 0


def test_buffered_exporters_each_get_their_temporality_and_exemplars(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with otlp_receiver() as received:
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,console")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{received.url}/v1/metrics")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # flushed by hand
        spans = InMemorySpanExporter()
        telemetry = instrument_app(
            app, span_processors=[SimpleSpanProcessor(spans)], system_metrics=False
        )
        with TestClient(app) as client:
            _requests(client, 3)
            assert telemetry.force_flush()
            _requests(client, 2)
            assert telemetry.force_flush()
        uninstrument_app(app)
        requests = received.metric_requests()

    # OTLP, delta: 3 then 2, each point with the exemplars of its own requests.
    traces = {s.context.trace_id for s in spans.get_finished_spans()}
    counts = []
    for request in requests:
        found = _items(request)
        if found:
            (duration,) = found
            counts.append(duration.count)
            assert duration.exemplars
            assert {int.from_bytes(e.trace_id, "big") for e in duration.exemplars} <= traces
    assert counts == [3, 2]
    temporality = [
        m.exponential_histogram.aggregation_temporality
        for r in requests
        for rm in r.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == DURATION
    ]
    assert temporality == [1, 1]  # AGGREGATION_TEMPORALITY_DELTA

    # Console, cumulative (its default): 3 then 5, with its own exemplars.
    out = capsys.readouterr().out
    # The third document is the export at shutdown: cumulative, so 5 again.
    documents = [d for d in _console_documents(out) if _console_count(d, DURATION)][:2]
    assert [_console_count(d, DURATION) for d in documents] == [3, 5]
    assert [_console_count(d, "ml.model.prediction.value") for d in documents] == [3, 5]
    for document in documents:
        exemplar_traces = {
            int(e["trace_id"])
            for rm in document["resource_metrics"]
            for sm in rm["scope_metrics"]
            for m in sm["metrics"]
            if m["name"] == DURATION
            for p in m["data"]["data_points"]
            if p["attributes"].get("http.route") == "/items/{item_id}"
            for e in p["exemplars"]
        }
        assert exemplar_traces and exemplar_traces <= traces


def test_default_histogram_aggregation_env_switches_the_buffered_buckets(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otlp_receiver() as received:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{received.url}/v1/metrics")
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "explicit_bucket_histogram"
        )
        telemetry = instrument_app(app, span_processors=[], system_metrics=False)
        with TestClient(app) as client:
            _requests(client, 3)
            assert telemetry.force_flush()
        uninstrument_app(app)
        request = next(r for r in received.metric_requests() if _items(r))
    (duration,) = _items(request)
    # The SDK's default explicit boundaries, as its OTLP exporter would use.
    assert list(duration.explicit_bounds)[:3] == [0.0, 5.0, 10.0]
    assert duration.count == 3


def test_buffered_path_defaults_to_exponential_latencies(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otlp_receiver() as received:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{received.url}/v1/metrics")
        telemetry = instrument_app(app, span_processors=[], system_metrics=False)
        with TestClient(app) as client:
            _requests(client, 2)
            assert telemetry.force_flush()
        uninstrument_app(app)
        request = next(r for r in received.metric_requests() if _items(r))
    (duration,) = _items(request)
    assert duration.count == 2
    assert duration.scale <= 20 and sum(duration.positive.bucket_counts) == 2
    assert not isinstance(duration, ExponentialHistogramDataPoint)  # protobuf, not SDK
