"""Histogram maths: fold sorted batches of values into base-2 exponential or explicit buckets.

The hot path (`_hotpath`) hands each export destination batches of values at collection;
these states fold them with a bisect per bucket, so the deferred work stays in C:

* `ExponentialState`: base-2 exponential buckets with the SDK's layout (upper-inclusive;
  the scale starts at `max_scale` and halves until the populated range fits `max_size`
  buckets); negative values go to negative buckets by magnitude, as OTLP allows;
* `ExplicitState`: fixed, upper-inclusive boundaries.

Both yield the SDK's own data-point classes, with exemplars picked as the SDK's
reservoirs do (the latest measurement per bucket).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    Buckets,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
)
from opentelemetry.trace import SpanContext

Attributes = Mapping[str, Any]
#: A measurement taken while a sampled span was current: (value, time in ns, span).
Traced = tuple[float, int, SpanContext]

#: Exemplars reported per series and collection (as the SDK's reservoir).
EXEMPLARS_PER_SERIES = 20
#: The SDK's default explicit boundaries (used when explicit buckets are asked for).
DEFAULT_BOUNDARIES: tuple[float, ...] = (
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
    7500.0, 10000.0,
)  # fmt: skip


def _index_at_scale(value: float, scale: int) -> int:
    """Bucket index of a positive value; bucket i holds (base^i, base^(i+1)], base=2^2^-s."""
    if scale > 0:
        return math.ceil(math.log2(value) * (1 << scale)) - 1
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, 0.5 <= m < 1
    index = exponent - 2 if mantissa == 0.5 else exponent - 1
    return index >> -scale


def _upper_bound(index: int, scale: int) -> float:
    """Upper (inclusive) bound of bucket `index` at `scale`."""
    if scale > 0:
        return math.exp2((index + 1) / (1 << scale))
    return math.ldexp(1.0, (index + 1) << -scale)


class _Buckets:
    """Counts of one sign, indexed at the owner's scale."""

    __slots__ = ("bounds", "bounds_scale", "counts", "high", "low")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.low = 0
        self.high = -1
        # Upper bounds by index at `bounds_scale`, kept between folds: the scale rarely
        # changes, and a bound costs a function call and an exp2 to compute.
        self.bounds: dict[int, float] = {}
        self.bounds_scale: int | None = None

    def downscale(self, change: int) -> None:
        counts: dict[int, int] = {}
        for index, count in self.counts.items():
            counts[index >> change] = counts.get(index >> change, 0) + count
        self.counts = counts
        self.low >>= change
        self.high >>= change

    def add_sorted(self, magnitudes: list[float], scale: int, low: int, high: int) -> None:
        """Count ascending positive magnitudes into buckets low..high (the new range)."""
        counts = self.counts
        if scale != self.bounds_scale:
            self.bounds, self.bounds_scale = {}, scale
        bounds = self.bounds
        start = 0
        total = len(magnitudes)
        # The buckets below the first value's hold nothing of this batch: start there
        # (one lower: the index formula can be one off where the bounds decide).
        first = max(low, _index_at_scale(magnitudes[0], scale) - 1)
        for index in range(first, high):
            bound = bounds.get(index)
            if bound is None:
                bound = bounds[index] = _upper_bound(index, scale)
            end = bisect_right(magnitudes, bound, start)
            if end > start:
                counts[index] = counts.get(index, 0) + end - start
                start = end
            if start == total:
                break
        if start < total:
            counts[high] = counts.get(high, 0) + total - start
        # [low, high] already spans the previous range (the caller merged them).
        self.low, self.high = low, high

    def export(self) -> Buckets:
        if not self.counts:
            return Buckets(offset=0, bucket_counts=[])
        # map with dict.get runs in C: no Python frame per bucket (~160 per series).
        counts = list(map(self.counts.get, range(self.low, self.high + 1), repeat(0)))
        return Buckets(offset=self.low, bucket_counts=counts)


class ExponentialState:
    """One series' base-2 exponential histogram since `start_ns`."""

    __slots__ = (
        "count", "exemplars", "max", "max_size", "min", "negative", "positive", "scale",
        "start_ns", "sum", "zero_count",
    )  # fmt: skip

    def __init__(self, start_ns: int, *, max_size: int = 160, max_scale: int = 20) -> None:
        self.start_ns = start_ns
        self.max_size = max_size
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zero_count = 0
        self.scale = max_scale
        self.positive = _Buckets()
        self.negative = _Buckets()
        self.exemplars: dict[int, Traced] = {}

    def fold(self, values: list[float], traced: Sequence[Traced]) -> None:
        """Add ascending `values` (those of `traced` included) and offer `traced` as exemplars."""
        if values:
            self._fold_values(values)
        for measurement in traced:
            value = measurement[0]
            index = _index_at_scale(abs(value), self.scale) if value else 0
            # The latest per bucket wins; new buckets only while there is room.
            if index in self.exemplars or len(self.exemplars) < EXEMPLARS_PER_SERIES:
                self.exemplars[index] = measurement

    def _fold_values(self, values: list[float]) -> None:
        self.count += len(values)
        # A plain float sum, as the SDK's own aggregation adds (fsum costs 4x more).
        self.sum += sum(values)
        self.min = min(self.min, values[0])
        self.max = max(self.max, values[-1])
        first_positive = bisect_right(values, 0.0)
        first_zero = first_positive - values[:first_positive].count(0.0)
        self.zero_count += first_positive - first_zero
        positives = values[first_positive:] if first_positive else values  # no copy
        negatives = [-v for v in reversed(values[:first_zero])]
        for magnitudes, buckets in ((positives, self.positive), (negatives, self.negative)):
            if not magnitudes:
                continue
            low = _index_at_scale(magnitudes[0], self.scale)
            high = _index_at_scale(magnitudes[-1], self.scale)
            if buckets.counts:
                low, high = min(low, buckets.low), max(high, buckets.high)
            change = 0
            while (high >> change) - (low >> change) + 1 > self.max_size:
                change += 1
            if change:
                self.scale -= change
                self.positive.downscale(change)
                self.negative.downscale(change)
                low >>= change
                high >>= change
            buckets.add_sorted(magnitudes, self.scale, low, high)

    def point(self, attributes: Attributes, now_ns: int) -> ExponentialHistogramDataPoint:
        """The state as an OTLP data point, with the exemplars offered since the last one."""
        exemplars, self.exemplars = _exemplars(self.exemplars), {}
        return ExponentialHistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=self.start_ns,
            time_unix_nano=now_ns,
            count=self.count,
            sum=self.sum,
            scale=self.scale,
            zero_count=self.zero_count,
            positive=self.positive.export(),
            negative=self.negative.export(),
            flags=0,
            min=self.min,
            max=self.max,
            exemplars=exemplars,
        )


class ExplicitState:
    """One series' histogram with fixed, upper-inclusive boundaries since `start_ns`."""

    __slots__ = ("boundaries", "counts", "exemplars", "max", "min", "start_ns", "sum")

    def __init__(self, start_ns: int, *, boundaries: Sequence[float]) -> None:
        self.start_ns = start_ns
        self.boundaries = tuple(boundaries)
        self.counts = [0] * (len(self.boundaries) + 1)
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: dict[int, Traced] = {}

    @property
    def count(self) -> int:
        return sum(self.counts)

    def fold(self, values: list[float], traced: Sequence[Traced]) -> None:
        """Add ascending `values` (those of `traced` included) and offer `traced` as exemplars."""
        if values:
            self.sum += sum(values)
            self.min = min(self.min, values[0])
            self.max = max(self.max, values[-1])
            below = 0
            for i, bound in enumerate(self.boundaries):
                at_or_below = bisect_right(values, bound, below)
                self.counts[i] += at_or_below - below
                below = at_or_below
            self.counts[-1] += len(values) - below
        for measurement in traced:
            index = bisect_right(self.boundaries, measurement[0])
            if index > 0 and self.boundaries[index - 1] == measurement[0]:
                index -= 1  # upper-inclusive
            self.exemplars[index] = measurement

    def point(self, attributes: Attributes, now_ns: int) -> HistogramDataPoint:
        """The state as an OTLP data point, with the exemplars offered since the last one."""
        exemplars, self.exemplars = _exemplars(self.exemplars), {}
        return HistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=self.start_ns,
            time_unix_nano=now_ns,
            count=self.count,
            sum=self.sum,
            bucket_counts=list(self.counts),
            explicit_bounds=self.boundaries,
            min=self.min,
            max=self.max,
            exemplars=exemplars,
        )


def _exemplars(chosen: Mapping[int, Traced]) -> list[Exemplar]:
    return [
        Exemplar({}, value, time_ns, span.span_id, span.trace_id)
        for value, time_ns, span in chosen.values()
    ]
