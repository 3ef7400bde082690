"""Bad input gets the right status, stores nothing, and /health keeps answering."""

from __future__ import annotations

import gzip
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

from backend_testing import Backend, metric_request, post_otlp
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from mlpulse.backend.ingest.decompress import BodyTooLargeError, Inflater


def _valid() -> bytes:
    req = metric_request(
        "ml.model.predictions",
        points=[
            {
                "value": 5,
                "time_s": time.time(),
                "start_s": time.time() - 5,
                "attributes": {"a": "b"},
            }
        ],
    )
    return bytes(req.SerializeToString())


def _nothing_stored(backend: Backend) -> None:
    store = backend.app.state.store
    assert store.metrics() == []
    assert store.last_ingest() is None
    health = backend.client.get("/health")
    assert health.status_code == 200
    assert health.json()["storage"]["reachable"] is True


def _status_message(resp: Any) -> str:
    status = status_pb2.Status()
    status.ParseFromString(resp.content)
    return str(status.message)


def test_garbage_bytes_get_400_with_rpc_status(backend: Backend) -> None:
    resp = post_otlp(backend, b"\xff" * 64)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/x-protobuf"
    assert "cannot decode" in _status_message(resp)
    _nothing_stored(backend)


def test_truncated_protobuf_gets_400(backend: Backend) -> None:
    body = _valid()
    resp = post_otlp(backend, body[: len(body) // 2])
    assert resp.status_code == 400
    _nothing_stored(backend)


def test_garbage_json_gets_400_json_status(backend: Backend) -> None:
    for body in (b"{not json", b"[1, 2]", b'{"resourceMetrics": 7}', b"[" * 100_000):
        resp = post_otlp(backend, body, "application/json")
        assert resp.status_code == 400, body[:20]
        assert resp.headers["content-type"] == "application/json"
        assert "message" in resp.json()
    _nothing_stored(backend)


def test_json_with_bad_trace_id_gets_400(backend: Backend) -> None:
    body = (
        b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":'
        b'[{"asDouble":1,"timeUnixNano":"1","exemplars":[{"traceId":"zz","asDouble":1}]}]}}]}]}]}'
    )
    resp = post_otlp(backend, body, "application/json")
    assert resp.status_code == 400
    _nothing_stored(backend)


def test_corrupt_gzip_gets_400(backend: Backend) -> None:
    packed = bytearray(gzip.compress(_valid()))
    packed[len(packed) // 2] ^= 0xFF
    packed[len(packed) // 2 + 1] ^= 0xFF
    assert post_otlp(backend, bytes(packed), encoding="gzip").status_code == 400
    truncated = gzip.compress(_valid())[:-6]
    assert post_otlp(backend, truncated, encoding="gzip").status_code == 400
    assert post_otlp(backend, b"not gzip at all", encoding="gzip").status_code == 400
    _nothing_stored(backend)


def _gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros (1024 members of 1 MiB)."""
    member = gzip.compress(bytes(1 << 20), 9)
    return member * 1024


def test_gzip_bomb_gets_413_without_inflating(backend: Backend) -> None:
    bomb = _gzip_bomb()
    assert len(bomb) < 1_200_000
    started = time.perf_counter()
    resp = post_otlp(backend, bomb, encoding="gzip")
    assert resp.status_code == 413
    assert "after decompression" in _status_message(resp)
    # Inflating 1 GiB would take seconds; stopping at the 8 MiB cap takes milliseconds.
    assert time.perf_counter() - started < 5
    _nothing_stored(backend)


def test_inflater_stops_at_the_cap_on_a_single_stream_bomb() -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(c.compress(bytes(1 << 20)) for _ in range(64)) + c.flush()
    inflater = Inflater("gzip", cap=1 << 20)
    fed = 0
    try:
        for i in range(0, len(bomb), 4096):
            inflater.feed(bomb[i : i + 4096])
            fed += 4096
        raise AssertionError("no 413")
    except BodyTooLargeError:
        pass
    assert inflater._size <= (1 << 20) + 1  # never held more than the cap
    assert fed < len(bomb)  # stopped early, before reading the whole body


def test_uncompressed_body_over_cap_gets_413(backend_factory: Any) -> None:
    backend = backend_factory(max_body_bytes=1000)
    assert post_otlp(backend, b"\x00" * 2000).status_code == 413
    _nothing_stored(backend)


def test_wrong_content_type_and_encoding_get_415(backend: Backend) -> None:
    assert post_otlp(backend, _valid(), "text/plain").status_code == 415
    assert post_otlp(backend, _valid(), "application/xml").status_code == 415
    assert backend.client.post("/v1/metrics", content=_valid()).status_code == 415
    assert post_otlp(backend, _valid(), encoding="br").status_code == 415
    _nothing_stored(backend)


def _partial(resp: Any) -> ExportMetricsServiceResponse:
    assert resp.status_code == 200
    out = ExportMetricsServiceResponse()
    out.ParseFromString(resp.content)
    return out


def test_oversized_attributes_are_refused_through_partial_success(backend: Backend) -> None:
    points = [
        {"value": 1, "time_s": time.time(), "attributes": {"big": "x" * 5000}},
        {"value": 1, "time_s": time.time(), "attributes": {"k" * 500: "v"}},
        {"value": 1, "time_s": time.time(), "attributes": {f"a{i}": i for i in range(100)}},
    ]
    req = metric_request("ml.model.predictions", points=points)
    out = _partial(post_otlp(backend, req.SerializeToString()))
    assert out.partial_success.rejected_data_points == 3
    assert "max 1024" in out.partial_success.error_message
    assert "max 128" in out.partial_success.error_message
    assert "max 32" in out.partial_success.error_message
    _nothing_stored(backend)


def test_oversized_resource_attribute_refuses_all_its_points(backend: Backend) -> None:
    req = metric_request(
        "ml.model.predictions",
        service="s" * 5000,
        points=[{"value": 1, "time_s": time.time()}, {"value": 2, "time_s": time.time() + 1}],
    )
    out = _partial(post_otlp(backend, req.SerializeToString()))
    assert out.partial_success.rejected_data_points == 2
    _nothing_stored(backend)


def test_good_points_stored_when_others_refused(backend: Backend) -> None:
    req = metric_request(
        "ml.model.predictions",
        points=[
            {"value": 7, "time_s": time.time(), "attributes": {"ml.model.name": "result"}},
            {"value": 1, "time_s": time.time(), "attributes": {"ml.model.name": "r" * 2000}},
        ],
    )
    out = _partial(post_otlp(backend, req.SerializeToString()))
    assert out.partial_success.rejected_data_points == 1
    snap = backend.get("/metrics/current", window="1m")
    assert snap["model_metrics"]["result"]["predictions_count"] == 7
    assert list(snap["model_metrics"]) == ["result"]


def test_series_limit_refuses_new_series_only(backend_factory: Any) -> None:
    backend = backend_factory(max_series=3)
    points = [
        {"value": 1, "time_s": time.time(), "attributes": {"ml.model.name": f"m{i}"}}
        for i in range(5)
    ]
    req = metric_request("ml.model.predictions", points=points)
    out = _partial(post_otlp(backend, req.SerializeToString()))
    assert out.partial_success.rejected_data_points == 2
    assert "series limit" in out.partial_success.error_message
    # Known series keep being accepted.
    again = metric_request(
        "ml.model.predictions",
        points=[{"value": 1, "time_s": time.time() + 1, "attributes": {"ml.model.name": "m0"}}],
    )
    assert (
        _partial(post_otlp(backend, again.SerializeToString())).partial_success.rejected_data_points
        == 0
    )
    total = backend.get("/metrics/history", metric="prediction_count", group_by="", step="1h")
    assert sum(v for _, v in total["series"][0]["points"] if v) == 4


def test_storage_busy_gets_503_with_retry_after(backend_factory: Any) -> None:
    # The head takes exports while the database is locked, up to the checkpoint backlog;
    # then ingest refuses with a retryable 503 instead of growing memory without bound.
    backend = backend_factory(
        sqlite_busy_timeout_ms=100, checkpoint_interval_s=0.2, checkpoint_backlog_s=1.0
    )
    blocker = sqlite3.connect(backend.settings.database_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock, as another writer would
    accepted = 0
    try:
        assert post_otlp(backend, _valid()).status_code == 200  # the head has room
        accepted += 1
        deadline = time.monotonic() + 10
        while True:
            resp = post_otlp(backend, _valid())
            if resp.status_code != 200:
                break
            accepted += 1
            assert time.monotonic() < deadline, "ingest never pushed back"
            time.sleep(0.1)
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert backend.client.get("/health").status_code == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    deadline = time.monotonic() + 10
    while post_otlp(backend, _valid()).status_code != 200:
        assert time.monotonic() < deadline, "ingest did not recover"
        time.sleep(0.1)
    accepted += 1
    total = backend.get("/metrics/history", metric="prediction_count", group_by="", step="1h")
    assert sum(v for _, v in total["series"][0]["points"] if v) == 5 * accepted


def test_too_many_exports_in_flight_get_429(backend_factory: Any) -> None:
    backend = backend_factory(max_inflight_exports=1)
    release = threading.Event()
    first: dict[str, int] = {}

    def slow_body() -> Iterator[bytes]:
        body = _valid()
        yield body[:10]
        release.wait(10)
        yield body[10:]

    def send_slow() -> None:
        import httpx

        with httpx.Client(base_url=backend.url) as c:
            r = c.post(
                "/v1/metrics",
                content=slow_body(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            first["status"] = r.status_code

    t = threading.Thread(target=send_slow)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while not backend.app.state.ingest_slots.locked():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        resp = post_otlp(backend, _valid())
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "1"
    finally:
        release.set()
        t.join(10)
    assert first["status"] == 200


def test_ingest_token_when_required(backend_factory: Any) -> None:
    backend = backend_factory(ingest_require_token=True)
    assert post_otlp(backend, _valid()).status_code == 401
    bad = backend.client.post(
        "/v1/metrics",
        content=_valid(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"},
    )
    assert bad.status_code == 401
    _nothing_stored(backend)
    ok = backend.client.post(
        "/v1/metrics",
        content=_valid(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer test-token"},
    )
    assert ok.status_code == 200


def test_hostile_numbers_never_break_the_query_api(backend: Backend) -> None:
    """Far-apart exponential ranges, out-of-range buckets and overflowing sums."""
    now = time.time()

    def exp(scale: int, count: int, total: float, side: str, offset: int) -> dict[str, Any]:
        buckets = {"offset": offset, "bucket_counts": [1] * count}
        return {"scale": scale, "count": count, "sum": total, side: buckets}

    hists = [
        exp(20, 1, 1.0, "positive", -1_000_000_000),
        exp(0, 1, 1.0, "positive", 2_000_000_000),  # 2**2e9: not a double
        exp(0, 2, 1e308, "positive", 1000),
        exp(20, 2, 1e308, "positive", 1_000_000_000),
        exp(-10, 1, 1.0, "negative", 0),  # (1, 2**1024]: not a double
    ]
    refused = []
    for i, hist in enumerate(hists):
        req = metric_request(
            "http.server.request.duration",
            kind="exp",
            unit="s",
            points=[{"hist": hist, "time_s": now - 20 + i, "attributes": {"n": i}}],
        )
        refused.append(_partial(post_otlp(backend, req.SerializeToString())).partial_success)
    assert [r.rejected_data_points for r in refused] == [0, 1, 0, 0, 1]
    assert "outside the range of a double" in refused[1].error_message
    for value in (1e308, 1e308, -1e308):
        req = metric_request("ml.model.predictions", points=[{"value": value, "time_s": now}])
        post_otlp(backend, req.SerializeToString())
        now += 0.001
    for path in ("/metrics/current", "/metrics/distribution", "/metrics/summary"):
        assert backend.client.get(path, params={"from": "now-1m"}).status_code == 200, path
    for metric in ("p99_latency_ms", "prediction_count", "http.server.request.duration"):
        resp = backend.client.get("/metrics/history", params={"metric": metric, "from": "now-5m"})
        assert resp.status_code == 200, metric
    dist = backend.get("/metrics/distribution", **{"from": "now-1m"})
    # The accepted points merged at a scale coarse enough to hold their far-apart ranges
    # in a bounded number of buckets.
    assert dist["count"] == 5
    assert len(dist["buckets"]) <= 2048
