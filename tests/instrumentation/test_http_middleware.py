"""The HTTP duration metric: route templates, status, errors, exemplars, exclusions."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import ExponentialHistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from otel_reading import TestClient, collect, point, points

DURATION = "http.server.request.duration"
#: What every request of the TestClient carries: plain HTTP/1.1.
SERVER = {"url.scheme": "http", "network.protocol.version": "1.1"}


def test_route_is_the_template_not_the_raw_path(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    for item_id in (1, 2, 3):
        assert client.get(f"/items/{item_id}").status_code == 200
    hist = point(
        collect(reader),
        DURATION,
        {
            **SERVER,
            "http.request.method": "GET",
            "http.route": "/items/{item_id}",
            "http.response.status_code": 200,
        },
    )
    assert isinstance(hist, ExponentialHistogramDataPoint)
    assert hist.count == 3
    assert 0 < hist.min <= hist.max < 1.0


def test_included_router_route_carries_every_prefix(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.get("/v1/api/things/a").status_code == 200
    routes = {p.attributes.get("http.route") for p in points(collect(reader), DURATION)}
    assert routes == {"/v1/api/things/{name}"}


def test_unmatched_paths_share_one_series_without_route(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    for i in range(25):
        assert client.get(f"/no/such/path/{i}").status_code == 404
    series = points(collect(reader), DURATION)
    assert len(series) == 1
    assert dict(series[0].attributes) == {
        **SERVER,
        "http.request.method": "GET",
        "http.response.status_code": 404,
    }
    assert series[0].count == 25


def test_validation_error_keeps_the_route(client: TestClient, reader: InMemoryMetricReader) -> None:
    assert client.get("/items/not-a-number").status_code == 422
    point(
        collect(reader),
        DURATION,
        {
            **SERVER,
            "http.request.method": "GET",
            "http.route": "/items/{item_id}",
            "http.response.status_code": 422,
        },
    )


def test_exception_is_a_500_with_the_exception_type(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.get("/boom").status_code == 500
    hist = point(
        collect(reader),
        DURATION,
        {
            **SERVER,
            "http.request.method": "GET",
            "http.route": "/boom",
            "http.response.status_code": 500,
            "error.type": "RuntimeError",
        },
    )
    assert hist.count == 1


def test_5xx_response_sets_error_type_to_the_status(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.get("/unavailable").status_code == 503
    point(
        collect(reader),
        DURATION,
        {
            **SERVER,
            "http.request.method": "GET",
            "http.route": "/unavailable",
            "http.response.status_code": 503,
            "error.type": "503",
        },
    )


def test_unknown_method_is_recorded_as_other(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    assert client.request("BREW", "/items/1").status_code == 405
    methods = {p.attributes["http.request.method"] for p in points(collect(reader), DURATION)}
    assert methods == {"_OTHER"}


def test_health_is_neither_traced_nor_measured(
    client: TestClient, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> None:
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert span_exporter.get_finished_spans() == ()
    assert points(collect(reader), DURATION) == []


def test_one_server_span_per_request_without_receive_send_spans(
    client: TestClient, span_exporter: InMemorySpanExporter
) -> None:
    assert client.get("/items/7").status_code == 200
    spans = span_exporter.get_finished_spans()
    assert [(s.name, s.kind) for s in spans] == [("GET /items/{item_id}", SpanKind.SERVER)]
    assert spans[0].attributes is not None
    assert spans[0].attributes["http.route"] == "/items/{item_id}"


def test_exemplars_carry_the_trace_of_the_request_span(
    client: TestClient, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> None:
    for item_id in range(3):
        assert client.get(f"/items/{item_id}").status_code == 200
    spans = {s.context.span_id: s.context.trace_id for s in span_exporter.get_finished_spans()}
    assert len(spans) == 3
    hist = point(
        collect(reader),
        DURATION,
        {
            **SERVER,
            "http.request.method": "GET",
            "http.route": "/items/{item_id}",
            "http.response.status_code": 200,
        },
    )
    assert hist.exemplars
    for exemplar in hist.exemplars:
        assert spans[exemplar.span_id] == exemplar.trace_id


def test_a_span_lasts_exactly_the_duration_its_exemplar_measured(
    client: TestClient, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> None:
    # A user follows an exemplar to its trace and expects the same number there: the
    # span's start and end come from the readings the duration was measured with.
    for item_id in range(5):
        assert client.get(f"/items/{item_id}").status_code == 200
    spans = {s.context.span_id: s for s in span_exporter.get_finished_spans()}
    hist = point(collect(reader), DURATION, {
        **SERVER, "http.request.method": "GET", "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    })  # fmt: skip
    assert hist.exemplars
    for exemplar in hist.exemplars:
        span = spans[exemplar.span_id]
        assert span.start_time is not None and span.end_time is not None
        # Within 1 ns of rounding: the readings are the same ones.
        assert abs((span.end_time - span.start_time) - exemplar.value * 1e9) <= 1


def test_model_metrics_recorded_in_a_request_link_to_its_trace(
    client: TestClient, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> None:
    assert client.post("/predict").status_code == 200
    (span,) = span_exporter.get_finished_spans()
    inference = point(
        collect(reader),
        "ml.model.inference.duration",
        {"ml.model.name": "result", "ml.model.version": "v1"},
    )
    assert [(e.trace_id, e.span_id) for e in inference.exemplars] == [
        (span.context.trace_id, span.context.span_id)
    ]
