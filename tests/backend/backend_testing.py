"""Helpers for backend tests: a uvicorn server thread, SDK meter providers, OTLP requests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

from mlpulse.backend.config import BackendSettings

TOKEN = "test-token"


@dataclass
class Backend:
    url: str
    app: FastAPI
    settings: BackendSettings
    client: httpx.Client

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(path, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()


class ServerThread:
    """uvicorn serving an app in a background thread, on a free port."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=75,  # outlives httpx's 5 s idle expiry: no reset races
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_settings(data_dir: Path, **overrides: Any) -> BackendSettings:
    overrides.setdefault("jaeger_ui_url", "http://127.0.0.1:16686")
    return BackendSettings(data_dir=data_dir, api_token=TOKEN, **overrides)


def meter_provider(
    url: str, service: str = "mlapi", instance: str = "i-1", gzip: bool = False, **resource: str
) -> MeterProvider:
    """A real SDK MeterProvider exporting OTLP/HTTP protobuf to the backend on flush only.

    Histograms use base-2 exponential buckets, as the instrumentation does.
    """
    exporter = OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics",
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    attrs = {"service.name": service, "service.instance.id": instance, **resource}
    return MeterProvider(metric_readers=[reader], resource=Resource.create(attrs))


def metric_request(
    metric: str = "http.server.request.duration",
    *,
    service: str = "mlapi",
    instance: str = "i-1",
    points: list[dict[str, Any]] | None = None,
    kind: str = "sum",
    temporality: int = 1,  # 1 delta, 2 cumulative
    monotonic: bool = True,
    unit: str = "",
) -> Any:
    """Build an ExportMetricsServiceRequest by hand (sum, gauge or exp histogram points).

    Each point dict: value (sum/gauge) or hist (dict of ExponentialHistogramDataPoint
    fields), time_s, start_s, attributes.
    """
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kvs(d: dict[str, Any]) -> list[KeyValue]:
        out = []
        for k, v in d.items():
            if isinstance(v, bool):
                av = AnyValue(bool_value=v)
            elif isinstance(v, int):
                av = AnyValue(int_value=v)
            elif isinstance(v, float):
                av = AnyValue(double_value=v)
            else:
                av = AnyValue(string_value=str(v))
            out.append(KeyValue(key=k, value=av))
        return out

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": service, "service.instance.id": instance}))
    sm = rm.scope_metrics.add()
    sm.scope.name = "tests"
    m = sm.metrics.add()
    m.name = metric
    m.unit = unit
    for p in points or []:
        t = int(p["time_s"] * 1e9)
        start = int(p.get("start_s", 0) * 1e9)
        attrs = kvs(p.get("attributes", {}))
        if kind == "sum":
            m.sum.aggregation_temporality = temporality
            m.sum.is_monotonic = monotonic
            dp = m.sum.data_points.add(time_unix_nano=t, start_time_unix_nano=start)
            dp.as_double = float(p["value"])
        elif kind == "gauge":
            dp = m.gauge.data_points.add(time_unix_nano=t, start_time_unix_nano=start)
            dp.as_double = float(p["value"])
        else:
            m.exponential_histogram.aggregation_temporality = temporality
            dp = m.exponential_histogram.data_points.add(
                time_unix_nano=t, start_time_unix_nano=start, **p["hist"]
            )
        dp.attributes.extend(attrs)
    return req


def post_otlp(
    backend: Backend,
    body: bytes,
    content_type: str = "application/x-protobuf",
    encoding: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    return backend.client.post("/v1/metrics", content=body, headers=headers)
