"""OTLP helpers for the benchmarks: collect from a real SDK reader, encode with the real
OTLP encoder, move timestamps (to lay out hours of data in seconds), post over HTTP."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bench._common import TOKEN


def collect(reader: InMemoryMetricReader) -> ExportMetricsServiceRequest:
    """What an OTLP exporter would send for this collection."""
    data = reader.get_metrics_data()
    if data is None:
        return ExportMetricsServiceRequest()
    return encode_metrics(data)


def data_points(req: ExportMetricsServiceRequest) -> Iterator[Any]:
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                yield from getattr(m, kind).data_points


def count_points(req: ExportMetricsServiceRequest) -> int:
    return sum(1 for _ in data_points(req))


def retime(req: ExportMetricsServiceRequest, start_ns: int | None, time_ns: int) -> None:
    """Set every point's time (and start time, for cumulative series) in place."""
    for p in data_points(req):
        p.time_unix_nano = time_ns
        if start_ns is not None and p.start_time_unix_nano:
            p.start_time_unix_nano = start_ns
        for ex in getattr(p, "exemplars", ()):
            ex.time_unix_nano = time_ns


class Poster:
    """One keep-alive HTTP/1.1 connection posting OTLP protobuf bodies (cheap client side)."""

    def __init__(self, port: int, path: str = "/v1/metrics") -> None:
        self.port = port
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {TOKEN}",
        }

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(50):
            try:
                self.conn.request("POST", self.path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            if resp.status in (429, 503) and attempt < 49:
                import time

                time.sleep(0.05)
                continue
            return resp.status, data
        raise RuntimeError("gave up after 50 retries")

    def close(self) -> None:
        self.conn.close()


def rejected(body: bytes) -> int:
    """Points refused in an ExportMetricsServiceResponse (partial_success)."""
    if not body:
        return 0
    resp = ExportMetricsServiceResponse()
    resp.ParseFromString(body)
    return int(resp.partial_success.rejected_data_points)
