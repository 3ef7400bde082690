"""Flatten's reuse of a series' last checked histogram buckets (`points._Known.last`).

A cumulative histogram re-sent unchanged reuses its checked buckets; anything that differs
(buckets, scale, bounds, count) must be read and checked again, never taken from before.
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
    service: str, t_ns: int, count: int, bounds: list[float], counts: list[int]
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
    return req


def _one(flat: Flattened) -> tuple[int, list[int], int]:
    (sample,) = flat.samples
    exp = sample.value.exponential
    assert exp is not None
    return exp.scale, exp.pos_counts, exp.zero_count


def test_unchanged_exponential_buckets_are_reused_and_changed_ones_read_again() -> None:
    limits, now = Limits(), time.time_ns()
    service = f"reuse-{now}"  # a series of its own in the module's key cache
    first = flatten(_exp_request(service, now - 20 * NS, 6, [1, 2, 3]), limits, now)
    # The first repeat (same count) reads its buckets and keeps their bytes; later ones
    # with the same bytes reuse them.
    again = flatten(_exp_request(service, now - 15 * NS, 6, [1, 2, 3]), limits, now)
    third = flatten(_exp_request(service, now - 12 * NS, 6, [1, 2, 3]), limits, now)
    assert _one(first) == _one(again) == _one(third) == (3, [1, 2, 3], 0)
    assert third.samples[0].value.exponential is again.samples[0].value.exponential
    assert third.samples[0].time_ns == now - 12 * NS  # the point's own time, not the last
    # Same count, other buckets (a reset with as many observations): read, not reused.
    moved = flatten(_exp_request(service, now - 10 * NS, 6, [3, 2, 1]), limits, now)
    assert _one(moved) == (3, [3, 2, 1], 0)
    rescaled = flatten(_exp_request(service, now - 9 * NS, 6, [3, 2, 1], scale=2), limits, now)
    assert _one(rescaled) == (2, [3, 2, 1], 0)
    zero = flatten(_exp_request(service, now - 8 * NS, 6, [3, 2, 0], scale=2, zero=1), limits, now)
    assert _one(zero) == (2, [3, 2, 0], 1)


def test_reused_exponential_buckets_are_still_checked_against_the_count() -> None:
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


def test_explicit_bounds_are_reused_only_when_equal_and_new_ones_checked() -> None:
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
    same = flatten(_explicit_request(service, now - 12 * NS, 6, bounds, [1, 2, 2, 1]), limits, now)
    assert same.samples[0].value.explicit is b
    # Bounds that differ are checked as on a first sight.
    down = flatten(
        _explicit_request(service, now - 10 * NS, 6, [0.5, 0.25, 0.75], [1, 2, 2, 1]), limits, now
    )
    assert (down.samples, dict(down.codes)) == ([], {"bad_histogram": 1})
    other = flatten(
        _explicit_request(service, now - 8 * NS, 6, [0.1, 0.5, 0.9], [1, 2, 2, 1]), limits, now
    )
    c = other.samples[0].value.explicit
    assert c is not None and c.bounds == (0.1, 0.5, 0.9)
    # Equal bounds, counts that do not add up, or one too many: refused.
    short = flatten(_explicit_request(service, now - 6 * NS, 9, bounds, [1, 2, 2, 1]), limits, now)
    assert (short.samples, dict(short.codes)) == ([], {"bad_histogram": 1})
    extra = flatten(
        _explicit_request(service, now - 5 * NS, 7, bounds, [1, 2, 2, 1, 1]), limits, now
    )
    assert (extra.samples, dict(extra.codes)) == ([], {"bad_histogram": 1})
