"""OTLP/HTTP metrics encoding: decode export requests, encode responses and errors.

Protobuf bodies parse with opentelemetry-proto. JSON bodies follow the OTLP/JSON mapping,
which differs from protobuf's canonical JSON in one way that matters here: trace and span
ids are hex strings, not base64; they are converted before `json_format.ParseDict`. Field
names may be lowerCamelCase or the original snake_case, enums names or integers, 64-bit
integers numbers or strings; unknown fields are ignored, as the OTLP spec requires.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

Encoding = Literal["protobuf", "json"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})


class OTLPDecodeError(Exception):
    """The body is not a valid ExportMetricsServiceRequest (HTTP 400)."""


def encoding_of(content_type: str | None) -> Encoding | None:
    """Map a Content-Type header to an encoding, or None when unsupported."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return "protobuf"
    if media == JSON:
        return "json"
    return None


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise OTLPDecodeError(f"{key} is not hex: {value[:40]!r}") from exc
            else:
                value = _hex_ids_to_base64(value)
            out[key] = value
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode_request(body: bytes, encoding: Encoding) -> ExportMetricsServiceRequest:
    """Parse an export request; raise OTLPDecodeError when the body is not one."""
    msg = ExportMetricsServiceRequest()
    try:
        if encoding == "protobuf":
            msg.ParseFromString(body)
        else:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise OTLPDecodeError("the JSON body must be an object")
            json_format.ParseDict(_hex_ids_to_base64(doc), msg, ignore_unknown_fields=True)
    except OTLPDecodeError:
        raise
    except (
        ProtobufDecodeError,
        json_format.ParseError,
        ValueError,  # JSON syntax, UnicodeDecodeError
        TypeError,
        RecursionError,  # absurdly nested JSON
        binascii.Error,
    ) as exc:
        raise OTLPDecodeError(f"cannot decode {encoding} ExportMetricsServiceRequest") from exc
    return msg


def encode_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """Encode an ExportMetricsServiceResponse, with partial_success when points were refused."""
    resp = ExportMetricsServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_data_points = rejected
        resp.partial_success.error_message = message
    if encoding == "protobuf":
        return bytes(resp.SerializeToString())
    return str(json_format.MessageToJson(resp, indent=None)).encode()


def encode_status(code: int, message: str, encoding: Encoding) -> bytes:
    """Encode a google.rpc.Status (the body of OTLP/HTTP error responses)."""
    status = status_pb2.Status(code=code, message=message)
    if encoding == "protobuf":
        return bytes(status.SerializeToString())
    return str(json_format.MessageToJson(status, indent=None)).encode()


def media_type(encoding: Encoding) -> str:
    """Return the Content-Type for an encoding."""
    return PROTOBUF if encoding == "protobuf" else JSON
