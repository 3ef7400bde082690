"""Flatten an OTLP export request into samples: one per data point, with its series key.

A `Sample` carries the point as an `Aggregate` (a sum's value, a gauge reading, a
histogram's count/sum/buckets) plus what temporality conversion needs. Points that break
a limit or carry no usable value are refused with a reason, counted for
`partial_success`; a refused point never affects the others of its request.

Every point is checked here, before any storage sees it:

- time: `time_unix_nano` within `[now - max_age, now + future_grace]` (so never 0, never
  decades ahead, where it would freeze its series; always below 2**63, the range of a
  SQLite integer); `start_time_unix_nano` 0 (unknown) or not after `time_unix_nano`;
- integers: counts (and so bucket and zero counts) at most 2**53, exact as a double;
  exemplars with an out-of-range time are dropped, as are non-finite ones;
- values: NaN and ±Inf are refused (the OTLP data model gives them no meaning as a sum
  or a reading, and poison every merge; a staleness marker is the `NO_RECORDED_VALUE`
  flag, which is skipped); monotonic sums refuse negative values (a delta point cannot
  decrease a counter; a cumulative counter starts at zero and only rises; a cumulative
  value below the previous one is a reset, handled by temporality conversion).

Each refusal has a reason for `partial_success` (naming the metric) and a fixed code
(`Flattened.codes`, one of `REASON_CODES`) for the "rejected points by reason" self-metric.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from mlpulse.backend.ingest.limits import LimitError, Limits, labels
from mlpulse.backend.storage.aggregate import Aggregate, Exemplar, ExpBuckets, ExplicitBuckets
from mlpulse.backend.storage.base import Kind, SeriesKey

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
# A series' raw key, per attribute: `map` over the unbound method skips a Python-level
# call per attribute (a fifth of the key's cost).
_serialize = KeyValue.SerializeToString
MAX_METRIC_NAME = 255
MAX_SCALE, MIN_SCALE = 20, -10  # the OTLP spec's range for exponential histograms
MAX_BUCKETS_PER_POINT = 4096
MAX_INT64 = 2**63 - 1
MAX_COUNT = 2**53  # counts above this are not exact as a double (nor plausible)

# The fixed reason codes of refused points (bounded: never derived from client data).
REASON_CODES = (
    "time_missing",  # time_unix_nano is 0
    "time_in_future",  # beyond the future grace
    "time_too_old",  # older than retention
    "start_after_time",  # start_time_unix_nano after time_unix_nano
    "integer_out_of_range",  # a count beyond MAX_COUNT
    "non_finite",  # NaN or ±Inf value, sum, min, max or bound
    "negative_increase",  # a negative value on a monotonic sum
    "bad_histogram",  # buckets inconsistent with count, bounds, scale
    "bad_metric",  # no name, no temporality, unsupported type (summary)
    "attribute_limit",  # too many / too long attributes
    "series_limit",  # refused after flatten, at storage (the series limit)
)


class Refused(ValueError):
    """A data point that cannot be stored; `code` is one of `REASON_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Sample:
    """One data point, ready for temporality conversion and storage."""

    key: SeriesKey
    cumulative: bool  # cumulative temporality (sums and histograms only)
    start_ns: int
    time_ns: int
    value: Aggregate


@dataclass(slots=True)
class Flattened:
    """The samples of a request, plus the refused points and why."""

    samples: list[Sample] = field(default_factory=list)
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)

    def refuse(self, reason: str, n: int = 1, code: str = "bad_metric") -> None:
        if n <= 0:
            return
        self.rejected += n
        self.reasons[reason] += n
        self.codes[code] += n


def _exemplars(point: Any, limit: int) -> list[Exemplar]:
    exemplars = point.exemplars
    if not exemplars:  # most points: no list copy, no loop
        return []
    out = []
    for ex in list(exemplars)[: max(limit * 4, limit)]:
        value = ex.as_double if ex.WhichOneof("value") == "as_double" else float(ex.as_int)
        if not math.isfinite(value) or ex.time_unix_nano > MAX_INT64:
            continue
        out.append(Exemplar(value, int(ex.time_unix_nano), ex.trace_id.hex(), ex.span_id.hex()))
    return out


def _check_times(point: Any, now_ns: int, limits: Limits) -> None:
    """Refuse a point dated 0, beyond the future grace, older than retention, or whose
    start is after its time (so both times also fit in a signed 64-bit integer)."""
    t, start = int(point.time_unix_nano), int(point.start_time_unix_nano)
    if t == 0:
        raise Refused("time_missing", "time_unix_nano is 0")
    if t > now_ns + limits.future_grace_ns:
        ahead = (t - now_ns) / 1e9
        raise Refused("time_in_future", f"time is {ahead:.0f} s ahead of the server clock")
    if t < now_ns - limits.max_age_ns:
        raise Refused("time_too_old", f"time is {(now_ns - t) / 1e9:.0f} s old (beyond retention)")
    if start > t:
        raise Refused("start_after_time", "start_time_unix_nano is after time_unix_nano")


def _exp_buckets(point: metrics_pb2.ExponentialHistogramDataPoint) -> ExpBuckets:
    # Each field read of a protobuf message builds a Python object: read each once.
    scale, threshold = point.scale, point.zero_threshold
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise Refused("bad_histogram", f"exponential histogram scale {scale} out of range")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise Refused("bad_histogram", "zero_threshold must be finite and not negative")
    positive, negative = point.positive, point.negative
    pos = positive.bucket_counts[:]  # a slice: a list, faster than list()
    neg = negative.bucket_counts[:] if negative.bucket_counts else []
    if len(pos) + len(neg) > MAX_BUCKETS_PER_POINT:
        raise Refused("bad_histogram", "exponential histogram has too many buckets")
    pos_offset, neg_offset = positive.offset, negative.offset
    # Bucket i spans (2**(i/2**scale), 2**((i+1)/2**scale)]: keep every bound a finite double.
    width = 2.0**-scale
    for offset, counts in ((pos_offset, pos), (neg_offset, neg)):
        if counts and not (offset * width >= -1074 and (offset + len(counts)) * width < 1023):
            raise Refused(
                "bad_histogram", "exponential histogram buckets outside the range of a double"
            )
    return ExpBuckets(scale, int(point.zero_count), threshold, pos_offset, pos, neg_offset, neg)


def _explicit_buckets(point: metrics_pb2.HistogramDataPoint) -> ExplicitBuckets:
    bounds = tuple(point.explicit_bounds)
    counts = point.bucket_counts[:]
    if len(counts) > MAX_BUCKETS_PER_POINT:
        raise Refused("bad_histogram", "histogram has too many buckets")
    if not counts:
        return ExplicitBuckets((), [int(point.count)])
    if len(counts) != len(bounds) + 1:
        raise Refused(
            "bad_histogram", "histogram bucket_counts must have one more entry than bounds"
        )
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise Refused("bad_histogram", "histogram bounds must be finite and strictly increasing")
    return ExplicitBuckets(bounds, counts)


def _explicit_value(point: Any, metric_keys: _MetricKeys) -> ExplicitBuckets:
    """The point's checked buckets, its bounds checked once per metric.

    The series of one instrument share its bounds: when a point's bounds equal the ones
    last checked for its metric (compared as numbers, so -0.0 stands for 0.0), their
    checked tuple is reused instead of copied, sorted and checked again.
    """
    known = metric_keys.bounds  # one read: another thread may replace it (never mutate it)
    if known is not None:
        bounds_list, bounds = known
        counts = point.bucket_counts[:]
        if (
            len(counts) == len(bounds) + 1
            and len(counts) <= MAX_BUCKETS_PER_POINT
            and point.explicit_bounds == bounds_list
        ):
            return ExplicitBuckets(bounds, counts)
    buckets = _explicit_buckets(point)  # raises Refused
    if buckets.bounds:
        metric_keys.bounds = (list(buckets.bounds), buckets.bounds)
    return buckets


def _points(metric: metrics_pb2.Metric) -> tuple[Kind, bool, bool, Any]:
    """Return (kind, cumulative, monotonic, points) of a metric."""
    data = metric.WhichOneof("data")
    if data == "sum":
        t = metric.sum.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise Refused("bad_metric", "sum without a temporality")
        return "sum", t == _CUMULATIVE, metric.sum.is_monotonic, metric.sum.data_points
    if data == "gauge":
        return "gauge", False, False, metric.gauge.data_points
    if data == "histogram":
        t = metric.histogram.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise Refused("bad_metric", "histogram without a temporality")
        return "histogram", t == _CUMULATIVE, True, metric.histogram.data_points
    if data == "exponential_histogram":
        t = metric.exponential_histogram.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise Refused("bad_metric", "exponential histogram without a temporality")
        return (
            "exp_histogram",
            t == _CUMULATIVE,
            True,
            metric.exponential_histogram.data_points,
        )
    if data == "summary":
        raise Refused("bad_metric", "Summary points are not supported (use a histogram)")
    raise Refused("bad_metric", "metric without data")


def _count_points(metric: metrics_pb2.Metric) -> int:
    data = metric.WhichOneof("data")
    return len(getattr(metric, data).data_points) if data else 0


def flatten(
    request: ExportMetricsServiceRequest, limits: Limits, now_ns: int | None = None
) -> Flattened:
    """Turn a request into samples, refusing (and counting) what breaks a limit.

    `now_ns` is the server clock the point times are checked against (default: now).
    """
    out = Flattened()
    now = time.time_ns() if now_ns is None else now_ns
    for rm in request.resource_metrics:
        n_resource = sum(_count_points(m) for sm in rm.scope_metrics for m in sm.metrics)
        try:
            resource = labels(rm.resource.attributes, limits, "resource")
        except LimitError as exc:
            out.refuse(str(exc), n_resource, "attribute_limit")
            continue
        for sm in rm.scope_metrics:
            scope = sm.scope.name
            if sm.scope.version:
                scope = f"{scope}@{sm.scope.version}"
            if len(scope) > limits.max_value_length:
                n_scope = sum(_count_points(m) for m in sm.metrics)
                out.refuse("scope name too long", n_scope, "attribute_limit")
                continue
            for metric in sm.metrics:
                out.samples.extend(_metric_samples(metric, resource, scope, limits, now, out))
    if limits.tally is not None:
        limits.tally.update(out.codes)
    return out


@dataclass(slots=True)
class _MetricKeys:
    """What flatten keeps of one metric identity: its series' keys, its checked bounds."""

    keys: dict[tuple[bytes, ...], SeriesKey] = field(default_factory=dict)
    # The explicit bounds last checked for this metric: (as a list, the checked tuple).
    bounds: tuple[list[float], tuple[float, ...]] | None = None


# Series keys by their raw attribute bytes, per limits and metric identity: a known series
# costs one serialization of its attributes instead of rendering, checking, sorting and
# fingerprinting them again. Only keys that passed the limits are cached. Bounded: when
# it grows past _KEY_CACHE_MAX keys (a cardinality storm), it starts again.
_KEY_CACHE: dict[tuple[Any, ...], _MetricKeys] = {}
_KEY_CACHE_MAX = 200_000
_key_cache_added = [0]  # keys added since the last clear (approximate across threads)
_key_cache_lock = threading.Lock()


def _key_cache(bounds: tuple[int, ...], metric: tuple[Any, ...]) -> _MetricKeys:
    if _key_cache_added[0] > _KEY_CACHE_MAX:
        with _key_cache_lock:
            if _key_cache_added[0] > _KEY_CACHE_MAX:
                _KEY_CACHE.clear()
                _key_cache_added[0] = 0
    cache = _KEY_CACHE.get((bounds, metric))
    if cache is None:
        cache = _KEY_CACHE.setdefault((bounds, metric), _MetricKeys())
    return cache


def _metric_samples(
    metric: metrics_pb2.Metric,
    resource: tuple[tuple[str, str], ...],
    scope: str,
    limits: Limits,
    now_ns: int,
    out: Flattened,
) -> list[Sample]:
    n = _count_points(metric)
    if not metric.name or len(metric.name) > MAX_METRIC_NAME:
        out.refuse("metric name empty or too long", n)
        return []
    try:
        kind, cumulative, monotonic, points = _points(metric)
    except Refused as exc:
        out.refuse(f"{metric.name[:64]}: {exc}", n, exc.code)
        return []
    metric_keys = _key_cache(
        (limits.max_attributes, limits.max_key_length, limits.max_value_length),
        (resource, scope, metric.name, metric.unit, kind, monotonic),
    )
    # The per-point loop is the hot path of ingest (hundreds of thousands of points a
    # second): the checks are inlined, and each protobuf field is read once (every read
    # builds a Python object). Time checks that fail take `_check_times`, which raises
    # the refusal with its reason.
    samples: list[Sample] = []
    append = samples.append
    series_keys = metric_keys.keys
    lookup = series_keys.get
    isfinite = math.isfinite
    oldest, newest = now_ns - limits.max_age_ns, now_ns + limits.future_grace_ns
    max_exemplars = limits.max_exemplars
    scalar = kind in ("sum", "gauge")
    exponential = kind == "exp_histogram"
    sum_cumulative = kind == "sum" and cumulative
    sum_monotonic = kind == "sum" and monotonic
    for point in points:
        if point.flags & _NO_RECORDED_VALUE:
            continue  # a staleness marker, not a value
        try:
            t = point.time_unix_nano
            start = point.start_time_unix_nano
            if not oldest <= t <= newest or start > t or t == 0:
                _check_times(point, now_ns, limits)  # raises the refusal
            raw = tuple(map(_serialize, point.attributes))
            key = lookup(raw)
            if key is None:
                key = _new_key(point, metric, kind, monotonic, resource, scope, limits)
                series_keys[raw] = key
                _key_cache_added[0] += 1
            exemplars = _exemplars(point, max_exemplars) if point.exemplars else []
            if scalar:
                as_int = point.WhichOneof("value") == "as_int"
                v = float(point.as_int) if as_int else point.as_double
                if not isfinite(v):
                    raise Refused("non_finite", f"non-finite value {v}")
                if sum_monotonic and v < 0:
                    raise Refused("negative_increase", f"negative value {v:.6g} on a monotonic sum")
                if kind == "sum":
                    value = Aggregate(1, v, None, None, v if sum_cumulative else None, t,
                                      None, None, exemplars)  # fmt: skip
                else:
                    value = Aggregate(1, v, v, v, v, t, None, None, exemplars)
            else:
                total = point.sum  # 0.0 when absent
                mn = point.min if point.HasField("min") else None
                mx = point.max if point.HasField("max") else None
                if not isfinite(total):
                    raise Refused("non_finite", f"non-finite value {total}")
                if mn is not None and not isfinite(mn):
                    raise Refused("non_finite", f"non-finite value {mn}")
                if mx is not None and not isfinite(mx):
                    raise Refused("non_finite", f"non-finite value {mx}")
                count = point.count
                if count > MAX_COUNT:
                    raise Refused("integer_out_of_range", f"count {count} beyond 2**53")
                value = Aggregate(float(count), total, mn, mx, None, t, None, None, exemplars)
                if exponential:
                    value.exponential = exp = _exp_buckets(point)
                    if exp.total != count:
                        raise Refused(
                            "bad_histogram", "exponential histogram buckets do not add up to count"
                        )
                else:
                    value.explicit = explicit = _explicit_value(point, metric_keys)
                    if sum(explicit.counts) != count:
                        raise Refused("bad_histogram", "histogram buckets do not add up to count")
        except LimitError as exc:
            out.refuse(f"{metric.name[:64]}: {exc}", code="attribute_limit")
            continue
        except Refused as exc:
            out.refuse(f"{metric.name[:64]}: {exc}", code=exc.code)
            continue
        except (ValueError, OverflowError) as exc:  # anything else odd: this point only
            out.refuse(f"{metric.name[:64]}: {exc}", code="bad_metric")
            continue
        append(Sample(key, cumulative, start, t, value))
    return samples


def _new_key(
    point: Any,
    metric: metrics_pb2.Metric,
    kind: Kind,
    monotonic: bool,
    resource: tuple[tuple[str, str], ...],
    scope: str,
    limits: Limits,
) -> SeriesKey:
    """A series key seen for the first time (limits checked; raises LimitError)."""
    return SeriesKey(
        metric=metric.name,
        kind=kind,
        unit=metric.unit[:64],
        monotonic=monotonic,
        resource=resource,
        scope=scope,
        attributes=labels(point.attributes, limits, "data point"),
    )
