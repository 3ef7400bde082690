"""mlpulse instrumentation: one call to observe a FastAPI prediction API with OpenTelemetry.

Install with ``pip install ./instrumentation`` (OpenTelemetry 1.40-1.45 and psutil only).
Usage::

    from mlpulse_instrumentation import instrument_app

    telemetry = instrument_app(app, service_name="pricing-api", service_version="1.4.0")
    price = telemetry.models.bind("price", "v3")      # once per model version
    price.record_prediction(value=41.2, confidence=0.87, duration_s=0.004, cache_hit=False)
    price.record_feedback(predicted=41.2, actual=39.0)

`instrument_app` gives the app, with no further code:

* ``http.server.request.duration`` as a base-2 exponential histogram with method, route
  template, status, ``url.scheme`` and ``network.protocol.version``, recorded by a lean
  ASGI middleware;
* one SERVER span per request (stable HTTP attribute names, the parent taken from the
  incoming headers), recorded by the same middleware, when a traces endpoint is
  configured (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
  or ``traces_endpoint=``); ``/health`` is not traced, and histogram points carry the
  request span as an exemplar;
* process and host CPU (per ``cpu.mode``), memory and filesystem metrics (psutil), read
  at collection time.

Model and cache activity is recorded through `Telemetry.models` (`ModelTelemetry`,
`bind(model, version)`) and `Telemetry.cache` (`CacheTelemetry`, `bind(model)`). A
measurement costs a deque append on the request path. Export follows the standard
``OTEL_*`` variables (endpoint, protocol ``http/protobuf`` or ``grpc``, headers,
temporality preference, default histogram aggregation, service name, resource
attributes, sampler, ``OTEL_METRIC_EXPORT_INTERVAL``); the default export interval is
5 s. Tests inject ``metric_readers=[InMemoryMetricReader()]`` and
``span_processors=[...]``; injected readers (and ``views=``) get the histograms through
the SDK's own aggregation. No global provider is set. `uninstrument_app(app)` undoes
everything, `shutdown()` flushes every instrumentation at exit. Each process (each
uvicorn/gunicorn worker) is its own ``service.instance.id``. See docs/instrumentation.md.
"""

from mlpulse_instrumentation._cache import BoundCache, CacheTelemetry
from mlpulse_instrumentation._model import BoundFeatures, BoundModel, ModelTelemetry
from mlpulse_instrumentation._setup import (
    Telemetry,
    build_resource,
    get_telemetry,
    instrument_app,
    shutdown,
    uninstrument_app,
)

__all__ = [
    "BoundCache",
    "BoundFeatures",
    "BoundModel",
    "CacheTelemetry",
    "ModelTelemetry",
    "Telemetry",
    "build_resource",
    "get_telemetry",
    "instrument_app",
    "shutdown",
    "uninstrument_app",
]
