"""Hot-path aggregation: a measurement costs a deque append; folding happens at collection.

An SDK `Histogram.record` costs ~15 µs (a Measurement object, attribute cleaning, view
matching, hashing). Five of them per request are several percent of a prediction API's
throughput. Here a measurement appends its value to a per-series deque (thread-safe,
~0.1 µs). At collection — every export interval, in the reader's thread — each deque
is drained, sorted, and folded into cumulative state with a bisect per bucket, so even
the deferred work stays in C:

* `ExponentialHistogram`: base-2 exponential buckets with the SDK's layout
  (upper-inclusive; the scale starts at `max_scale` and halves until the populated range
  fits `max_size` buckets), plus exemplars taken from the span current at measurement;
* `ExplicitHistogram`: fixed boundaries (the confidence histogram);
* `SumTable`: cumulative sums, reported through SDK observable counters.

Histograms reach the exporters through `HistogramSet.merge_into`, wired into each metric
reader's collection; they are cumulative (the OTLP default). A deque that grows past
`FOLD_THRESHOLD` between two collections (say, an in-memory reader nobody reads) is
folded on the spot, so memory stays bounded.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from time import time_ns
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram as ExponentialHistogramData,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import get_current_span

Attributes = Mapping[str, Any]

#: Attribute sets per instrument beyond which measurements go to one overflow series.
MAX_SERIES = 2000
OVERFLOW_ATTRIBUTES: Attributes = {"otel.metric.overflow": True}
_OVERFLOW_KEY = ("otel.metric.overflow",)
#: Exemplars reported per series and collection (as the SDK's reservoir).
EXEMPLARS_PER_SERIES = 20
#: Exemplar candidates kept per series between collections (the latest ones).
_EXEMPLAR_CANDIDATES = 256
#: Values buffered per series before they are folded without waiting for a collection.
FOLD_THRESHOLD = 20_000


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


def _drain(buffer: deque[Any]) -> list[Any]:
    # popleft is atomic, so appends racing with the drain are kept for the next one.
    return [buffer.popleft() for _ in range(len(buffer))]


class _Buckets:
    """Counts of one sign, indexed at the owner's scale."""

    __slots__ = ("counts", "high", "low")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.low = 0
        self.high = -1

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
        start = 0
        total = len(magnitudes)
        for index in range(low, high):
            end = bisect_right(magnitudes, _upper_bound(index, scale), start)
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
        get = self.counts.get
        return Buckets(
            offset=self.low, bucket_counts=[get(i, 0) for i in range(self.low, self.high + 1)]
        )


class _ExpSeries:
    __slots__ = (
        "attributes",
        "buffer",
        "candidates",
        "count",
        "max",
        "min",
        "negative",
        "positive",
        "scale",
        "start_ns",
        "sum",
        "zero_count",
    )

    def __init__(self, attributes: Attributes, scale: int) -> None:
        self.attributes = attributes
        self.buffer: deque[float] = deque()
        self.candidates: deque[tuple[float, int, int, int]] = deque(maxlen=_EXEMPLAR_CANDIDATES)
        self.start_ns = time_ns()
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zero_count = 0
        self.scale = scale
        self.positive = _Buckets()
        self.negative = _Buckets()


class _Instrument:
    """What the histograms share: identity, a lock for folding, the exemplar switch."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._lock = threading.Lock()
        self.exemplars_enabled = False


class _Series(Protocol):
    buffer: deque[float]
    candidates: deque[tuple[float, int, int, int]]


_S = TypeVar("_S", bound=_Series)


class _Histogram(_Instrument, Generic[_S]):
    """The buffered recording both histograms share: a series per attribute set, values
    appended on the hot path and folded under the lock. Subclasses say how a series
    starts (`_make_series`) and how buffered values fold into it (`_fold`)."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        super().__init__(name, unit, description)
        self._series: dict[Hashable, _S] = {}

    def record(self, value: float, key: Hashable, attributes: Attributes) -> None:
        """Add one measurement to the series of `attributes` (identified by `key`)."""
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, attributes)
        buffer = series.buffer
        buffer.append(value)
        if len(buffer) > FOLD_THRESHOLD:
            with self._lock:
                self._fold(series)
        if self.exemplars_enabled:
            context = get_current_span().get_span_context()
            if context.trace_flags.sampled:
                series.candidates.append((value, time_ns(), context.span_id, context.trace_id))

    def buffer(self, key: Hashable, attributes: Attributes) -> deque[float]:
        """The raw buffer of a series, for hot paths that append values directly.

        Such callers skip exemplars and must call `fold_pending` when the buffer grows
        past FOLD_THRESHOLD.
        """
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, attributes)
        return series.buffer

    def fold_pending(self) -> None:
        """Fold every buffered value now."""
        with self._lock:
            for series in list(self._series.values()):
                self._fold(series)

    def _new_series(self, key: Hashable, attributes: Attributes) -> _S:
        with self._lock:
            series = self._series.get(key)
            if series is not None:
                return series
            if len(self._series) >= MAX_SERIES:
                key, attributes = _OVERFLOW_KEY, OVERFLOW_ATTRIBUTES
                series = self._series.get(key)
                if series is not None:
                    return series
            series = self._series[key] = self._make_series(dict(attributes))
            return series

    def _make_series(self, attributes: Attributes) -> _S:
        raise NotImplementedError

    def _fold(self, series: _S) -> None:
        raise NotImplementedError


class ExponentialHistogram(_Histogram[_ExpSeries]):
    """A base-2 exponential histogram per attribute set.

    `record(value, key, attributes)` takes a hashable `key` naming the attribute set, so
    callers can cache both and skip hashing a dict per call.
    """

    def __init__(
        self,
        name: str,
        unit: str,
        description: str,
        *,
        max_size: int = 160,
        max_scale: int = 20,
    ) -> None:
        super().__init__(name, unit, description)
        self.max_size = max_size
        self.max_scale = max_scale

    def _make_series(self, attributes: Attributes) -> _ExpSeries:
        return _ExpSeries(attributes, self.max_scale)

    def _fold(self, series: _ExpSeries) -> None:
        values = _drain(series.buffer)
        if not values:
            return
        values.sort()
        series.count += len(values)
        series.sum += math.fsum(values)
        series.min = min(series.min, values[0])
        series.max = max(series.max, values[-1])
        first_positive = bisect_right(values, 0.0)
        first_zero = first_positive - values[:first_positive].count(0.0)
        series.zero_count += first_positive - first_zero
        positives = values[first_positive:]
        negatives = [-v for v in reversed(values[:first_zero])]
        for magnitudes, buckets in ((positives, series.positive), (negatives, series.negative)):
            if not magnitudes:
                continue
            low = _index_at_scale(magnitudes[0], series.scale)
            high = _index_at_scale(magnitudes[-1], series.scale)
            if buckets.counts:
                low, high = min(low, buckets.low), max(high, buckets.high)
            change = 0
            while (high >> change) - (low >> change) + 1 > self.max_size:
                change += 1
            if change:
                series.scale -= change
                series.positive.downscale(change)
                series.negative.downscale(change)
                low >>= change
                high >>= change
            buckets.add_sorted(magnitudes, series.scale, low, high)

    def _exemplars(self, series: _ExpSeries) -> list[Exemplar]:
        # The latest candidate per bucket, up to EXEMPLARS_PER_SERIES buckets.
        chosen: dict[int, Exemplar] = {}
        for value, time_unix_nano, span_id, trace_id in reversed(_drain(series.candidates)):
            index = _index_at_scale(abs(value), series.scale) if value else 0
            if index not in chosen and len(chosen) < EXEMPLARS_PER_SERIES:
                chosen[index] = Exemplar({}, value, time_unix_nano, span_id, trace_id)
        return list(chosen.values())

    def collect(self, now_ns: int) -> Metric | None:
        """Fold what was recorded and return the cumulative state (None if empty)."""
        points = []
        with self._lock:
            for series in list(self._series.values()):
                self._fold(series)
                if not series.count:
                    continue
                points.append(
                    ExponentialHistogramDataPoint(
                        attributes=series.attributes,
                        start_time_unix_nano=series.start_ns,
                        time_unix_nano=now_ns,
                        count=series.count,
                        sum=series.sum,
                        scale=series.scale,
                        zero_count=series.zero_count,
                        positive=series.positive.export(),
                        negative=series.negative.export(),
                        flags=0,
                        min=series.min,
                        max=series.max,
                        exemplars=self._exemplars(series),
                    )
                )
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=ExponentialHistogramData(
                data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
            ),
        )


class _ExplicitSeries:
    __slots__ = ("attributes", "buffer", "candidates", "counts", "max", "min", "start_ns", "sum")

    def __init__(self, attributes: Attributes, n_buckets: int) -> None:
        self.attributes = attributes
        self.buffer: deque[float] = deque()
        self.candidates: deque[tuple[float, int, int, int]] = deque(maxlen=_EXEMPLAR_CANDIDATES)
        self.start_ns = time_ns()
        self.counts = [0] * n_buckets
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf


class ExplicitHistogram(_Histogram[_ExplicitSeries]):
    """A histogram with fixed, upper-inclusive bucket boundaries per attribute set."""

    def __init__(
        self, name: str, unit: str, description: str, *, boundaries: Sequence[float]
    ) -> None:
        super().__init__(name, unit, description)
        self.boundaries = tuple(boundaries)

    def _make_series(self, attributes: Attributes) -> _ExplicitSeries:
        return _ExplicitSeries(attributes, len(self.boundaries) + 1)

    def _fold(self, series: _ExplicitSeries) -> None:
        values = _drain(series.buffer)
        if not values:
            return
        values.sort()
        series.sum += math.fsum(values)
        series.min = min(series.min, values[0])
        series.max = max(series.max, values[-1])
        below = 0
        for i, bound in enumerate(self.boundaries):
            at_or_below = bisect_right(values, bound, below)
            series.counts[i] += at_or_below - below
            below = at_or_below
        series.counts[-1] += len(values) - below

    def _exemplars(self, series: _ExplicitSeries) -> list[Exemplar]:
        # The latest candidate per bucket (as the SDK's aligned reservoir).
        chosen: dict[int, Exemplar] = {}
        for value, time_unix_nano, span_id, trace_id in reversed(_drain(series.candidates)):
            index = bisect_right(self.boundaries, value)
            if index > 0 and self.boundaries[index - 1] == value:
                index -= 1  # upper-inclusive
            chosen.setdefault(index, Exemplar({}, value, time_unix_nano, span_id, trace_id))
        return list(chosen.values())

    def collect(self, now_ns: int) -> Metric | None:
        """Fold what was recorded and return the cumulative state (None if empty)."""
        points = []
        with self._lock:
            for series in list(self._series.values()):
                self._fold(series)
                count = sum(series.counts)
                if not count:
                    continue
                points.append(
                    HistogramDataPoint(
                        attributes=series.attributes,
                        start_time_unix_nano=series.start_ns,
                        time_unix_nano=now_ns,
                        count=count,
                        sum=series.sum,
                        bucket_counts=list(series.counts),
                        explicit_bounds=self.boundaries,
                        min=series.min,
                        max=series.max,
                        exemplars=self._exemplars(series),
                    )
                )
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=HistogramData(
                data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
            ),
        )


class _SumSeries:
    __slots__ = ("attributes", "buffer", "total")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.buffer: deque[float] = deque()
        self.total: float = 0


class SumTable:
    """Cumulative sums per attribute set; `observe` is an SDK observable callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[Hashable, _SumSeries] = {}

    def add(self, amount: float, key: Hashable, attributes: Attributes) -> None:
        """Add `amount` to the series of `attributes` (identified by `key`)."""
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, attributes)
        buffer = series.buffer
        buffer.append(amount)
        if len(buffer) > FOLD_THRESHOLD:
            with self._lock:
                series.total += sum(_drain(buffer))

    def buffer(self, key: Hashable, attributes: Attributes) -> deque[float]:
        """The raw buffer of a series, for hot paths that append amounts directly."""
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key, attributes)
        return series.buffer

    def fold_pending(self) -> None:
        """Add every buffered amount to its total now."""
        with self._lock:
            for series in list(self._series.values()):
                series.total += sum(_drain(series.buffer))

    def _new_series(self, key: Hashable, attributes: Attributes) -> _SumSeries:
        with self._lock:
            series = self._series.get(key)
            if series is not None:
                return series
            if len(self._series) >= MAX_SERIES:
                key, attributes = _OVERFLOW_KEY, OVERFLOW_ATTRIBUTES
                series = self._series.get(key)
                if series is not None:
                    return series
            series = self._series[key] = _SumSeries(dict(attributes))
            return series

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Fold what was added and report every series' total."""
        with self._lock:
            observations = []
            for series in list(self._series.values()):
                series.total += sum(_drain(series.buffer))
                observations.append(Observation(series.total, series.attributes))
            return observations


class HistogramSet:
    """The histograms of one instrumentation, merged into each reader's collection."""

    def __init__(
        self,
        histograms: Sequence[ExponentialHistogram | ExplicitHistogram],
        *,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        self.histograms = tuple(histograms)
        self._resource = resource
        self._scope = scope

    def enable_exemplars(self) -> None:
        """Sample exemplars from sampled spans current at measurement time."""
        for histogram in self.histograms:
            histogram.exemplars_enabled = True

    def merge_into(self, data: MetricsData | None) -> MetricsData | None:
        """Return `data` with the histograms added to this instrumentation's scope."""
        now = time_ns()
        metrics = [m for h in self.histograms if (m := h.collect(now)) is not None]
        if not metrics:
            return data
        resource_metrics = list(data.resource_metrics) if data is not None else []
        for i, rm in enumerate(resource_metrics):
            scopes = list(rm.scope_metrics)
            for j, sm in enumerate(scopes):
                if sm.scope.name == self._scope.name:
                    scopes[j] = replace(sm, metrics=[*sm.metrics, *metrics])
                    break
            else:
                scopes.append(ScopeMetrics(scope=self._scope, metrics=metrics, schema_url=""))
            resource_metrics[i] = replace(rm, scope_metrics=scopes)
            break
        else:
            resource_metrics.append(
                ResourceMetrics(
                    resource=self._resource,
                    scope_metrics=[ScopeMetrics(scope=self._scope, metrics=metrics, schema_url="")],
                    schema_url="",
                )
            )
        return MetricsData(resource_metrics=resource_metrics)
