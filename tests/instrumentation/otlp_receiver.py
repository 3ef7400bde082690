"""A small OTLP/HTTP receiver for tests: real exporters post protobuf to it on port 0."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["Received", "attrs", "data_points", "otlp_receiver", "wait_for"]


@dataclass
class Received:
    """What the receiver got, per signal, in arrival order."""

    url: str = ""
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        with self.lock:
            return list(self.metrics)


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class OtlpHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            reply: bytes
            with received.lock:
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


@contextmanager
def otlp_receiver() -> Iterator[Received]:
    """Serve OTLP/HTTP on a free port; `Received.url` is its base URL."""
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


def attrs(key_values: Any) -> dict[str, Any]:
    """OTLP KeyValues as a plain dict."""
    out: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def data_points(
    request: ExportMetricsServiceRequest, name: str
) -> list[tuple[dict[str, Any], Any]]:
    """(resource attributes, point) of every point of metric `name` in `request`."""
    found: list[tuple[dict[str, Any], Any]] = []
    for rm in request.resource_metrics:
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    kind = metric.WhichOneof("data")
                    found.extend((resource, p) for p in getattr(metric, kind).data_points)
    return found


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll `predicate` until it holds (fail after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for an export"
        time.sleep(0.05)
