"""Issue 16, ingest classes 1-3: odd times, 64-bit overflow and impossible values.

Each test posts to a real backend (uvicorn on port 0) and checks what was stored and what
`partial_success` and `GET /ingest/rejections` say. On the old behaviour a point decades
ahead froze its series, a time >= 2**63 turned the whole export into a 500, and a negative
increase on a monotonic delta sum was stored as a decrease.
"""

from __future__ import annotations

import json
import time
from typing import Any

from backend_testing import Backend, metric_request, post_otlp
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.points import REASON_CODES, flatten

CUMULATIVE, DELTA = 2, 1
YEAR_S = 365 * 86400


def _partial(resp: Any) -> ExportMetricsServiceResponse:
    assert resp.status_code == 200, resp.text
    out = ExportMetricsServiceResponse()
    out.ParseFromString(resp.content)
    return out


def _predictions(backend: Backend, model: str = "result") -> float:
    snap = backend.get("/metrics/current", window="5m")
    return float(snap["model_metrics"].get(model, {}).get("predictions_count") or 0)


def _point(value: float, time_s: float, start_s: float = 0, model: str = "result") -> Any:
    return {"value": value, "time_s": time_s, "start_s": start_s,
            "attributes": {"ml.model.name": model}}  # fmt: skip


def _rejections(backend: Backend) -> dict[str, int]:
    by_reason: dict[str, int] = backend.get("/ingest/rejections")["by_reason"]
    return by_reason


def test_future_point_is_refused_and_the_next_real_point_counted(backend: Backend) -> None:
    now = time.time()
    start = now - 30
    future = metric_request(
        "ml.model.predictions",
        temporality=CUMULATIVE,
        points=[_point(1000, now + 30 * YEAR_S, start)],
    )
    out = _partial(post_otlp(backend, future.SerializeToString())).partial_success
    assert out.rejected_data_points == 1
    assert "ahead of the server clock" in out.error_message
    real = metric_request(
        "ml.model.predictions", temporality=CUMULATIVE, points=[_point(7, now, start)]
    )
    assert (
        _partial(post_otlp(backend, real.SerializeToString())).partial_success.rejected_data_points
        == 0
    )
    # The series started after the store: its first real point counts in full.
    assert _predictions(backend) == 7
    # A gauge dated ahead does not freeze the gauge either.
    for t, v in ((now + 30 * YEAR_S, 0.99), (now, 0.25)):
        req = metric_request("process.cpu.utilization", kind="gauge", points=[_point(v, t)])
        post_otlp(backend, req.SerializeToString())
    hist = backend.get("/metrics/history", metric="process.cpu.utilization", **{"from": "now-5m"})
    values = [v for s in hist["series"] for _, v in s["points"] if v is not None]
    assert values and max(values) == 0.25
    assert _rejections(backend)["time_in_future"] == 2


def test_a_point_within_the_future_grace_is_taken(backend: Backend) -> None:
    req = metric_request("ml.model.predictions", points=[_point(3, time.time() + 120)])
    assert (
        _partial(post_otlp(backend, req.SerializeToString())).partial_success.rejected_data_points
        == 0
    )


def test_future_grace_is_a_setting(backend_factory: Any) -> None:
    backend = backend_factory(ingest_future_grace="5s")
    req = metric_request("ml.model.predictions", points=[_point(3, time.time() + 120)])
    assert (
        _partial(post_otlp(backend, req.SerializeToString())).partial_success.rejected_data_points
        == 1
    )


def test_time_zero_and_older_than_retention_are_refused(backend: Backend) -> None:
    now = time.time()
    req = metric_request(
        "ml.model.predictions",
        points=[_point(5, 0), _point(6, now - 100 * 86400), _point(7, now)],
    )
    out = _partial(post_otlp(backend, req.SerializeToString())).partial_success
    assert out.rejected_data_points == 2
    assert "time_unix_nano is 0" in out.error_message
    assert "beyond retention" in out.error_message
    assert _predictions(backend) == 7
    history = backend.get("/metrics/history", metric="prediction_count", group_by="", step="1d",
                          **{"from": "now-120d"})  # fmt: skip
    assert sum(v for s in history["series"] for _, v in s["points"] if v) == 7
    counts = _rejections(backend)
    assert counts["time_missing"] == 1
    assert counts["time_too_old"] == 1


def test_a_time_beyond_int64_costs_only_its_own_point(backend: Backend) -> None:
    now = time.time()
    req = metric_request("ml.model.predictions", points=[_point(4, now), _point(5, now)])
    points = req.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    points[1].time_unix_nano = 2**63 + 5
    # And in other 64-bit fields: a start time beyond int64, an exemplar time beyond it.
    extra = metric_request("ml.model.predictions", points=[_point(6, now, model="m2"),
                                                           _point(1, now, model="m3")])  # fmt: skip
    xp = extra.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    xp[0].start_time_unix_nano = 2**64 - 1
    ex = xp[1].exemplars.add(time_unix_nano=2**64 - 1, as_double=1.0)
    ex.trace_id, ex.span_id = bytes(16), bytes(8)
    out = _partial(post_otlp(backend, req.SerializeToString())).partial_success
    assert out.rejected_data_points == 1
    out2 = _partial(post_otlp(backend, extra.SerializeToString())).partial_success
    assert out2.rejected_data_points == 1
    assert "start_time_unix_nano is after time_unix_nano" in out2.error_message
    assert _predictions(backend) == 4
    assert _predictions(backend, "m3") == 1  # stored, without its impossible exemplar
    assert backend.client.get("/health").json()["storage"]["reachable"] is True


def test_a_time_beyond_int64_in_json_costs_only_its_own_point(backend: Backend) -> None:
    now_ns = time.time_ns()
    points = [
        {"asDouble": 2, "timeUnixNano": str(now_ns), "attributes": [
            {"key": "ml.model.name", "value": {"stringValue": "result"}}]},
        {"asDouble": 9, "timeUnixNano": str(2**64 - 1)},
    ]  # fmt: skip
    metric = {
        "name": "ml.model.predictions",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points},
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "mlapi"}}]}
    doc = {"resourceMetrics": [{"resource": resource,
                                "scopeMetrics": [{"metrics": [metric]}]}]}  # fmt: skip
    resp = post_otlp(backend, json.dumps(doc).encode(), "application/json")
    assert resp.status_code == 200, resp.text
    assert resp.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert _predictions(backend) == 2


def test_a_count_beyond_2_53_is_refused(backend: Backend) -> None:
    now = time.time()
    big = 2**63 + 1
    hist = {"scale": 0, "count": big, "sum": 1.0, "zero_count": big}
    req = metric_request("http.server.request.duration", kind="exp", unit="s",
                         points=[{"hist": hist, "time_s": now}])  # fmt: skip
    out = _partial(post_otlp(backend, req.SerializeToString())).partial_success
    assert out.rejected_data_points == 1
    assert _rejections(backend)["integer_out_of_range"] == 1


def test_negative_increase_on_a_monotonic_delta_sum_is_refused(backend: Backend) -> None:
    now = time.time()
    req = metric_request(
        "ml.model.predictions", points=[_point(10, now - 2), _point(-4, now - 1), _point(3, now)]
    )
    out = _partial(post_otlp(backend, req.SerializeToString())).partial_success
    assert out.rejected_data_points == 1
    assert "monotonic" in out.error_message
    assert _predictions(backend) == 13  # not 9
    assert _rejections(backend)["negative_increase"] == 1
    # A non-monotonic (up-down) delta sum may go down.
    updown = metric_request("ml.cache.entries", monotonic=False, points=[_point(-4, now)])
    assert (
        _partial(
            post_otlp(backend, updown.SerializeToString())
        ).partial_success.rejected_data_points
        == 0
    )


def test_a_cumulative_reset_is_not_an_error(backend: Backend) -> None:
    now = time.time()
    start = now - 60
    for value, t in ((10, now - 20), (25, now - 10), (4, now)):  # 25 -> 4: a restart
        req = metric_request("ml.model.predictions", temporality=CUMULATIVE,
                             points=[_point(value, t, start)])  # fmt: skip
        assert (
            _partial(
                post_otlp(backend, req.SerializeToString())
            ).partial_success.rejected_data_points
            == 0
        )
    assert _predictions(backend) == 29  # 10 + 15 + 4 counted from zero again
    assert sum(_rejections(backend).values()) == 0


def test_non_finite_values_are_refused_and_never_poison_a_sum(backend: Backend) -> None:
    now = time.time()
    req = metric_request(
        "ml.model.predictions",
        points=[_point(float("nan"), now - 3), _point(float("inf"), now - 2),
                _point(float("-inf"), now - 1), _point(5, now)],
    )  # fmt: skip
    out = _partial(post_otlp(backend, req.SerializeToString())).partial_success
    assert out.rejected_data_points == 3
    assert "non-finite" in out.error_message
    gauge = metric_request("system.memory.utilization", kind="gauge",
                           points=[_point(float("nan"), now - 1), _point(0.5, now)])  # fmt: skip
    assert (
        _partial(post_otlp(backend, gauge.SerializeToString())).partial_success.rejected_data_points
        == 1
    )
    hist = {"scale": 0, "count": 1, "sum": float("nan"), "zero_count": 1}
    bad = metric_request("http.server.request.duration", kind="exp", unit="s",
                         points=[{"hist": hist, "time_s": now}])  # fmt: skip
    assert (
        _partial(post_otlp(backend, bad.SerializeToString())).partial_success.rejected_data_points
        == 1
    )
    assert _predictions(backend) == 5
    assert _rejections(backend)["non_finite"] == 5


def test_series_limit_refusals_are_counted_too(backend_factory: Any) -> None:
    backend = backend_factory(max_series=1)
    now = time.time()
    req = metric_request(
        "ml.model.predictions", points=[_point(1, now, model=f"m{i}") for i in range(3)]
    )
    assert (
        _partial(post_otlp(backend, req.SerializeToString())).partial_success.rejected_data_points
        == 2
    )
    body = backend.get("/ingest/rejections")
    assert body["by_reason"]["series_limit"] == 2
    assert body["total"] == 2
    assert set(body["by_reason"]) == set(REASON_CODES)


def test_flatten_time_window_edges() -> None:
    now_ns = 1_900_000_000 * 10**9
    limits = Limits(future_grace_ns=600 * 10**9, max_age_ns=3600 * 10**9)
    times = [now_ns + 600 * 10**9, now_ns + 600 * 10**9 + 1, now_ns - 3600 * 10**9,
             now_ns - 3600 * 10**9 - 1, 1, 2**64 - 1]  # fmt: skip
    req = metric_request("x", points=[{"value": 1, "time_s": 1} for _ in times])
    for p, t in zip(req.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points, times,
                    strict=True):  # fmt: skip
        p.time_unix_nano = t
    flat = flatten(req, limits, now_ns=now_ns)
    assert [s.time_ns for s in flat.samples] == [times[0], times[2]]
    assert flat.codes == {"time_in_future": 2, "time_too_old": 2}
