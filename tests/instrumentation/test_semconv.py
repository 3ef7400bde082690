"""Semantic conventions, one attribute at a time, read back through real SDK readers."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_reading import TestClient, ToyError, collect, points

from mlpulse_instrumentation import instrument_app, uninstrument_app

DURATION = "http.server.request.duration"


def _one_point_attributes(reader: InMemoryMetricReader) -> dict[str, object]:
    (only,) = points(collect(reader), DURATION)
    return dict(only.attributes)


def test_url_scheme_is_recorded_per_request_scheme(
    app: FastAPI, telemetry: object, reader: InMemoryMetricReader
) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/items/1").status_code == 200
    with TestClient(app) as client:
        assert client.get("/items/2").status_code == 200
    schemes = sorted(p.attributes["url.scheme"] for p in points(collect(reader), DURATION))
    assert schemes == ["http", "https"]


def test_network_protocol_version_is_the_http_version(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.get("/items/1").status_code == 200
    assert _one_point_attributes(reader)["network.protocol.version"] == "1.1"


def test_three_unknown_methods_share_one_other_series(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    for method in ("BREW", "WHEN", "PROPFIND"):
        assert client.request(method, "/items/1").status_code == 405
    (other,) = points(collect(reader), DURATION)
    assert other.attributes["http.request.method"] == "_OTHER"
    assert other.count == 3


def test_known_methods_come_from_the_environment(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET,BREW")
    reader = InMemoryMetricReader()
    instrument_app(app, metric_readers=[reader], span_processors=[], system_metrics=False)
    with TestClient(app) as client:
        client.request("BREW", "/items/1")
        client.request("POST", "/items/1")
        client.get("/items/1")
    methods = {
        p.attributes["http.request.method"]: p.count for p in points(collect(reader), DURATION)
    }
    uninstrument_app(app)
    assert methods == {"BREW": 1, "_OTHER": 1, "GET": 1}


def test_error_type_is_the_fully_qualified_exception_class(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.get("/toy-error").status_code == 500
    assert client.get("/boom").status_code == 500
    errors = {
        p.attributes["http.route"]: p.attributes["error.type"]
        for p in points(collect(reader), DURATION)
    }
    assert errors == {
        "/toy-error": f"{ToyError.__module__}.ToyError",
        "/boom": "RuntimeError",  # builtins keep their bare name, as Python prints them
    }
    assert "." in errors["/toy-error"]


def _system_metrics(app: FastAPI) -> dict[str, Any]:
    reader = InMemoryMetricReader()
    instrument_app(app, metric_readers=[reader], span_processors=[])
    sum(i * i for i in range(200_000))  # some CPU time between the two readings
    metrics = collect(reader)
    uninstrument_app(app)
    return metrics


def test_cpu_utilization_is_split_by_cpu_mode(app: FastAPI) -> None:
    metrics = _system_metrics(app)
    process = {
        p.attributes["cpu.mode"]: p.value for p in points(metrics, "process.cpu.utilization")
    }
    host = {p.attributes["cpu.mode"]: p.value for p in points(metrics, "system.cpu.utilization")}
    assert set(process) == {"user", "system"}
    assert all(0.0 <= v <= 1.0 for v in process.values())
    assert {"user", "system", "idle"} <= set(host)
    assert set(host) <= {"user", "nice", "system", "idle", "iowait", "interrupt", "steal"}
    # Every mode of the host, idle included: the shares of the interval add up to 1.
    assert sum(host.values()) == pytest.approx(1.0, abs=1e-9)


def test_memory_utilization_carries_its_state(app: FastAPI) -> None:
    metrics = _system_metrics(app)
    states = {
        p.attributes["system.memory.state"]: p.value
        for p in points(metrics, "system.memory.utilization")
    }
    assert set(states) == {"used", "free"}
    assert states["used"] + states["free"] == pytest.approx(1.0)
    memory = psutil.virtual_memory()
    assert states["used"] == pytest.approx(
        (memory.total - memory.available) / memory.total, abs=0.05
    )


def test_process_memory_usage_is_an_up_down_counter(app: FastAPI) -> None:
    metrics = _system_metrics(app)
    metric = metrics["process.memory.usage"]
    assert isinstance(metric.data, Sum)
    assert not metric.data.is_monotonic
    assert metric.unit == "By"
    rss = psutil.Process().memory_info().rss
    (usage,) = metric.data.data_points
    assert 0.5 * rss < usage.value < 2 * rss


def test_server_spans_use_the_stable_http_attribute_names(app: FastAPI) -> None:
    spans = InMemorySpanExporter()
    instrument_app(
        app,
        metric_readers=[InMemoryMetricReader()],
        span_processors=[SimpleSpanProcessor(spans)],
        system_metrics=False,
    )
    with TestClient(app) as client:
        assert client.get("/items/3?x=1").status_code == 200
    uninstrument_app(app)
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.scheme"] == "http"
    assert attributes["http.route"] == "/items/{item_id}"
    assert "http.method" not in attributes
    assert "http.status_code" not in attributes


def _spans_of(app: FastAPI, requests: list[tuple[str, str, dict[str, str]]]) -> list[Any]:
    spans = InMemorySpanExporter()
    instrument_app(
        app,
        metric_readers=[InMemoryMetricReader()],
        span_processors=[SimpleSpanProcessor(spans)],
        system_metrics=False,
    )
    with TestClient(app, base_url="http://api.test:8123", raise_server_exceptions=False) as client:
        for method, path, headers in requests:
            client.request(method, path, headers=headers)
    uninstrument_app(app)
    return list(spans.get_finished_spans())


def test_server_span_carries_the_request_attributes(app: FastAPI) -> None:
    (span,) = _spans_of(app, [("GET", "/items/3?x=1", {"user-agent": "probe/1.0"})])
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    attributes = dict(span.attributes or {})
    assert {k: attributes[k] for k in attributes if k != "client.port"} == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "url.scheme": "http",
        "url.path": "/items/3",
        "url.query": "x=1",
        "server.address": "api.test",
        "server.port": 8123,
        "network.protocol.version": "1.1",
        "user_agent.original": "probe/1.0",
        "client.address": "testclient",
    }
    assert span.status.status_code == StatusCode.UNSET


def test_server_span_continues_the_incoming_trace(app: FastAPI) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    (span,) = _spans_of(app, [("GET", "/items/1", {"traceparent": parent})])
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert span.parent.is_remote


def test_failed_request_span_is_an_error_with_its_type(app: FastAPI) -> None:
    boom, unavailable = _spans_of(app, [("GET", "/boom", {}), ("GET", "/unavailable", {})])
    assert boom.status.status_code == StatusCode.ERROR
    assert boom.attributes["error.type"] == "RuntimeError"
    assert boom.attributes["http.response.status_code"] == 500
    assert [e.name for e in boom.events] == ["exception"]
    assert unavailable.status.status_code == StatusCode.ERROR
    assert unavailable.attributes["error.type"] == "503"


def test_unknown_method_span_is_named_http_and_keeps_the_original(app: FastAPI) -> None:
    (span,) = _spans_of(app, [("BREW", "/items/1", {})])
    assert span.name == "HTTP /items/{item_id}"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "BREW"
