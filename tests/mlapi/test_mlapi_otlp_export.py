"""mlapi under a real uvicorn, exporting with the real OTLP/HTTP exporters to a real
receiver: metric names, attributes, values, exemplars and spans arrive as promised."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from mlapi_testing import SCAN, TOKEN
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from mlpulse import __version__
from mlpulse.mlapi.app import create_app

pytestmark = pytest.mark.timeout(60)

_EMPTY_METRIC = Metric()


@dataclass
class Received:
    """What the receiver got, per signal, in arrival order."""

    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class OtlpHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            reply: bytes
            with received.lock:
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/metrics":
                    received.metrics.append(ExportMetricsServiceRequest.FromString(body))
                    reply = ExportMetricsServiceResponse().SerializeToString()
                elif self.path == "/v1/traces":
                    received.traces.append(ExportTraceServiceRequest.FromString(body))
                    reply = ExportTraceServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return OtlpHandler


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


class _Server:
    """uvicorn serving an app in a thread on a free port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=75,  # outlives httpx's 5 s idle expiry
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert self.thread.is_alive(), "uvicorn exited"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def _attrs(key_values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in key_values:
        assert isinstance(kv, KeyValue)
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def _metrics(request: ExportMetricsServiceRequest) -> dict[str, Any]:
    return {
        metric.name: metric
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def _wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for an export"
        time.sleep(0.05)


def test_metrics_and_traces_arrive_over_otlp_http(
    receiver: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = receiver
    # Metrics take mlapi's embedded default (the backend URL); traces the OTEL_* variable.
    monkeypatch.setenv("MLPULSE_BACKEND_URL", url)
    monkeypatch.setenv("MLPULSE_API_TOKEN", TOKEN)
    monkeypatch.setenv("MLPULSE_TRAINING_SAMPLES", "600")
    monkeypatch.setenv("MLPULSE_MODEL_TREES", "12")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-mlpulse-test=yes")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mlapi-it")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=it")

    server = _Server(create_app())
    base = server.start()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            answers = [client.post("/predict/result", json=SCAN).json() for _ in range(2)]
            answers.append(client.post("/predict/duration", json=SCAN).json())
            actuals = (100.0, 140.0, 2.5)
            for answer, actual in zip(answers, actuals, strict=True):
                feedback = client.post(
                    "/feedback", json={"prediction_id": answer["prediction_id"], "actual": actual}
                )
                assert feedback.status_code == 200
            assert client.get("/health").status_code == 200
            assert client.get("/no/such/route").status_code == 404
        # The periodic reader exports while the app runs...
        _wait_for(lambda: any("ml.model.feedback" in _metrics(r) for r in received.metrics))
    finally:
        server.stop()  # ...and the lifespan's shutdown flushes the final state.

    assert all(h.get("x-mlpulse-test") == "yes" for h in received.headers)
    final = received.metrics[-1]
    (resource_metrics,) = final.resource_metrics
    resource = _attrs(resource_metrics.resource.attributes)
    assert resource["service.name"] == "mlapi-it"
    assert resource["service.version"] == __version__
    assert resource["deployment.environment.name"] == "it"
    assert len(resource["service.instance.id"]) == 36
    assert [sm.scope.name for sm in resource_metrics.scope_metrics] == ["mlpulse.instrumentation"]

    metrics = _metrics(final)
    assert set(metrics) >= {
        "http.server.request.duration",
        "ml.model.predictions",
        "ml.model.inference.duration",
        "ml.model.prediction.confidence",
        "ml.model.prediction.value",
        "ml.model.feedback",
        "ml.model.error.absolute",
        "ml.model.error.squared",
        "ml.model.actual",
        "ml.model.actual.squared",
        "ml.model.baseline.mae",
        "ml.model.baseline.r2",
        "ml.cache.lookups",
        "ml.cache.entries",
        "ml.cache.size",
        "process.cpu.utilization",
        "process.memory.usage",
        "process.uptime",
        "system.cpu.utilization",
        "system.memory.utilization",
        "system.filesystem.utilization",
    }

    predictions = {
        tuple(sorted(_attrs(p.attributes).items())): p.as_int
        for p in metrics["ml.model.predictions"].sum.data_points
    }
    assert predictions == {
        (
            ("ml.model.name", "result"),
            ("ml.model.version", "v1"),
            ("ml.prediction.cache_hit", False),
        ): 1,
        (
            ("ml.model.name", "result"),
            ("ml.model.version", "v1"),
            ("ml.prediction.cache_hit", True),
        ): 1,
        (
            ("ml.model.name", "duration"),
            ("ml.model.version", "v1"),
            ("ml.prediction.cache_hit", False),
        ): 1,
    }
    assert metrics["ml.model.predictions"].sum.is_monotonic

    def by_model(name: str) -> dict[str, float]:
        # Summed over the cache-hit and prediction-window splits of each model.
        out: dict[str, float] = {}
        for p in metrics[name].sum.data_points:
            model = _attrs(p.attributes)["ml.model.name"]
            out[model] = out.get(model, 0) + (p.as_double or p.as_int)
        return out

    result_errors = [abs(a - answers[i]["prediction"]) for i, a in enumerate(actuals[:2])]
    assert by_model("ml.model.feedback") == {"result": 2, "duration": 1}
    assert by_model("ml.model.error.absolute")["result"] == pytest.approx(sum(result_errors))
    assert by_model("ml.model.error.squared")["duration"] == pytest.approx(
        (2.5 - answers[2]["prediction"]) ** 2
    )
    assert by_model("ml.model.actual") == {"result": 240.0, "duration": 2.5}
    assert by_model("ml.model.actual.squared")["result"] == 100.0**2 + 140.0**2

    baselines = {
        _attrs(p.attributes)["ml.model.name"]: p.as_double
        for p in metrics["ml.model.baseline.mae"].gauge.data_points
    }
    assert set(baselines) == {"result", "duration"} and min(baselines.values()) > 0

    confidence = metrics["ml.model.prediction.confidence"].histogram.data_points
    assert list(confidence[0].explicit_bounds) == [round(0.05 * i, 2) for i in range(1, 20)]

    # HTTP durations: route templates only, /health absent, exemplars linked to spans.
    http = metrics["http.server.request.duration"].exponential_histogram.data_points
    routes = {_attrs(p.attributes).get("http.route") for p in http}
    assert routes == {"/predict/result", "/predict/duration", "/feedback", None}
    spans = {
        span.span_id: span
        for request in received.traces
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }
    assert sorted(s.name for s in spans.values()) == sorted(
        ["POST /predict/result"] * 2 + ["POST /predict/duration"] + ["POST /feedback"] * 3 + ["GET"]
    )
    predict_result = next(
        p for p in http if _attrs(p.attributes).get("http.route") == "/predict/result"
    )
    assert predict_result.count == 2
    # Exemplars travel with the export that follows their measurement (the reservoir is
    # emptied at each collection), so look at every export.
    exemplars = [
        exemplar
        for request in received.metrics
        for p in _metrics(request)
        .get("http.server.request.duration", _EMPTY_METRIC)
        .exponential_histogram.data_points
        if _attrs(p.attributes).get("http.route") == "/predict/result"
        for exemplar in p.exemplars
    ]
    assert len(exemplars) == 2
    for exemplar in exemplars:
        assert len(exemplar.trace_id) == 16 and len(exemplar.span_id) == 8
        assert spans[exemplar.span_id].trace_id == exemplar.trace_id
        assert spans[exemplar.span_id].name == "POST /predict/result"
    inference_exemplars = [
        exemplar
        for request in received.metrics
        for p in _metrics(request)
        .get("ml.model.inference.duration", _EMPTY_METRIC)
        .exponential_histogram.data_points
        for exemplar in p.exemplars
    ]
    assert {spans[e.span_id].name for e in inference_exemplars} == {
        "POST /predict/result",
        "POST /predict/duration",
    }
