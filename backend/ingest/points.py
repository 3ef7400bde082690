"""Flatten an OTLP export request into samples: one per data point, with its series key.

A `Sample` carries the point as an `Aggregate` (a sum's value, a gauge reading, a
histogram's count/sum/buckets) plus what temporality conversion needs. Points that break
a limit or carry no usable value are refused with a reason, counted for
`partial_success`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from backend.ingest.limits import LimitError, Limits, labels
from backend.storage.aggregate import Aggregate, Exemplar, ExpBuckets, ExplicitBuckets
from backend.storage.base import Kind, SeriesKey

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
MAX_METRIC_NAME = 255
MAX_SCALE, MIN_SCALE = 20, -10  # the OTLP spec's range for exponential histograms
MAX_BUCKETS_PER_POINT = 4096


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

    def refuse(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        self.reasons[reason] += n


def _exemplars(point: Any, limit: int) -> list[Exemplar]:
    out = []
    for ex in list(point.exemplars)[: max(limit * 4, limit)]:
        value = ex.as_double if ex.WhichOneof("value") == "as_double" else float(ex.as_int)
        if not math.isfinite(value):
            continue
        out.append(Exemplar(value, int(ex.time_unix_nano), ex.trace_id.hex(), ex.span_id.hex()))
    return out


def _number(point: Any) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


def _exp_buckets(point: metrics_pb2.ExponentialHistogramDataPoint) -> ExpBuckets:
    if not MIN_SCALE <= point.scale <= MAX_SCALE:
        raise ValueError(f"exponential histogram scale {point.scale} out of range")
    pos, neg = list(point.positive.bucket_counts), list(point.negative.bucket_counts)
    if len(pos) + len(neg) > MAX_BUCKETS_PER_POINT:
        raise ValueError("exponential histogram has too many buckets")
    # Bucket i spans (2**(i/2**scale), 2**((i+1)/2**scale)]: keep every bound a finite double.
    for offset, counts in ((point.positive.offset, pos), (point.negative.offset, neg)):
        if counts and not (
            offset * 2.0**-point.scale >= -1074
            and (offset + len(counts)) * 2.0**-point.scale < 1023
        ):
            raise ValueError("exponential histogram buckets outside the range of a double")
    return ExpBuckets(
        scale=point.scale,
        zero_count=int(point.zero_count),
        zero_threshold=point.zero_threshold,
        pos_offset=point.positive.offset,
        pos_counts=pos,
        neg_offset=point.negative.offset,
        neg_counts=neg,
    )


def _explicit_buckets(point: metrics_pb2.HistogramDataPoint) -> ExplicitBuckets:
    bounds = tuple(point.explicit_bounds)
    counts = [int(c) for c in point.bucket_counts]
    if len(counts) > MAX_BUCKETS_PER_POINT:
        raise ValueError("histogram has too many buckets")
    if not counts:
        return ExplicitBuckets((), [int(point.count)])
    if len(counts) != len(bounds) + 1:
        raise ValueError("histogram bucket_counts must have one more entry than bounds")
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError("histogram bounds must be finite and strictly increasing")
    return ExplicitBuckets(bounds, counts)


def _points(metric: metrics_pb2.Metric) -> tuple[Kind, bool, bool, Any]:
    """Return (kind, cumulative, monotonic, points) of a metric."""
    data = metric.WhichOneof("data")
    if data == "sum":
        t = metric.sum.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise ValueError("sum without a temporality")
        return "sum", t == _CUMULATIVE, metric.sum.is_monotonic, metric.sum.data_points
    if data == "gauge":
        return "gauge", False, False, metric.gauge.data_points
    if data == "histogram":
        t = metric.histogram.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise ValueError("histogram without a temporality")
        return "histogram", t == _CUMULATIVE, True, metric.histogram.data_points
    if data == "exponential_histogram":
        t = metric.exponential_histogram.aggregation_temporality
        if t not in (_CUMULATIVE, _DELTA):
            raise ValueError("exponential histogram without a temporality")
        return (
            "exp_histogram",
            t == _CUMULATIVE,
            True,
            metric.exponential_histogram.data_points,
        )
    if data == "summary":
        raise ValueError("Summary points are not supported (use a histogram)")
    raise ValueError("metric without data")


def _count_points(metric: metrics_pb2.Metric) -> int:
    data = metric.WhichOneof("data")
    return len(getattr(metric, data).data_points) if data else 0


def _value(kind: Kind, cumulative: bool, point: Any, limits: Limits) -> Aggregate:
    t = int(point.time_unix_nano)
    if kind in ("sum", "gauge"):
        v = _number(point)
        if not math.isfinite(v):
            raise ValueError("non-finite value")
        if kind == "sum":
            return Aggregate(
                count=1, sum=v, last=v if cumulative else None, last_ns=t,
                exemplars=_exemplars(point, limits.max_exemplars),
            )  # fmt: skip
        return Aggregate(
            count=1, sum=v, min=v, max=v, last=v, last_ns=t,
            exemplars=_exemplars(point, limits.max_exemplars),
        )  # fmt: skip
    total = float(point.sum) if point.HasField("sum") else 0.0
    mn = point.min if point.HasField("min") else None
    mx = point.max if point.HasField("max") else None
    if not _finite(total, mn, mx):
        raise ValueError("non-finite histogram sum/min/max")
    agg = Aggregate(
        count=float(point.count),
        sum=total,
        min=mn,
        max=mx,
        last_ns=t,
        exemplars=_exemplars(point, limits.max_exemplars),
    )
    if kind == "exp_histogram":
        agg.exponential = _exp_buckets(point)
        if agg.exponential.total != point.count:
            raise ValueError("exponential histogram buckets do not add up to count")
    else:
        agg.explicit = _explicit_buckets(point)
        if sum(agg.explicit.counts) != point.count:
            raise ValueError("histogram buckets do not add up to count")
    return agg


def flatten(request: ExportMetricsServiceRequest, limits: Limits) -> Flattened:
    """Turn a request into samples, refusing (and counting) what breaks a limit."""
    out = Flattened()
    for rm in request.resource_metrics:
        n_resource = sum(_count_points(m) for sm in rm.scope_metrics for m in sm.metrics)
        try:
            resource = labels(rm.resource.attributes, limits, "resource")
        except LimitError as exc:
            out.refuse(str(exc), n_resource)
            continue
        for sm in rm.scope_metrics:
            scope = sm.scope.name
            if sm.scope.version:
                scope = f"{scope}@{sm.scope.version}"
            if len(scope) > limits.max_value_length:
                out.refuse("scope name too long", sum(_count_points(m) for m in sm.metrics))
                continue
            for metric in sm.metrics:
                out.samples.extend(_metric_samples(metric, resource, scope, limits, out))
    return out


def _metric_samples(
    metric: metrics_pb2.Metric,
    resource: tuple[tuple[str, str], ...],
    scope: str,
    limits: Limits,
    out: Flattened,
) -> Iterator[Sample]:
    n = _count_points(metric)
    if not metric.name or len(metric.name) > MAX_METRIC_NAME:
        out.refuse("metric name empty or too long", n)
        return
    try:
        kind, cumulative, monotonic, points = _points(metric)
    except ValueError as exc:
        out.refuse(f"{metric.name[:64]}: {exc}", n)
        return
    for point in points:
        if point.flags & _NO_RECORDED_VALUE:
            continue  # a staleness marker, not a value
        try:
            attrs = labels(point.attributes, limits, "data point")
            value = _value(kind, cumulative, point, limits)
        except (LimitError, ValueError) as exc:
            out.refuse(f"{metric.name[:64]}: {exc}")
            continue
        key = SeriesKey(
            metric=metric.name,
            kind=kind,
            unit=metric.unit[:64],
            monotonic=monotonic,
            resource=resource,
            scope=scope,
            attributes=attrs,
        )
        yield Sample(key, cumulative, int(point.start_time_unix_nano), value.last_ns, value)
