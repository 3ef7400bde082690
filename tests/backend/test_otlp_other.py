"""The OTLP/HTTP signals the backend does not store, and zstd-compressed metrics.

- `/v1/traces` and `/v1/logs` answer a permanent error (404) whose body is a
  google.rpc.Status in the request's own encoding, saying where traces and logs go;
- `Content-Encoding: zstd` on `/v1/metrics` is inflated like gzip: a real SDK export is
  stored exactly as the same export uncompressed, and a zstd bomb gets 413 at the cap.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
import zstandard
from backend_testing import Backend, post_otlp
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from mlpulse.backend.ingest.decompress import BadEncodingError, BodyTooLargeError, Inflater

# google.rpc.Code UNIMPLEMENTED: the server does not do this (see otlp_other.py's docstring).
UNIMPLEMENTED = 12
# What the specification lets a client retry; a signal that is never accepted must not be.
RETRYABLE = {429, 502, 503, 504}


def _post(backend: Backend, path: str, body: bytes, content_type: str) -> Any:
    return backend.client.post(path, content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_traces_and_logs_get_a_protobuf_status_to_protobuf_clients(
    backend: Backend, path: str
) -> None:
    resp = _post(backend, path, b"\x0a\x00", "application/x-protobuf")
    assert resp.status_code == 404
    assert resp.status_code not in RETRYABLE
    assert resp.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status()
    status.ParseFromString(resp.content)  # decodable, as the OTLP/HTTP spec asks
    assert status.code == UNIMPLEMENTED
    assert "takes OTLP metrics only (POST /v1/metrics)" in status.message
    if path == "/v1/traces":
        assert "send traces to a trace backend" in status.message
        assert "Jaeger" in status.message and "mlpulse demo --with-collector" in status.message
    else:
        assert "send logs to an OpenTelemetry Collector" in status.message


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_traces_and_logs_get_a_json_status_to_json_clients(backend: Backend, path: str) -> None:
    resp = _post(backend, path, b'{"resourceSpans":[]}', "application/json; charset=utf-8")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    status = json_format.Parse(resp.text, status_pb2.Status())  # a Status, not FastAPI's 404
    assert status.code == UNIMPLEMENTED
    assert "POST /v1/metrics" in status.message
    assert "detail" not in json.loads(resp.text)


def test_traces_with_an_unknown_content_type_get_a_json_status(backend: Backend) -> None:
    resp = _post(backend, "/v1/traces", b"x", "text/plain")
    assert resp.status_code == 404
    assert json.loads(resp.text)["code"] == UNIMPLEMENTED


def _sdk_export() -> tuple[bytes, dict[str, Any]]:
    """A real SDK export (exponential latency histogram, counters), and what it holds."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "z"}),
    )
    meter = provider.get_meter("mlapi")
    dur = meter.create_histogram("http.server.request.duration", unit="s")
    rng = np.random.default_rng(18)
    latencies = rng.lognormal(np.log(0.05), 0.6, 997)
    for i, v in enumerate(latencies):
        code = 500 if i % 50 == 0 else 200
        attrs: dict[str, Any] = {
            "http.route": "/predict/duration",
            "http.request.method": "POST",
            "http.response.status_code": code,
        }
        if code == 500:
            attrs["error.type"] = "500"
        dur.record(float(v), attrs)
    preds = meter.create_counter("ml.model.predictions")
    preds.add(613, {"ml.model.name": "duration", "ml.model.version": "1"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    body = bytes(encode_metrics(data).SerializeToString())
    errors = sum(1 for i in range(len(latencies)) if i % 50 == 0)
    return body, {"requests": len(latencies), "errors": errors, "mean_s": latencies.mean()}


def test_a_zstd_export_is_stored_exactly(backend_factory: Any) -> None:
    body, truth = _sdk_export()
    # Two frames, as a streaming encoder may write them (RFC 8878 allows several).
    half = len(body) // 2
    cctx = zstandard.ZstdCompressor(level=3)
    packed = cctx.compress(body[:half]) + cctx.compress(body[half:])
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed) == body[:half]

    zstd_backend = backend_factory()
    plain_backend = backend_factory()
    resp = post_otlp(zstd_backend, packed, encoding="zstd")
    assert resp.status_code == 200, resp.content
    assert post_otlp(plain_backend, body).status_code == 200

    snap = zstd_backend.get("/metrics/current", window="1m")
    api = snap["api_metrics"]
    assert api["total_requests"] == truth["requests"]
    assert api["error_rate_percent"] == pytest.approx(
        truth["errors"] / truth["requests"] * 100, rel=1e-12
    )
    assert api["avg_response_time_ms"] == pytest.approx(truth["mean_s"] * 1000, rel=1e-9)
    assert snap["model_metrics"]["duration"]["predictions_count"] == 613
    # Exactly what the uncompressed export stores: every number of the snapshot.
    plain = plain_backend.get("/metrics/current", window="1m")
    for part in ("api_metrics", "model_metrics", "cache_metrics"):
        assert _without_times(snap[part]) == _without_times(plain[part]), part


def _without_times(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_times(v) for k, v in node.items() if "time" not in k and k != "at"}
    if isinstance(node, list):
        return [_without_times(v) for v in node]
    return node


def test_a_zstd_bomb_gets_413_without_inflating(backend: Backend) -> None:
    # 1 GiB of zeros in ~32 KiB of zstd: RLE blocks, ~32 KiB out per byte in.
    cctx = zstandard.ZstdCompressor(level=19)
    chunk = bytes(64 << 20)
    writer = cctx.compressobj()
    bomb = b"".join(writer.compress(chunk) for _ in range(16)) + writer.flush()
    assert len(bomb) < 200_000
    started = time.perf_counter()
    resp = post_otlp(backend, bomb, encoding="zstd")
    assert resp.status_code == 413
    status = status_pb2.Status()
    status.ParseFromString(resp.content)
    assert "after decompression" in status.message
    assert time.perf_counter() - started < 5  # stopped at the 8 MiB cap, not at 1 GiB
    assert backend.app.state.store.metrics() == []


def test_the_zstd_inflater_never_holds_more_than_the_cap() -> None:
    cap = 1 << 20
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    inflater = Inflater("zstd", cap=cap)
    with pytest.raises(BodyTooLargeError):
        inflater.feed(bomb)  # in one piece: the inflater slices it itself
    # Held: never more than the cap. Inflated by the last call: at most its 16-byte slice's
    # worth (32 KiB a byte) plus one 128 KiB block finished by it, not the 256 MiB.
    assert sum(len(part) for part in inflater._out) <= cap
    assert inflater._size <= cap + 16 * (32 << 10) + (128 << 10)


def test_corrupt_and_truncated_zstd_get_bad_encoding() -> None:
    good = zstandard.ZstdCompressor().compress(b"x" * 10_000)
    inflater = Inflater("zstd", cap=1 << 20)
    inflater.feed(good[:-4])
    with pytest.raises(BadEncodingError, match="truncated"):
        inflater.finish()
    with pytest.raises(BadEncodingError, match="corrupt zstd"):
        Inflater("zstd", cap=1 << 20).feed(b"not zstd at all")
    whole = Inflater("ZSTD", cap=1 << 20)
    for i in range(0, len(good), 7):  # byte-sized pieces, as a slow client sends them
        whole.feed(good[i : i + 7])
    assert whole.finish() == b"x" * 10_000


def test_corrupt_zstd_gets_400(backend: Backend) -> None:
    resp = post_otlp(backend, b"\x28\xb5\x2f\xfd" + b"\xff" * 40, encoding="zstd")
    assert resp.status_code == 400
    assert backend.app.state.store.metrics() == []
