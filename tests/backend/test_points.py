"""Flatten's histogram buckets: read from each point, explicit bounds checked once per metric.

Whatever a point shares with the one before (buckets, scale, bounds, count), what it
differs in must come from the point itself and be checked again, never taken from before.
"""

from __future__ import annotations

import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.points import Flattened, flatten

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
NS = 1_000_000_000


def _exp_request(
    service: str, t_ns: int, count: int, counts: list[int], scale: int = 3, zero: int = 0
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "http.server.request.duration"
    metric.exponential_histogram.aggregation_temporality = CUMULATIVE
    p = metric.exponential_histogram.data_points.add()
    p.start_time_unix_nano = t_ns - 60 * NS
    p.time_unix_nano = t_ns
    p.count, p.sum, p.scale, p.zero_count = count, 1.5 * count, scale, zero
    p.positive.offset = -4
    p.positive.bucket_counts.extend(counts)
    a = p.attributes.add()
    a.key, a.value.string_value = "http.route", "/predict"
    return req


def _explicit_request(
    service: str, t_ns: int, count: int, bounds: list[float], counts: list[int], model: str = "a"
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "ml.model.prediction.confidence"
    metric.histogram.aggregation_temporality = CUMULATIVE
    p = metric.histogram.data_points.add()
    p.start_time_unix_nano = t_ns - 60 * NS
    p.time_unix_nano = t_ns
    p.count, p.sum = count, 0.5 * count
    p.explicit_bounds.extend(bounds)
    p.bucket_counts.extend(counts)
    a = p.attributes.add()
    a.key, a.value.string_value = "ml.model.name", model
    return req


def _one(flat: Flattened) -> tuple[int, list[int], int]:
    (sample,) = flat.samples
    exp = sample.value.exponential
    assert exp is not None
    return exp.scale, exp.pos_counts, exp.zero_count


def test_exponential_buckets_come_from_each_point() -> None:
    limits, now = Limits(), time.time_ns()
    service = f"reuse-{now}"  # a series of its own in the module's key cache
    first = flatten(_exp_request(service, now - 20 * NS, 6, [1, 2, 3]), limits, now)
    again = flatten(_exp_request(service, now - 15 * NS, 6, [1, 2, 3]), limits, now)
    assert _one(first) == _one(again) == (3, [1, 2, 3], 0)
    assert again.samples[0].time_ns == now - 15 * NS
    # Same count, other buckets (a reset with as many observations): read, not reused.
    moved = flatten(_exp_request(service, now - 10 * NS, 6, [3, 2, 1]), limits, now)
    assert _one(moved) == (3, [3, 2, 1], 0)
    rescaled = flatten(_exp_request(service, now - 9 * NS, 6, [3, 2, 1], scale=2), limits, now)
    assert _one(rescaled) == (2, [3, 2, 1], 0)
    zero = flatten(_exp_request(service, now - 8 * NS, 6, [3, 2, 0], scale=2, zero=1), limits, now)
    assert _one(zero) == (2, [3, 2, 0], 1)


def test_repeated_exponential_buckets_are_still_checked_against_the_count() -> None:
    limits, now = Limits(), time.time_ns()
    service = f"recheck-{now}"
    assert flatten(_exp_request(service, now - 20 * NS, 6, [1, 2, 3]), limits, now).samples
    # The same buckets under another count: refused, as on a first sight.
    bad = flatten(_exp_request(service, now - 15 * NS, 7, [1, 2, 3]), limits, now)
    assert (bad.samples, bad.rejected, dict(bad.codes)) == ([], 1, {"bad_histogram": 1})
    # The same count with buckets out of range: checked, refused.
    wild = flatten(_exp_request(service, now - 10 * NS, 6, [1, 2, 3], scale=21), limits, now)
    assert (wild.samples, dict(wild.codes)) == ([], {"bad_histogram": 1})
    ok = flatten(_exp_request(service, now - 5 * NS, 6, [1, 2, 3]), limits, now)
    assert _one(ok) == (3, [1, 2, 3], 0)


def test_explicit_bounds_are_shared_only_when_equal_and_new_ones_checked() -> None:
    limits, now = Limits(), time.time_ns()
    service = f"explicit-{now}"
    bounds = [0.25, 0.5, 0.75]
    first = flatten(_explicit_request(service, now - 20 * NS, 4, bounds, [1, 1, 1, 1]), limits, now)
    nxt = flatten(_explicit_request(service, now - 15 * NS, 6, bounds, [1, 2, 2, 1]), limits, now)
    a, b = first.samples[0].value.explicit, nxt.samples[0].value.explicit
    assert a is not None and b is not None
    assert (a.bounds, a.counts, b.bounds, b.counts) == (
        (0.25, 0.5, 0.75), [1, 1, 1, 1], (0.25, 0.5, 0.75), [1, 2, 2, 1],
    )  # fmt: skip
    assert b.bounds is a.bounds  # checked once for the metric
    # Another series of the metric (another model) with the same bounds: shared too.
    peer = flatten(
        _explicit_request(service, now - 12 * NS, 2, bounds, [0, 1, 1, 0], model="b"), limits, now
    )
    c = peer.samples[0].value.explicit
    assert c is not None and c.bounds is a.bounds and c.counts == [0, 1, 1, 0]
    # Bounds that differ are checked as on a first sight.
    down = flatten(
        _explicit_request(service, now - 10 * NS, 6, [0.5, 0.25, 0.75], [1, 2, 2, 1]), limits, now
    )
    assert (down.samples, dict(down.codes)) == ([], {"bad_histogram": 1})
    other = flatten(
        _explicit_request(service, now - 8 * NS, 6, [0.1, 0.5, 0.9], [1, 2, 2, 1]), limits, now
    )
    d = other.samples[0].value.explicit
    assert d is not None and d.bounds == (0.1, 0.5, 0.9)
    # Equal bounds, counts that do not add up, or one too many: refused.
    short = flatten(_explicit_request(service, now - 6 * NS, 9, bounds, [1, 2, 2, 1]), limits, now)
    assert (short.samples, dict(short.codes)) == ([], {"bad_histogram": 1})
    extra = flatten(
        _explicit_request(service, now - 5 * NS, 7, bounds, [1, 2, 2, 1, 1]), limits, now
    )
    assert (extra.samples, dict(extra.codes)) == ([], {"bad_histogram": 1})
