"""mlpulse instrumentation: one call to observe a FastAPI prediction API with OpenTelemetry.

Usage::

    from mlpulse_instrumentation import instrument_app

    telemetry = instrument_app(app, service_name="pricing-api", service_version="1.4.0")
    telemetry.models.record_prediction("price", "v3", value=41.2, confidence=0.87,
                                       duration_s=0.004, cache_hit=False)
    telemetry.models.record_feedback("price", "v3", predicted=41.2, actual=39.0)

`instrument_app` gives the app, with no further code:

* ``http.server.request.duration`` as a base-2 exponential histogram with method, route
  template and status, recorded by a lean ASGI middleware;
* traces through opentelemetry-instrumentation-fastapi when a traces endpoint is
  configured (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``traces_endpoint=``); ``/health`` is not traced, the per-message receive/send spans
  are off, and HTTP histogram points carry the request span as an exemplar;
* process and host CPU, memory and filesystem gauges (psutil), read at collection time.

Model and cache activity is recorded through `Telemetry.models` (`ModelTelemetry`) and
`Telemetry.cache` (`CacheTelemetry`). A measurement costs a deque append on the request
path; buffers are folded into cumulative state when a reader collects. Export follows
the standard ``OTEL_*`` variables (endpoint, protocol ``http/protobuf`` or ``grpc``,
headers, service name, resource attributes, sampler, ``OTEL_METRIC_EXPORT_INTERVAL``);
the default export interval is 5 s.
Tests inject ``metric_readers=[InMemoryMetricReader()]`` and ``span_processors=[...]``.
No global provider is set. `uninstrument_app(app)` undoes everything, `shutdown()` flushes
every instrumentation at exit. See docs/instrumentation.md.
"""

from mlpulse_instrumentation._cache import CacheTelemetry
from mlpulse_instrumentation._model import ModelTelemetry
from mlpulse_instrumentation._setup import (
    Telemetry,
    build_resource,
    get_telemetry,
    instrument_app,
    shutdown,
    uninstrument_app,
)

__all__ = [
    "CacheTelemetry",
    "ModelTelemetry",
    "Telemetry",
    "build_resource",
    "get_telemetry",
    "instrument_app",
    "shutdown",
    "uninstrument_app",
]
