"""`POST /v1/metrics`: OTLP/HTTP metrics ingest, status codes per the OTLP specification.

- 200 + ExportMetricsServiceResponse (same encoding as the request), with
  `partial_success` when some points were refused;
- 400 + google.rpc.Status: undecodable body (bad protobuf/JSON, corrupt gzip);
- 413: body over `MLPULSE_MAX_BODY_BYTES` after decompression (inflated incrementally);
- 401: no valid bearer token, when `MLPULSE_INGEST_REQUIRE_TOKEN` is set;
- 415: unsupported Content-Type or Content-Encoding;
- 429 (too many exports in flight) or 503 (storage busy), both with `Retry-After`:
  retryable, so a collector keeps the data and tries again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from mlpulse.backend.api.deps import EngineDep, SettingsDep, token_ok
from mlpulse.backend.ingest.decompress import (
    BadEncodingError,
    BodyTooLargeError,
    Inflater,
    UnsupportedEncodingError,
)
from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.otlp import (
    Encoding,
    OTLPDecodeError,
    decode_request,
    encode_response,
    encode_status,
    encoding_of,
    media_type,
)
from mlpulse.backend.ingest.pipeline import JSON, PROTOBUF, IngestResult, ingest
from mlpulse.backend.ingest.rejections import rejections_of
from mlpulse.backend.storage.base import StorageBusyError
from mlpulse.backend.storage.engine import Engine

if TYPE_CHECKING:
    from mlpulse.backend.storage.postgres import PostgresEngine

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])

# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE, _UNAUTHENTICATED = 3, 8, 14, 16
RETRY_AFTER_S = "1"


def _status(http: int, code: int, message: str, encoding: Encoding, **headers: str) -> Response:
    return Response(
        encode_status(code, message, encoding),
        status_code=http,
        media_type=media_type(encoding),
        headers=headers or None,
    )


def _decode_and_ingest(
    store: Engine | PostgresEngine, body: bytes, encoding: Encoding, limits: Limits
) -> IngestResult:
    message = decode_request(body, encoding)
    raw = (body, PROTOBUF if encoding == "protobuf" else JSON)
    return ingest(store, message, limits, raw)


@router.post("/v1/metrics")
async def export_metrics(request: Request, settings: SettingsDep, store: EngineDep) -> Response:
    """Accept an OTLP metrics export (protobuf or JSON, optionally gzip)."""
    encoding = encoding_of(request.headers.get("content-type"))
    if encoding is None:
        return _status(
            415,
            _INVALID_ARGUMENT,
            "Content-Type must be application/x-protobuf or application/json",
            "json",
        )
    if settings.ingest_require_token and not token_ok(
        request, request.headers.get("authorization")
    ):
        return _status(
            401, _UNAUTHENTICATED, "missing or invalid bearer token", encoding,
            **{"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    try:
        inflater = Inflater(request.headers.get("content-encoding"), settings.max_body_bytes)
    except UnsupportedEncodingError as exc:
        return _status(415, _INVALID_ARGUMENT, str(exc), encoding)
    declared = request.headers.get("content-length", "")
    if (
        declared.isdigit()
        and request.headers.get("content-encoding") is None
        and int(declared) > settings.max_body_bytes
    ):
        return _status(413, _RESOURCE_EXHAUSTED, "body too large", encoding)

    slots: asyncio.Semaphore = request.app.state.ingest_slots
    if slots.locked():
        return _status(
            429, _RESOURCE_EXHAUSTED, "too many exports in flight", encoding,
            **{"Retry-After": RETRY_AFTER_S},
        )  # fmt: skip
    async with slots:
        try:
            async for chunk in request.stream():
                inflater.feed(chunk)
            body = inflater.finish()
        except BodyTooLargeError as exc:
            return _status(413, _RESOURCE_EXHAUSTED, str(exc), encoding)
        except BadEncodingError as exc:
            return _status(400, _INVALID_ARGUMENT, str(exc), encoding)
        tally = rejections_of(request.app).tally()  # refused points by reason
        limits = Limits.from_settings(settings, tally)
        try:
            # Decode and ingest in one worker-thread hop: a hop costs more than a small
            # export's points.
            result = await run_in_threadpool(_decode_and_ingest, store, body, encoding, limits)
        except OTLPDecodeError as exc:
            return _status(400, _INVALID_ARGUMENT, str(exc), encoding)
        except StorageBusyError as exc:
            log.warning("ingest refused, storage busy: %s", exc)
            return _status(
                503, _UNAVAILABLE, "storage busy, retry later", encoding,
                **{"Retry-After": RETRY_AFTER_S},
            )  # fmt: skip
    rejections_of(request.app).settle(tally, result.rejected)
    # The `ingest` event follows from the pusher's thread, with the newest data computed
    # once per burst of commits (mlpulse/backend/live_push.py): this never waits for it.
    request.app.state.pusher.committed(result)
    if result.rejected:
        log.info("export: %d point(s) refused: %s", result.rejected, result.message)
    return Response(
        encode_response(result.rejected, result.message, encoding),
        status_code=200,
        media_type=media_type(encoding),
    )
