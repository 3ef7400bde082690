"""Providers, exporters and the wiring of one FastAPI app: `instrument_app` and friends."""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence

from fastapi import FastAPI
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NoOpTracer, Tracer
from starlette.middleware import Middleware

from mlpulse_instrumentation._cache import CacheTelemetry
from mlpulse_instrumentation._hotpath import (
    AggregationChoice,
    BufferedMetricExporter,
    HotPath,
    ReplaySink,
)
from mlpulse_instrumentation._http import HttpServerMiddleware, known_methods
from mlpulse_instrumentation._meters import (
    HTTP_SERVER_REQUEST_DURATION,
    MODEL_INFERENCE_DURATION,
    MODEL_PREDICTION_VALUE,
    init_meters,
    init_system_meters,
)
from mlpulse_instrumentation._model import ModelTelemetry
from mlpulse_instrumentation._system import SystemSampler

_log = logging.getLogger(__name__)

SCOPE_NAME = "mlpulse.instrumentation"
SCOPE_VERSION = "0.1.0"
DEPLOYMENT_ENVIRONMENT_NAME = "deployment.environment.name"
DEFAULT_EXPORT_INTERVAL_S = 5.0
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = ("/health",)

_APP_ATTRIBUTE = "_mlpulse_telemetry"
_active: set[Telemetry] = set()
_active_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The SDK restarts its export threads in a forked child, but the resource (and so
    # service.instance.id) is the parent's: two workers would report as one instance.
    if _active:
        _log.warning(
            "process forked after instrument_app: this worker shares the parent's "
            "service.instance.id; call instrument_app in each worker (no gunicorn --preload)"
        )


os.register_at_fork(after_in_child=_after_fork_in_child)


class Telemetry:
    """The instrumentation of one app: its providers and its model and cache recorders.

    Returned by `instrument_app`; reach it later with `get_telemetry(app)`. Record model
    and cache activity through `models` and `cache`; open your own spans with `tracer`
    (a no-op tracer when traces are off).
    """

    def __init__(
        self,
        *,
        resource: Resource,
        meter_provider: MeterProvider,
        metric_readers: Sequence[MetricReader],
        tracer_provider: TracerProvider | None,
        models: ModelTelemetry,
        cache: CacheTelemetry,
        middleware: Middleware,
    ) -> None:
        self.resource = resource
        self.meter_provider = meter_provider
        self.metric_readers = tuple(metric_readers)
        self.tracer_provider = tracer_provider
        self.models = models
        self.cache = cache
        self._middleware = middleware
        self._tracer: Tracer = (
            tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)
            if tracer_provider is not None
            else NoOpTracer()
        )
        self._shut_down = False
        self._lock = threading.Lock()

    @property
    def tracer(self) -> Tracer:
        """A tracer whose spans join the request's trace (no-op when traces are off)."""
        return self._tracer

    @property
    def traces_enabled(self) -> bool:
        """Whether spans are recorded and exported."""
        return self.tracer_provider is not None

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything recorded so far; return False if an export timed out."""
        millis = int(timeout_s * 1000)
        ok = self.meter_provider.force_flush(millis)
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop the providers; later recordings are dropped. Safe to repeat."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        with _active_lock:
            _active.discard(self)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def instrument_app(
    app: FastAPI,
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    service_instance_id: str | None = None,
    deployment_environment: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    views: Sequence[View] | None = None,
    span_processors: Sequence[SpanProcessor] | None = None,
    metrics_endpoint: str | None = None,
    traces_endpoint: str | None = None,
    export_interval_s: float | None = None,
    excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
    system_metrics: bool = True,
    filesystem_mountpoints: Sequence[str] = ("/",),
) -> Telemetry:
    """Instrument a FastAPI app: metrics always, traces when an exporter is configured.

    Without `metric_readers`, readers and exporters come from the ``OTEL_*`` variables
    and the histograms take the buffered export path; readers you pass (and `views`)
    get every histogram through the SDK's own aggregation instead. Calling it again on
    an instrumented app returns the existing `Telemetry`.
    """
    existing = get_telemetry(app)
    if existing is not None:
        return existing
    if export_interval_s is not None and export_interval_s <= 0:
        raise ValueError(f"export_interval_s must be positive, got {export_interval_s}")
    excluded = tuple(excluded_paths)
    resource = build_resource(
        service_name=service_name,
        service_version=service_version,
        service_instance_id=service_instance_id,
        deployment_environment=deployment_environment,
        attributes=resource_attributes,
    )
    processors = (
        list(span_processors)
        if span_processors is not None
        else _env_span_processors(traces_endpoint)
    )
    exemplars = bool(processors) and _env("OTEL_METRICS_EXEMPLAR_FILTER") != "always_off"
    scope = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)

    # The buffered export path needs to own the exporters (to know their temporality);
    # readers built by the caller, or views, get the SDK's aggregation of every value.
    buffered = metric_readers is None and views is None
    hot_path = HotPath(exemplars=exemplars)
    exporters = (
        _env_metric_exporters(hot_path, resource, scope, metrics_endpoint, export_interval_s)
        if buffered
        else []
    )
    if metric_readers is not None:
        readers = list(metric_readers)
    else:
        readers = [
            PeriodicExportingMetricReader(exporter, export_interval_millis=interval)
            for exporter, interval in exporters
        ]
    all_views = list(views) if views is not None else _default_views()
    meter_provider = MeterProvider(
        metric_readers=readers, resource=resource, views=[] if buffered else all_views
    )
    meter = meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION)
    meters = init_meters(meter, hot_path)
    if not buffered:
        hot_path.add_destination(ReplaySink(meter, hot_path.histograms))
    cache = CacheTelemetry(meter, meters.cache_lookups)
    if system_metrics:
        init_system_meters(meter, SystemSampler(filesystem_mountpoints).callbacks())

    tracer_provider: TracerProvider | None = None
    if processors:
        tracer_provider = TracerProvider(resource=resource)
        for processor in processors:
            tracer_provider.add_span_processor(processor)

    # One middleware for the server span and the duration metric: the span is current
    # when the duration is recorded, which gives the HTTP histogram its exemplars.
    middleware = Middleware(
        HttpServerMiddleware,
        histogram=meters.http_duration,
        tracer=(
            tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)
            if tracer_provider is not None
            else None
        ),
        excluded_paths=excluded,
        known_methods=known_methods(),
    )
    app.user_middleware.insert(0, middleware)
    # Rebuild the middleware stack on the next request, also for an app already serving.
    app.middleware_stack = None

    telemetry = Telemetry(
        resource=resource,
        meter_provider=meter_provider,
        metric_readers=readers,
        tracer_provider=tracer_provider,
        models=ModelTelemetry(meters),
        cache=cache,
        middleware=middleware,
    )
    setattr(app, _APP_ATTRIBUTE, telemetry)
    with _active_lock:
        _active.add(telemetry)
    _log.debug(
        "instrumented %s: %d metric reader(s) (%s histograms), traces %s",
        resource.attributes.get(SERVICE_NAME),
        len(readers),
        "buffered" if buffered else "SDK-aggregated",
        "on" if tracer_provider is not None else "off",
    )
    return telemetry


def uninstrument_app(app: FastAPI) -> None:
    """Remove the instrumentation of `app`, flushing and stopping its providers."""
    telemetry = get_telemetry(app)
    if telemetry is None:
        return
    if telemetry._middleware in app.user_middleware:
        app.user_middleware.remove(telemetry._middleware)
    app.middleware_stack = None
    delattr(app, _APP_ATTRIBUTE)
    telemetry.shutdown()


def get_telemetry(app: FastAPI) -> Telemetry | None:
    """Return the `Telemetry` of an instrumented app, or None."""
    telemetry = getattr(app, _APP_ATTRIBUTE, None)
    return telemetry if isinstance(telemetry, Telemetry) else None


def shutdown() -> None:
    """Flush and stop every instrumentation of this process (call at exit)."""
    with _active_lock:
        active = list(_active)
    for telemetry in active:
        telemetry.shutdown()


def build_resource(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    service_instance_id: str | None = None,
    deployment_environment: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Resource:
    """Return the resource: arguments as defaults, OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES win so operators can override them."""
    attrs: dict[str, str] = {
        SERVICE_NAME: service_name or "unknown_service",
        SERVICE_INSTANCE_ID: service_instance_id or str(uuid.uuid4()),
    }
    if service_version:
        attrs[SERVICE_VERSION] = service_version
    if deployment_environment:
        attrs[DEPLOYMENT_ENVIRONMENT_NAME] = deployment_environment
    attrs.update(attributes or {})
    return Resource.create(attrs).merge(OTELResourceDetector().detect())


def _default_views() -> list[View]:
    """Base-2 exponential latency and value histograms (the contract), for readers the
    caller built. An OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION set by the
    operator wins: its readers' preferred aggregation then applies."""
    if _env("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"):
        return []
    return [
        View(
            instrument_name=name,
            aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20),
        )
        for name in (
            HTTP_SERVER_REQUEST_DURATION,
            MODEL_INFERENCE_DURATION,
            MODEL_PREDICTION_VALUE,
        )
    ]


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _exporter_kinds(variable: str) -> set[str]:
    value = _env(variable) or "otlp"
    return {kind.strip().lower() for kind in value.split(",") if kind.strip()}


def _protocol(signal: str) -> str:
    protocol = (
        _env(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()
    if protocol not in ("grpc", "http/protobuf"):
        _log.warning("OTLP protocol %r is not supported, using http/protobuf", protocol)
        protocol = "http/protobuf"
    return protocol


def _endpoint_from_env(signal: str) -> bool:
    specific = _env(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    return bool(specific or _env("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _export_interval_millis(export_interval_s: float | None) -> float | None:
    if export_interval_s is not None:
        return export_interval_s * 1000
    if _env("OTEL_METRIC_EXPORT_INTERVAL"):
        return None  # the SDK reads it
    return DEFAULT_EXPORT_INTERVAL_S * 1000


def _env_metric_exporters(
    hot_path: HotPath,
    resource: Resource,
    scope: InstrumentationScope,
    default_endpoint: str | None,
    export_interval_s: float | None,
) -> list[tuple[BufferedMetricExporter, float | None]]:
    """The exporters OTEL_METRICS_EXPORTER names, each wrapped for the buffered path."""
    kinds = _exporter_kinds("OTEL_METRICS_EXPORTER")
    if "none" in kinds:
        return []
    interval = _export_interval_millis(export_interval_s)
    temporality = _temporality_preference()
    aggregation = _histogram_aggregation()
    preferred_aggregation = _preferred_aggregation(aggregation)
    exporters: list[tuple[MetricExporter, dict[type, AggregationTemporality]]] = []
    if "otlp" in kinds:
        exporters.append(
            (
                _otlp_metric_exporter(
                    default_endpoint,
                    _export_timeout_s(interval),
                    temporality,
                    preferred_aggregation,
                ),
                temporality,
            )
        )
    if "console" in kinds:
        # sys.stdout as it is now (the SDK's default is bound when it is imported).
        exporters.append((ConsoleMetricExporter(out=sys.stdout), {}))
    return [
        (
            BufferedMetricExporter(
                exporter,
                hot_path,
                resource=resource,
                scope=scope,
                preferred_temporality=preference,
                preferred_aggregation=preferred_aggregation,
                histogram_aggregation=aggregation,
            ),
            interval,
        )
        for exporter, preference in exporters
    ]


def _temporality_preference() -> dict[type, AggregationTemporality]:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, as the SDK's OTLP exporters
    read it (cumulative, delta or lowmemory)."""
    value = (_env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") or "cumulative").lower()
    cumulative, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    if value not in ("cumulative", "delta", "lowmemory"):
        _log.warning("temporality preference %r is not supported, using cumulative", value)
        value = "cumulative"
    monotonic = delta if value in ("delta", "lowmemory") else cumulative
    return {
        Counter: monotonic,
        UpDownCounter: cumulative,
        Histogram: monotonic,
        ObservableCounter: delta if value == "delta" else cumulative,
        ObservableUpDownCounter: cumulative,
        ObservableGauge: cumulative,
    }


def _histogram_aggregation() -> AggregationChoice:
    """OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, or None for each
    histogram's own kind (exponential latencies and values, explicit confidence)."""
    value = _env("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION")
    if value is None:
        return None
    if value.lower() == "base2_exponential_bucket_histogram":
        return "exponential"
    if value.lower() == "explicit_bucket_histogram":
        return "explicit"
    _log.warning("default histogram aggregation %r is not supported, ignoring it", value)
    return None


def _preferred_aggregation(choice: AggregationChoice) -> dict[type, Aggregation] | None:
    if choice == "exponential":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    if choice == "explicit":
        return {Histogram: ExplicitBucketHistogramAggregation()}
    return None


def _export_timeout_s(interval_millis: float | None) -> float | None:
    """An export (retries included) should not outlast its interval: a collector or
    backend that is still starting would otherwise hold back the next exports by the
    SDK's 10 s. OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT, when set, wins."""
    if _env("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") or _env("OTEL_EXPORTER_OTLP_TIMEOUT"):
        return None
    if interval_millis is None:
        interval_millis = float(_env("OTEL_METRIC_EXPORT_INTERVAL") or 60_000)
    return min(max(interval_millis / 1000, 1.0), 10.0)


def _otlp_metric_exporter(
    default_endpoint: str | None,
    timeout_s: float | None,
    temporality: dict[type, AggregationTemporality],
    aggregation: dict[type, Aggregation] | None,
) -> MetricExporter:
    # With an OTEL_* endpoint (or none at all) the exporter reads the environment itself;
    # the default endpoint only fills the gap (mlapi's embedded default: the backend).
    endpoint = None if _endpoint_from_env("METRICS") else default_endpoint
    if _protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(
            timeout=timeout_s,
            preferred_temporality=temporality,
            preferred_aggregation=aggregation,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(
        endpoint=endpoint,
        timeout=timeout_s,
        preferred_temporality=temporality,
        preferred_aggregation=aggregation,
    )


def _env_span_processors(default_endpoint: str | None) -> list[SpanProcessor]:
    kinds = _exporter_kinds("OTEL_TRACES_EXPORTER")
    if "none" in kinds:
        return []
    exporters: list[SpanExporter] = []
    # Traces are opt-in: without a configured endpoint they are not recorded at all.
    if "otlp" in kinds and (_endpoint_from_env("TRACES") or default_endpoint):
        exporters.append(_otlp_span_exporter(default_endpoint))
    if "console" in kinds:
        exporters.append(ConsoleSpanExporter())
    return [BatchSpanProcessor(exporter) for exporter in exporters]


def _otlp_span_exporter(default_endpoint: str | None) -> SpanExporter:
    endpoint = None if _endpoint_from_env("TRACES") else default_endpoint
    if _protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=endpoint)
