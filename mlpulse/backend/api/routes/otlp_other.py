"""`POST /v1/traces` and `POST /v1/logs`: the OTLP/HTTP signals this backend does not take.

The backend stores metrics only. An SDK pointed straight at it (``OTEL_EXPORTER_OTLP_ENDPOINT
=http://backend:8003``) also sends its traces and logs here; rather than FastAPI's JSON 404,
which a protobuf client cannot decode, each gets what the OTLP/HTTP specification asks of
a failed export: a ``google.rpc.Status`` body in the request's own encoding (protobuf or
JSON; JSON when the Content-Type is neither) that says this endpoint takes metrics and
where traces and logs go.

Why HTTP 404 with ``google.rpc.Code`` UNIMPLEMENTED (12):

- The specification makes 429, 502, 503 and 504 retryable and every other 4xx/5xx
  permanent. A signal this server will never accept must be permanent, or the exporter
  would retry and queue it forever; so none of those four.
- 400 would say the data is malformed, 413 that it is too large, 415 that the encoding is
  wrong: each false and misleading. 405 would claim the resource exists with other methods.
- 404 says what is true: there is no trace (or log) receiver at this URL. It is also
  what an OpenTelemetry Collector answers for a signal it has no pipeline for, so SDKs and
  collectors already report it as "not found" and drop the batch with the message below.
- 501 Not Implemented is permanent too, but it means the server does not support the
  request *method* at all; the body's UNIMPLEMENTED code carries that nuance instead.

The body is not read: the answer does not depend on it, and nothing is decompressed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mlpulse.backend.ingest.otlp import encode_status, encoding_of, media_type

router = APIRouter(tags=["ingest"])

_UNIMPLEMENTED = 12  # google.rpc.Code
_HTTP_NOT_FOUND = 404

TRACES_MESSAGE = (
    "this mlpulse backend takes OTLP metrics only (POST /v1/metrics); send traces to a "
    "trace backend: an OpenTelemetry Collector (OTLP :4318, which forwards them to Jaeger) "
    "or Jaeger's own OTLP receiver, e.g. OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="
    "http://127.0.0.1:4318/v1/traces; `mlpulse demo --with-collector` runs both"
)
LOGS_MESSAGE = (
    "this mlpulse backend takes OTLP metrics only (POST /v1/metrics); send logs to an "
    "OpenTelemetry Collector or a log vendor (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT), and traces "
    "to a trace backend such as Jaeger"
)


def _not_here(request: Request, message: str) -> Response:
    encoding = encoding_of(request.headers.get("content-type")) or "json"
    return Response(
        encode_status(_UNIMPLEMENTED, message, encoding),
        status_code=_HTTP_NOT_FOUND,
        media_type=media_type(encoding),
    )


@router.post("/v1/traces")
async def export_traces(request: Request) -> Response:
    """Refuse a trace export (permanently), saying where traces go."""
    return _not_here(request, TRACES_MESSAGE)


@router.post("/v1/logs")
async def export_logs(request: Request) -> Response:
    """Refuse a log export (permanently), saying where logs go."""
    return _not_here(request, LOGS_MESSAGE)
