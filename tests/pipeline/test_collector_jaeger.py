"""The real collector (otelcol-mlpulse) and Jaeger, wired as collector-config/ describes.

Data is sent with the real OpenTelemetry Python SDK and exporters; traces are read back
through Jaeger's HTTP query API, metrics through a real OTLP/HTTP receiver that stands in
for the backend's POST /v1/metrics. No mocks: processes, sockets and protobuf on loopback.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Counter as CounterApi
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from .harness import CONFIG_DIR, CollectorFactory, Jaeger, OtlpSink, Proc, http_get_json, wait_until

pytestmark = pytest.mark.pipeline

COUNTER = "mlpulse.pipeline_test.predictions"


def unique_service(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def send_trace(exporter: SpanExporter, service: str) -> str:
    """One trace, a parent and a child span; returns the trace id as Jaeger prints it."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("mlpulse.tests.pipeline")
    try:
        with (
            tracer.start_as_current_span("POST /predict") as parent,
            tracer.start_as_current_span("model.predict") as child,
        ):
            child.set_attribute("ml.model.name", "result_predictor")
        return format(parent.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()


@contextmanager
def delta_counter(otlp_http: str, service: str) -> Iterator[tuple[MeterProvider, CounterApi]]:
    """A counter exported with DELTA temporality: the received points add up to what was
    added, so a lost (or duplicated) export shows in the sum. Exports on force_flush()."""
    exporter = OTLPMetricExporter(
        endpoint=f"{otlp_http}/v1/metrics",
        preferred_temporality={Counter: AggregationTemporality.DELTA},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}), metric_readers=[reader]
    )
    counter = provider.get_meter("mlpulse.tests.pipeline").create_counter(
        COUNTER, unit="{prediction}"
    )
    try:
        yield provider, counter
    finally:
        provider.shutdown()


def jaeger_trace(jaeger: Jaeger, service: str) -> list[dict[str, Any]]:
    """The traces Jaeger has for `service`; none while the query API does not answer."""
    try:
        body = http_get_json(f"{jaeger.query_url}/api/traces?service={service}&limit=20", 5.0)
    except OSError:  # a slow answer on a loaded machine: poll again
        return []
    return list(body.get("data") or [])


def wait_for_sum(sink: OtlpSink, service: str, expected: int, timeout: float) -> None:
    def arrived() -> bool:
        return sum(sink.metric_points(service, COUNTER)) >= expected

    try:
        wait_until(arrived, timeout, f"{expected} {COUNTER} for {service}")
    except AssertionError as exc:
        got = sink.metric_points(service, COUNTER)
        raise AssertionError(f"{exc}; received points {got} (sum {sum(got)})") from None


# --------------------------------------------------------------------------- traces


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_trace_reaches_jaeger(
    protocol: str, jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any
) -> None:
    backend = make_sink()
    collector = collectors.start(jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint)
    service = unique_service(f"pipeline-trace-{protocol}")
    exporter: SpanExporter
    if protocol == "http":
        exporter = OTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces")
    else:
        exporter = GrpcSpanExporter(endpoint=collector.otlp_grpc, insecure=True)

    trace_id = send_trace(exporter, service)

    def found() -> bool:
        # Both spans: the child and the parent are exported separately (SimpleSpanProcessor),
        # so they may reach Jaeger in different batches.
        return any(
            t["traceID"] == trace_id and len(t["spans"]) == 2 for t in jaeger_trace(jaeger, service)
        )

    try:
        wait_until(found, 30, f"trace {trace_id} of {service} in Jaeger")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{collector.proc.describe()}\n{jaeger.proc.describe()}"
        ) from None

    services = http_get_json(f"{jaeger.query_url}/api/services")["data"]
    assert service in services

    (trace,) = http_get_json(f"{jaeger.query_url}/api/traces/{trace_id}")["data"]
    names = sorted(span["operationName"] for span in trace["spans"])
    assert names == ["POST /predict", "model.predict"]
    processes = {p["serviceName"] for p in trace["processes"].values()}
    assert processes == {service}
    child = next(s for s in trace["spans"] if s["operationName"] == "model.predict")
    assert child["references"][0]["refType"] == "CHILD_OF"
    tags = {t["key"]: t["value"] for t in child["tags"]}
    assert tags["ml.model.name"] == "result_predictor"


# --------------------------------------------------------------------------- metrics


def test_metrics_reach_backend(
    jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any
) -> None:
    backend = make_sink()
    collector = collectors.start(jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint)
    service = unique_service("pipeline-metrics")

    with delta_counter(collector.otlp_http, service) as (provider, counter):
        counter.add(3, {"ml.model.name": "result_predictor"})
        counter.add(4, {"ml.model.name": "duration_predictor"})
        provider.force_flush()
        wait_for_sum(backend, service, 7, timeout=30)
        counter.add(5, {"ml.model.name": "result_predictor"})
        provider.force_flush()
        wait_for_sum(backend, service, 12, timeout=30)

    time.sleep(1)  # let a duplicate, if any, arrive
    assert sum(backend.metric_points(service, COUNTER)) == 12
    requests = [r for r in backend.snapshot() if r.path == "/v1/metrics"]
    assert requests, "the backend stand-in received no POST /v1/metrics"
    # otelcol.yaml asks for gzip; the receiver decoded it (else parsing would have failed).
    assert all(r.headers.get("content-encoding") == "gzip" for r in requests)
    assert all(r.headers.get("content-type") == "application/x-protobuf" for r in requests)


@pytest.mark.slow
def test_backend_outage_loses_nothing(
    jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any
) -> None:
    backend = make_sink()
    collector = collectors.start(jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint)
    service = unique_service("pipeline-outage")

    with delta_counter(collector.otlp_http, service) as (provider, counter):
        counter.add(1)
        provider.force_flush()
        wait_for_sum(backend, service, 1, timeout=30)

        backend.stop()  # connection refused from now on
        total = 1
        for i in range(6):
            counter.add(10 + i)
            total += 10 + i
            provider.force_flush()
            time.sleep(1.0)
        time.sleep(4)  # the outage outlasts several retries (max interval 1s in tests)
        assert collector.proc.alive(), collector.proc.describe()
        assert sum(backend.metric_points(service, COUNTER)) == 1

        backend.start()  # same port
        wait_for_sum(backend, service, total, timeout=60)

    time.sleep(2)
    assert sum(backend.metric_points(service, COUNTER)) == total, "duplicates after the outage"
    # The backlog drained in order (one sender), so the backend never sees time go back.
    times = [t for t, _ in backend.metric_points_timed(service, COUNTER)]
    assert times == sorted(times), "points arrived out of order after the outage"


@pytest.mark.slow
def test_queue_survives_collector_restart(
    jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any, tmp_path: Path
) -> None:
    """Backend down, collector restarted: the file_storage queue still delivers."""
    backend = make_sink()
    storage = tmp_path / "shared-queue"
    first = collectors.start(
        jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint, storage_dir=storage
    )
    service = unique_service("pipeline-restart")
    backend.stop()

    total = 0
    with delta_counter(first.otlp_http, service) as (provider, counter):
        for i in range(4):
            counter.add(100 + i)
            total += 100 + i
            provider.force_flush()
            time.sleep(0.5)
    time.sleep(2)  # past the 200 ms batch timeout: everything is in the exporter's queue

    assert first.stop() == 0, first.proc.describe()
    assert any(storage.iterdir()), "the persistent queue left nothing on disk"

    second = collectors.start(
        jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint, storage_dir=storage
    )
    backend.start()
    try:
        wait_for_sum(backend, service, total, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{first.proc.describe()}\n{second.proc.describe()}") from None
    time.sleep(2)
    assert sum(backend.metric_points(service, COUNTER)) == total


@pytest.mark.slow
def test_collector_crash_redelivers_everything_with_one_batch_late(
    jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any, tmp_path: Path
) -> None:
    """Backend down, collector `kill -9`ed, restarted on its queue: every batch arrives
    once (delta points: nothing lost, nothing twice).

    Order: the batch in flight at the crash (the oldest, being retried) goes back at the
    end of the persistent queue, so it arrives after the newer ones; the same happens after
    a clean stop (observed with v0.165). Bound: one batch out of order per restart
    (`num_consumers: 1`). The backend ignores points older than the last accepted one of
    their series: harmless for cumulative series like mlapi's, lost increments for a
    delta-temporality producer (collector-config/README.md).
    """
    backend = make_sink()
    storage = tmp_path / "crash-queue"
    first = collectors.start(
        jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint, storage_dir=storage
    )
    service = unique_service("pipeline-crash")
    backend.stop()

    total = 0
    with delta_counter(first.otlp_http, service) as (provider, counter):
        for i in range(5):
            counter.add(10**i)
            total += 10**i
            provider.force_flush()
            time.sleep(0.6)
    time.sleep(1.5)  # past the batch timeout: every batch is in the persistent queue
    assert first.proc.kill() == -signal.SIGKILL

    second = collectors.start(
        jaeger_otlp=jaeger.otlp_grpc, backend_endpoint=backend.endpoint, storage_dir=storage
    )
    backend.start()
    try:
        wait_for_sum(backend, service, total, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{first.proc.describe()}\n{second.proc.describe()}") from None
    time.sleep(2)
    received = backend.metric_points_timed(service, COUNTER)
    assert sorted(v for _, v in received) == [10**i for i in range(5)]
    times = [t for t, _ in received]
    assert any(
        times[:i] + times[i + 1 :] == sorted(times[:i] + times[i + 1 :]) for i in range(len(times))
    ), f"more than one batch out of order: {received}"


# --------------------------------------------------------------------------- extras


def test_vendor_extras_sends_both_signals_with_headers(
    jaeger: Jaeger, collectors: CollectorFactory, make_sink: Any
) -> None:
    backend = make_sink()
    vendor = make_sink()
    collector = collectors.start(
        jaeger_otlp=jaeger.otlp_grpc,
        backend_endpoint=backend.endpoint,
        extra_configs=("otelcol-extras.example.yaml",),
        extra_env={
            "MLPULSE_VENDOR_OTLP_ENDPOINT": vendor.endpoint,
            "MLPULSE_VENDOR_OTLP_HEADERS": '[{name: x-api-key, value: "pipeline-test-key"}]',
        },
    )
    service = unique_service("pipeline-vendor")

    trace_id = send_trace(OTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces"), service)
    with delta_counter(collector.otlp_http, service) as (provider, counter):
        counter.add(9)
        provider.force_flush()
        wait_for_sum(vendor, service, 9, timeout=30)
        wait_for_sum(backend, service, 9, timeout=30)

    wait_until(lambda: len(vendor.span_names(service)) == 2, 30, "spans at the vendor")
    wait_until(
        lambda: any(t["traceID"] == trace_id for t in jaeger_trace(jaeger, service)),
        30,
        "the trace in Jaeger as well",
    )
    vendor_requests = vendor.snapshot()
    assert {r.path for r in vendor_requests} == {"/v1/metrics", "/v1/traces"}
    assert all(r.headers.get("x-api-key") == "pipeline-test-key" for r in vendor_requests)
    # The backend gets metrics only, and never the vendor's header.
    assert {r.path for r in backend.snapshot()} == {"/v1/metrics"}
    assert all("x-api-key" not in r.headers for r in backend.snapshot())


def test_vendor_extras_without_endpoint_refuses_to_start(binaries: Any, tmp_path: Path) -> None:
    """Loaded by mistake without MLPULSE_VENDOR_OTLP_ENDPOINT: a clear error, not silence."""
    env = {
        "PATH": "/usr/bin:/bin",
        "MLPULSE_OTELCOL_STORAGE_DIR": str(tmp_path / "queue"),
        "MLPULSE_OTELCOL_METRICS_LEVEL": "none",
    }
    argv = [
        str(binaries.otelcol),
        "--config",
        str(CONFIG_DIR / "otelcol.yaml"),
        "--config",
        str(CONFIG_DIR / "otelcol-extras.example.yaml"),
    ]
    proc = Proc("collector-no-vendor", argv, env, tmp_path)
    try:
        proc.popen.wait(timeout=30)
    finally:
        rc = proc.stop()
    assert rc != 0
    assert "at least one endpoint must be specified" in proc.log_tail()
