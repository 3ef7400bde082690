"""Fuzzing `POST /v1/metrics` (issue 16): mutated OTLP exports never break the backend.

Hypothesis mutates valid exports — protobuf and JSON, plain and gzip — at three levels:
fields of the decoded message (times at 0 and beyond 2**63, extreme counts, NaN, scales,
offsets, bucket counts), leaves of the JSON document (huge or negative integers, wrong
types, nesting), and raw bytes (flips, cuts, splices). Every answer must be one of the
OTLP/HTTP statuses the backend documents (200, 400, 413, 415, 429, 503), within a
timeout; afterwards a good export is still stored and counted exactly, and `/health` is
green.

The run is bounded by time: `MLPULSE_FUZZ_SECONDS` (default 60). A long run, recording
the status counts in a file:

    MLPULSE_FUZZ_SECONDS=600 MLPULSE_FUZZ_REPORT=/tmp/fuzz.json \\
        .venv/bin/pytest tests/backend/test_fuzz_ingest.py -q
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import time
from collections import Counter
from typing import Any

import pytest
from backend_testing import Backend, metric_request, post_otlp
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

ALLOWED = {200, 400, 413, 415, 429, 503}
BUDGET_S = float(os.environ.get("MLPULSE_FUZZ_SECONDS", "60"))
REPORT = os.environ.get("MLPULSE_FUZZ_REPORT")

INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 10**30]
FLOATS = [0.0, -0.0, 1e308, -1e308, 5e-324, float("nan"), float("inf"), float("-inf")]
JSON_LEAVES: list[Any] = [
    *[i for i in INTS if -(2**63) <= i < 2**64], "18446744073709551616", "-9223372036854775809",
    "NaN", "Infinity", "-Infinity", 1e308, "", "x" * 300, None, [], {}, True, "\x00",
    [[[[[]]]]], {"a": {"b": {"c": 1}}},
]  # fmt: skip


def _seeds() -> list[ExportMetricsServiceRequest]:
    """Valid exports of every point type, as an SDK would send them now."""
    now = time.time()
    attrs = {"ml.model.name": "fuzz", "http.route": "/predict/{model}"}
    hist = {"scale": 3, "count": 6, "sum": 1.5, "zero_count": 1, "min": 0.0, "max": 0.9,
            "positive": {"offset": -20, "bucket_counts": [1, 2, 0, 2]}}  # fmt: skip
    out = [
        metric_request("ml.model.predictions", points=[
            {"value": 3, "time_s": now, "start_s": now - 5, "attributes": attrs}]),
        metric_request("ml.model.predictions", temporality=2, points=[
            {"value": 40, "time_s": now, "start_s": now - 60, "attributes": attrs}]),
        metric_request("process.cpu.utilization", kind="gauge", points=[
            {"value": 0.4, "time_s": now, "attributes": attrs}]),
        metric_request("http.server.request.duration", kind="exp", unit="s", points=[
            {"hist": hist, "time_s": now, "start_s": now - 5, "attributes": attrs}]),
    ]  # fmt: skip
    explicit = metric_request("ml.model.confidence", points=[])
    m = explicit.resource_metrics[0].scope_metrics[0].metrics[0]
    m.histogram.aggregation_temporality = 1
    p = m.histogram.data_points.add(time_unix_nano=int(now * 1e9), count=3, sum=1.2)
    p.start_time_unix_nano = int((now - 5) * 1e9)
    p.explicit_bounds.extend([0.25, 0.5, 0.75])
    p.bucket_counts.extend([0, 1, 1, 1])
    ex = p.exemplars.add(time_unix_nano=int(now * 1e9), as_double=0.6)
    ex.trace_id, ex.span_id = bytes(range(16)), bytes(range(8))
    out.append(explicit)
    both = ExportMetricsServiceRequest()
    for seed in out:
        both.resource_metrics.extend(seed.resource_metrics)
    out.append(both)
    return out


SEEDS = _seeds()


def _points(req: ExportMetricsServiceRequest) -> list[Any]:
    found = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                data = m.WhichOneof("data")
                if data:
                    found.extend(getattr(m, data).data_points)
    return found


def _mutate_fields(req: ExportMetricsServiceRequest, data: st.DataObject) -> None:
    """Set fields of a few data points to extreme values."""
    points = _points(req)
    for _ in range(data.draw(st.integers(0, 6))):
        if not points:
            return
        p = data.draw(st.sampled_from(points))
        name = data.draw(st.sampled_from(
            ["time_unix_nano", "start_time_unix_nano", "count", "as_int", "as_double", "sum",
             "scale", "zero_count", "zero_threshold", "flags", "offset", "bucket", "bound",
             "min", "max", "exemplar", "attributes"]))  # fmt: skip
        fields = {f.name for f in p.DESCRIPTOR.fields}
        integer = data.draw(st.sampled_from(INTS))
        number = data.draw(st.sampled_from(FLOATS))
        try:
            if name in ("time_unix_nano", "start_time_unix_nano", "count", "zero_count"):
                if name in fields:
                    setattr(p, name, integer % 2**64)
            elif name in ("as_int",) and "as_int" in fields:
                p.as_int = max(-(2**63), min(integer, 2**63 - 1))
            elif name in ("as_double", "sum", "zero_threshold", "min", "max") and name in fields:
                setattr(p, name, number)
            elif name == "scale" and "scale" in fields:
                p.scale = max(-(2**31), min(integer, 2**31 - 1))
            elif name == "flags":
                p.flags = integer % 2**32
            elif name == "offset" and "positive" in fields:
                p.positive.offset = max(-(2**31), min(integer, 2**31 - 1))
            elif name == "bucket" and "bucket_counts" in fields:
                p.bucket_counts.append(integer % 2**64)
            elif name == "bucket" and "positive" in fields:
                p.positive.bucket_counts.append(integer % 2**64)
            elif name == "bound" and "explicit_bounds" in fields:
                p.explicit_bounds.append(number)
            elif name == "exemplar":
                e = p.exemplars.add(time_unix_nano=integer % 2**64, as_double=number)
                e.trace_id = data.draw(st.binary(max_size=20))
            elif name == "attributes":
                kv = p.attributes.add(key=data.draw(st.text(max_size=200)))
                kv.value.string_value = data.draw(st.text(max_size=2000))
        except (ValueError, TypeError):
            pass  # protobuf refuses the value itself: nothing to send


def _mutate_json(doc: Any, data: st.DataObject) -> Any:
    """Replace a few leaves (or subtrees) of the JSON document."""
    for _ in range(data.draw(st.integers(1, 4))):
        node, path = doc, []
        while isinstance(node, dict | list) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                            else list(range(len(node)))))  # fmt: skip
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        # A copy: later mutations must never change the shared pool (hypothesis replays).
        parent[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(JSON_LEAVES)))
    return doc


def _mutate_bytes(body: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["none", "none", "flip", "cut", "insert", "splice"]))
    if kind == "none" or not body:
        return body
    at = data.draw(st.integers(0, len(body) - 1))
    if kind == "flip":
        return body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    if kind == "cut":
        return body[:at]
    if kind == "insert":
        return body[:at] + data.draw(st.binary(min_size=1, max_size=64)) + body[at:]
    other = bytes(data.draw(st.sampled_from(SEEDS)).SerializeToString())
    return body[:at] + other[data.draw(st.integers(0, len(other) - 1)) :]


def _export(data: st.DataObject) -> tuple[bytes, str, str | None]:
    seed = ExportMetricsServiceRequest()
    seed.CopyFrom(data.draw(st.sampled_from(SEEDS)))
    _mutate_fields(seed, data)
    if data.draw(st.booleans()):
        content_type = "application/x-protobuf"
        body = bytes(seed.SerializeToString())
    else:
        content_type = "application/json"
        doc = json_format.MessageToDict(seed)
        body = json.dumps(_mutate_json(doc, data)).encode()
    body = _mutate_bytes(body, data)
    encoding = data.draw(st.sampled_from([None, None, None, None, "gzip", "gzip-bad", "br"]))
    if encoding == "gzip":
        body = gzip.compress(body, 1)
    elif encoding == "gzip-bad":
        body, encoding = body, "gzip"
    media = data.draw(st.sampled_from([content_type] * 5 + ["text/plain"]))
    return body, media, encoding


@pytest.mark.slow
@pytest.mark.timeout(int(BUDGET_S) + 240)  # the suite's 300 s would cut a long run short
def test_mutated_exports_get_only_documented_statuses(backend: Backend) -> None:
    statuses: Counter[int] = Counter()
    slowest = 0.0

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def one(data: st.DataObject) -> None:
        nonlocal slowest
        body, content_type, encoding = _export(data)
        started = time.monotonic()
        resp = post_otlp(backend, body, content_type, encoding)
        slowest = max(slowest, time.monotonic() - started)
        statuses[resp.status_code] += 1
        assert resp.status_code in ALLOWED, (resp.status_code, resp.text[:300])

    end = time.monotonic() + BUDGET_S
    rounds = 0
    while time.monotonic() < end:
        one()
        rounds += 1
    # Good data is still stored, exactly, and the backend is healthy.
    now = time.time()
    point = {
        "value": 7,
        "time_s": now,
        "start_s": now - 1,
        "attributes": {"ml.model.name": "after"},
    }
    good = metric_request("ml.model.predictions", points=[point])
    resp = post_otlp(backend, good.SerializeToString())
    assert resp.status_code == 200
    out = ExportMetricsServiceResponse()
    out.ParseFromString(resp.content)
    assert out.partial_success.rejected_data_points == 0
    snap = backend.get("/metrics/current", window="1m")
    assert snap["model_metrics"]["after"]["predictions_count"] == 7
    health = backend.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    summary = {
        "seconds": BUDGET_S,
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "slowest_request_s": round(slowest, 3),
        "rejections": backend.get("/ingest/rejections")["by_reason"],
    }
    print("fuzz:", json.dumps(summary))
    if REPORT:
        with open(REPORT, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    assert slowest < 10, "a request took too long (a hang?)"
    assert statuses[200] > 0 and statuses[400] > 0
