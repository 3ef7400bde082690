"""The hot path: bound handles append to buffers; each collection hands them to the SDK.

An SDK `Histogram.record` costs ~13 µs here (a Measurement, attribute cleaning, view
matching, hashing, a lock per reader); a buffered record costs a method call and a deque
append. A request records four or five values, so this module is what keeps the
instrumentation under 1 % of a prediction API's throughput. It is the only module that
knows about buffers:

* `BufferedHistogram.bind(attributes)` / `BufferedSum.bind(attributes)` return handles
  whose `record(value)` / `add(amount)` append to the series' buffer. A series is keyed
  by its (already normalised) attributes, so equal attributes always share one series.
* `HotPath.row(handles, count=...)` returns a `RowHandle` whose `record(row)` appends
  one tuple for several series at once (a prediction's duration, confidence, value and
  features: ten values for the price of one append) and counts the row into `count`;
  the rows are spilled into the series' buffers, each column sorted, at the start of
  each drain.
* Sums reach the SDK as observable counters: the callback adds the buffered amounts and
  reports the total, and the SDK turns it into each reader's temporality.
* Histograms reach export in one of two ways, both through public SDK API:

  - `BufferedMetricExporter` wraps a `MetricExporter` (the exporters `instrument_app`
    builds from ``OTEL_*``): at each export it drains the buffers, folds them into its
    own state in its own temporality and aggregation (`_aggregate`), and adds the
    points to the batch. Several exporters each keep their own state and exemplars.
  - `ReplaySink` records the drained values into real SDK histograms at the start of a
    collection, for readers the caller built (in-memory, pull readers) and whenever
    views are given: exact SDK semantics (temporality, views, exemplar filter and
    reservoirs, cardinality limits) at the SDK's cost per value, paid in the reader's
    thread.

The drain is triggered by the `mlpulse.instrumentation.series` gauge (the number of
series the hot path holds), whose callback the SDK runs at every collection. A buffer
that grows past `FOLD_THRESHOLD` between collections (a reader nobody reads) is drained
on the spot, so memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import islice
from time import time_ns
from typing import Any, Literal, Protocol

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import ExponentialHistogram as ExponentialHistogramData
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, get_current_span, set_span_in_context

from mlpulse_instrumentation._aggregate import (
    DEFAULT_BOUNDARIES,
    Attributes,
    ExplicitState,
    ExponentialState,
    Traced,
)

_log = logging.getLogger(__name__)

#: Attribute sets per instrument beyond which measurements go to one overflow series.
MAX_SERIES = 2000
OVERFLOW_ATTRIBUTES: Attributes = {"otel.metric.overflow": True}
#: Values buffered per series before they are drained without waiting for a collection.
FOLD_THRESHOLD = 20_000
#: The gauge whose callback drains the buffers at each collection.
SERIES_GAUGE = "mlpulse.instrumentation.series"

HistogramKind = Literal["exponential", "explicit"]
SeriesKey = tuple[tuple[str, Any], ...]


class _Buffer:
    """Values appended by handles; `take` swaps in a fresh deque instead of popping.

    Values spilled from rows arrive as whole lists (`add_chunk`): they are handed on as
    they are, not copied through the deque.
    """

    __slots__ = ("chunks", "chunks_lock", "retired", "retired_taken", "values")

    def __init__(self) -> None:
        self.values: deque[Any] = deque()
        # The deque taken last time: a handle that read `values` just before the swap
        # may still append to it, and that value is picked up at the next take.
        self.retired: deque[Any] = deque()
        self.retired_taken = 0
        self.chunks: list[list[Any]] = []
        # Chunks come from collection (or a threshold flush) only, not the request path.
        self.chunks_lock = threading.Lock()

    def add_chunk(self, values: list[Any]) -> None:
        with self.chunks_lock:
            self.chunks.append(values)

    def take(self) -> list[Any]:
        retired = self.retired
        if not self.values and not self.chunks and len(retired) == self.retired_taken:
            # Nothing new (most buffers at most drains: a collection drains several
            # times): nothing to swap. A value appended right now stays in `values`.
            return []
        # Checked by length first: islice would walk the whole retired deque to skip
        # what was taken already, and late values are rare.
        late = (
            list(islice(retired, self.retired_taken, None))
            if len(retired) > self.retired_taken
            else None
        )
        current = self.values
        self.values = deque()
        taken = list(current)  # one C call, atomic under the GIL
        self.retired, self.retired_taken = current, len(taken)
        if late:
            taken = late + taken
        if self.chunks:
            with self.chunks_lock:
                chunks, self.chunks = self.chunks, []
            for chunk in chunks:
                if taken:
                    taken += chunk
                else:  # a series fed by rows only: the spilled list as it is, no copy
                    taken = chunk
        return taken

    def __len__(self) -> int:
        # Appended values only: chunks live from a spill to the take right after it.
        return len(self.values)


class _HistogramSeries:
    __slots__ = ("attributes", "key", "traced", "values")

    def __init__(self, key: SeriesKey, attributes: Attributes) -> None:
        self.key = key
        self.attributes = attributes
        self.values = _Buffer()
        #: Measurements taken under a sampled span: exemplar candidates (and values).
        self.traced = _Buffer()


class HistogramHandle:
    """Records values into one series of a `BufferedHistogram`; get it with `bind`."""

    __slots__ = ("_exemplars", "_histogram", "_series")

    def __init__(
        self, histogram: BufferedHistogram, series: _HistogramSeries, exemplars: bool
    ) -> None:
        self._histogram = histogram
        self._series = series
        self._exemplars = exemplars

    @property
    def series(self) -> _HistogramSeries:
        """The series this handle records into."""
        return self._series

    def record(self, value: float) -> None:
        """Record one value (the current span, if sampled, becomes an exemplar candidate)."""
        series = self._series
        if self._exemplars:
            span = get_current_span().get_span_context()
            if span.trace_flags.sampled:
                series.traced.values.append((value, time_ns(), span))
                if len(series.traced) > FOLD_THRESHOLD:
                    self._histogram.hot_path.flush()
                return
        values = series.values.values
        values.append(value)
        if len(values) > FOLD_THRESHOLD:
            self._histogram.hot_path.flush()


class BufferedHistogram:
    """A histogram recorded through bound handles, delivered at collection."""

    def __init__(
        self,
        hot_path: HotPath,
        name: str,
        unit: str,
        description: str,
        *,
        kind: HistogramKind = "exponential",
        boundaries: Sequence[float] | None = None,
    ) -> None:
        self.hot_path = hot_path
        self.name = name
        self.unit = unit
        self.description = description
        self.kind = kind
        self.boundaries = tuple(boundaries) if boundaries is not None else None
        self._series: dict[SeriesKey, _HistogramSeries] = {}
        self._lock = threading.Lock()

    def bind(self, attributes: Attributes) -> HistogramHandle:
        """A handle recording into the series of `attributes` (bind once, record often)."""
        key = _series_key(attributes)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= MAX_SERIES:
                    key = _series_key(OVERFLOW_ATTRIBUTES)
                    attributes = OVERFLOW_ATTRIBUTES
                    series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _HistogramSeries(key, dict(attributes))
        return HistogramHandle(self, series, self.hot_path.exemplars)

    def series(self) -> list[_HistogramSeries]:
        with self._lock:
            return list(self._series.values())


class SumHandle:
    """Adds amounts to one series of a `BufferedSum`; get it with `bind`."""

    __slots__ = ("_series", "_sum")

    def __init__(self, owner: BufferedSum, series: _SumSeries) -> None:
        self._sum = owner
        self._series = series

    @property
    def series(self) -> _SumSeries:
        """The series this handle adds to."""
        return self._series

    def add(self, amount: float) -> None:
        """Add `amount` (non-negative for monotonic sums)."""
        values = self._series.values.values
        values.append(amount)
        if len(values) > FOLD_THRESHOLD:
            self._sum.fold()


class _SumSeries:
    __slots__ = ("attributes", "seen", "total", "values")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.values = _Buffer()
        self.total: float = 0
        # Bound but never added to (a model never served from cache): not reported.
        self.seen = False


class BufferedSum:
    """A sum recorded through bound handles, reported by an SDK observable counter."""

    def __init__(
        self,
        hot_path: HotPath,
        meter: Meter,
        name: str,
        unit: str,
        description: str,
        *,
        monotonic: bool,
    ):
        self._hot_path = hot_path
        self._series: dict[SeriesKey, _SumSeries] = {}
        self._lock = threading.Lock()
        if monotonic:
            meter.create_observable_counter(name, [self._observe], unit, description)
        else:
            meter.create_observable_up_down_counter(name, [self._observe], unit, description)

    def bind(self, attributes: Attributes) -> SumHandle:
        """A handle adding to the series of `attributes` (bind once, add often)."""
        key = _series_key(attributes)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= MAX_SERIES:
                    key = _series_key(OVERFLOW_ATTRIBUTES)
                    attributes = OVERFLOW_ATTRIBUTES
                    series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _SumSeries(dict(attributes))
        return SumHandle(self, series)

    def fold(self) -> None:
        """Add every buffered amount to its series' total."""
        self._hot_path.spill()  # amounts recorded through rows first
        with self._lock:
            for series in self._series.values():
                amounts = series.values.take()
                if amounts:
                    series.total += sum(amounts)
                    series.seen = True

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        self.fold()
        with self._lock:
            return [Observation(s.total, s.attributes) for s in self._series.values() if s.seen]

    def series_count(self) -> int:
        with self._lock:
            return len(self._series)


class RowHandle:
    """Records one value into each of several series with a single append; get it with
    `HotPath.row`.

    Column i of a row goes to the i-th handle given to `HotPath.row` (a histogram value
    or a sum's amount); None in a row, or a None handle, records nothing for that column.
    Each row adds 1 to `count` if given (a counter of rows costs no column: the number
    of rows is known when they are spilled). The current span, if sampled, is looked up
    once per row and becomes the exemplar candidate of each of its histogram values.
    """

    __slots__ = (
        "_columns", "_count", "_exemplars", "_hot_path", "_limit", "_rows", "_traced", "_width",
    )  # fmt: skip

    def __init__(
        self,
        hot_path: HotPath,
        handles: Sequence[HistogramHandle | SumHandle | None],
        count: SumHandle | None = None,
    ) -> None:
        self._hot_path = hot_path
        self._exemplars = hot_path.exemplars
        if count is not None and not handles:
            raise ValueError("a counted row needs at least one column (rows are counted by width)")
        self._count = count.series.values if count is not None else None
        # Per column: (the series' value buffer, its traced buffer or None for a sum).
        columns: list[tuple[_Buffer, _Buffer | None] | None] = []
        for handle in handles:
            if isinstance(handle, HistogramHandle):
                columns.append((handle.series.values, handle.series.traced))
            elif isinstance(handle, SumHandle):
                columns.append((handle.series.values, None))
            else:
                columns.append(None)
        self._columns = tuple(columns)
        self._width = len(columns)
        self._limit = FOLD_THRESHOLD * max(self._width, 1)
        self._rows = _Buffer()
        self._traced = _Buffer()

    def record(self, row: tuple[float | None, ...]) -> None:
        """Record `row` (one entry per handle, in order)."""
        if len(row) != self._width:  # a short row would shift every later value
            raise ValueError(f"row of {len(row)} values for {self._width} handles")
        if self._exemplars:
            span = get_current_span().get_span_context()
            if span.trace_flags.sampled:
                traced = self._traced.values
                traced.append((row, time_ns(), span))
                if len(traced) > FOLD_THRESHOLD:
                    self._hot_path.flush()
                return
        # Flat: the row's values go into the deque one after another (one C call, atomic
        # under the GIL), so no tuple per request outlives the request.
        values = self._rows.values
        values.extend(row)
        if len(values) > self._limit:
            self._hot_path.flush()

    def spill(self) -> None:
        """Append the recorded rows' values to their series' buffers (column by column)."""
        flat = self._rows.take()
        traced = self._traced.take()
        if not flat and not traced:
            return
        width = self._width
        if self._count is not None:
            self._count.add_chunk([len(flat) // max(width, 1) + len(traced)])
        for i, column in enumerate(self._columns):
            if column is None:
                continue
            values, traced_buffer = column
            taken = flat[i::width]
            if traced:
                if traced_buffer is None:  # a sum: amounts are amounts, traced or not
                    taken += [r[i] for r, _t, _s in traced]
                else:
                    candidates = [(r[i], t, s) for r, t, s in traced if r[i] is not None]
                    traced_buffer.add_chunk(candidates)
            taken = _sorted_present(taken)
            if taken:
                values.add_chunk(taken)


class Destination(Protocol):
    """Where drained histogram values go (an exporter's state, or the SDK)."""

    def deliver(
        self,
        histogram: BufferedHistogram,
        series: _HistogramSeries,
        values: list[float],
        traced: list[Traced],
    ) -> None: ...


class HotPath:
    """The buffered instruments of one instrumentation and where their values go."""

    def __init__(self, *, exemplars: bool) -> None:
        self.exemplars = exemplars
        self.histograms: list[BufferedHistogram] = []
        self.sums: list[BufferedSum] = []
        self._rows: list[RowHandle] = []
        self._destinations: list[Destination] = []
        self._lock = threading.Lock()
        self._spill_lock = threading.Lock()

    def observe_on(self, meter: Meter) -> None:
        """Register the series gauge, whose callback drains the buffers at collection."""
        meter.create_observable_gauge(
            SERIES_GAUGE,
            [self._observe],
            "{series}",
            "Attribute sets held by the buffered instruments (drains them at collection).",
        )

    def histogram(
        self,
        name: str,
        unit: str,
        description: str,
        *,
        kind: HistogramKind = "exponential",
        boundaries: Sequence[float] | None = None,
    ) -> BufferedHistogram:
        """Create a buffered histogram."""
        histogram = BufferedHistogram(
            self, name, unit, description, kind=kind, boundaries=boundaries
        )
        self.histograms.append(histogram)
        return histogram

    def sum(
        self, meter: Meter, name: str, unit: str, description: str, *, monotonic: bool = True
    ) -> BufferedSum:
        """Create a buffered sum, reported through an observable counter of `meter`."""
        table = BufferedSum(self, meter, name, unit, description, monotonic=monotonic)
        self.sums.append(table)
        return table

    def row(
        self,
        handles: Sequence[HistogramHandle | SumHandle | None],
        count: SumHandle | None = None,
    ) -> RowHandle:
        """A handle recording column i of each row into `handles[i]` (None: dropped),
        and adding 1 per row to `count`."""
        row = RowHandle(self, handles, count)
        with self._spill_lock:
            self._rows.append(row)
        return row

    def spill(self) -> None:
        """Move every recorded row into the buffers of its series."""
        with self._spill_lock:
            for row in self._rows:
                row.spill()

    def add_destination(self, destination: Destination) -> None:
        """Hand every drained histogram value to `destination` from now on."""
        with self._lock:
            self._destinations.append(destination)

    def flush(self) -> None:
        """Drain every histogram buffer into every destination (and fold every sum)."""
        self.spill()
        with self._lock:
            destinations = tuple(self._destinations)
            for histogram in self.histograms:
                for series in histogram.series():
                    values: list[float] = series.values.take()
                    traced: list[Traced] = series.traced.take()
                    if not values and not traced:
                        continue
                    for destination in destinations:
                        destination.deliver(histogram, series, values, traced)
        # Rows spill into sums too: fold them so a reader nobody reads stays bounded.
        for table in self.sums:
            table.fold()

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        self.flush()
        count = sum(len(h.series()) for h in self.histograms)
        count += sum(s.series_count() for s in self.sums)
        return (Observation(count),)


class ReplaySink:
    """Records drained values into real SDK histograms (readers built by the caller).

    Runs inside the SDK's collection (the series gauge's callback), so the values land in
    every reader's storage before that reader's points are taken; the SDK then applies
    views, temporality, exemplar filter and reservoirs as for any instrument.
    """

    def __init__(self, meter: Meter, histograms: Sequence[BufferedHistogram]) -> None:
        self._sdk: dict[str, Histogram] = {}
        for histogram in histograms:
            if histogram.boundaries is not None:
                self._sdk[histogram.name] = meter.create_histogram(
                    histogram.name,
                    histogram.unit,
                    histogram.description,
                    explicit_bucket_boundaries_advisory=list(histogram.boundaries),
                )
            else:
                self._sdk[histogram.name] = meter.create_histogram(
                    histogram.name, histogram.unit, histogram.description
                )

    def deliver(
        self,
        histogram: BufferedHistogram,
        series: _HistogramSeries,
        values: list[float],
        traced: list[Traced],
    ) -> None:
        sdk = self._sdk[histogram.name]
        attributes = series.attributes
        for value in values:
            sdk.record(value, attributes)
        for value, _time_ns, span in traced:
            # The span that was current at measurement, for the SDK's exemplar filter.
            context: Context = set_span_in_context(NonRecordingSpan(span))
            sdk.record(value, attributes, context=context)


AggregationChoice = Literal["exponential", "explicit"] | None


class BufferedMetricExporter(MetricExporter):
    """A `MetricExporter` that adds the hot path's histograms to every batch it exports.

    Each instance folds the drained values into its own state: cumulative or delta as
    its `preferred_temporality` says for `Histogram`, exponential or explicit buckets as
    `histogram_aggregation` says (None: each histogram's own kind), with its own
    exemplars. Everything else is the wrapped exporter's work.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        hot_path: HotPath,
        *,
        resource: Resource,
        scope: InstrumentationScope,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
        histogram_aggregation: AggregationChoice = None,
    ) -> None:
        super().__init__(
            preferred_temporality=preferred_temporality,
            preferred_aggregation=preferred_aggregation,
        )
        self.exporter = exporter
        self.temporality = (preferred_temporality or {}).get(
            SdkHistogram, AggregationTemporality.CUMULATIVE
        )
        self.histogram_aggregation = histogram_aggregation
        self._hot_path = hot_path
        self._resource = resource
        self._scope = scope
        self._states: dict[tuple[str, SeriesKey], tuple[Attributes, Any]] = {}
        self._start_ns = time_ns()
        self._lock = threading.Lock()
        hot_path.add_destination(self)

    def deliver(
        self,
        histogram: BufferedHistogram,
        series: _HistogramSeries,
        values: list[float],
        traced: list[Traced],
    ) -> None:
        merged = values + [t[0] for t in traced] if traced else values
        merged.sort()
        with self._lock:
            entry = self._states.get((histogram.name, series.key))
            if entry is None:
                entry = (series.attributes, self._new_state(histogram, self._start_ns))
                self._states[(histogram.name, series.key)] = entry
            entry[1].fold(merged, traced)

    def _new_state(self, histogram: BufferedHistogram, start_ns: int) -> Any:
        kind = self.histogram_aggregation or histogram.kind
        if kind == "exponential":
            return ExponentialState(start_ns)
        return ExplicitState(start_ns, boundaries=histogram.boundaries or DEFAULT_BOUNDARIES)

    def histogram_metrics(self) -> list[Metric]:
        """Drain the hot path and return this exporter's histogram metrics."""
        self._hot_path.flush()
        now = time_ns()
        delta = self.temporality is AggregationTemporality.DELTA
        by_name: dict[str, list[Any]] = {}
        with self._lock:
            for (name, _key), (attributes, state) in self._states.items():
                if state.count:
                    by_name.setdefault(name, []).append(state.point(attributes, now))
            if delta:
                # The next interval starts now; series reappear when they get values.
                self._states = {}
                self._start_ns = now
        metrics = []
        for histogram in self._hot_path.histograms:
            data_points = by_name.get(histogram.name)
            if not data_points:
                continue
            temporality = self.temporality
            exponential = (self.histogram_aggregation or histogram.kind) == "exponential"
            data: Any = (
                ExponentialHistogramData(
                    data_points=data_points, aggregation_temporality=temporality
                )
                if exponential
                else HistogramData(data_points=data_points, aggregation_temporality=temporality)
            )
            metrics.append(
                Metric(
                    name=histogram.name,
                    description=histogram.description,
                    unit=histogram.unit,
                    data=data,
                )
            )
        return metrics

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        merged = _merge(metrics_data, self.histogram_metrics(), self._resource, self._scope)
        return self.exporter.export(merged, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.exporter.shutdown(timeout_millis=timeout_millis, **kwargs)


def _sorted_present(values: list[Any]) -> list[Any]:
    """`values` without None, ascending (sorted in place when there is no None).

    The sort is needed anyway (the folds bisect sorted batches), and it finds a None
    for free: None cannot be compared with a number. A scan for None would cost as much
    as the sort itself (a rich comparison per value)."""
    try:
        values.sort()
    except TypeError:
        values = [v for v in values if v is not None]
        values.sort()
    else:
        if len(values) == 1 and values[0] is None:  # a single value is never compared
            return []
    return values


def _series_key(attributes: Mapping[str, Any]) -> SeriesKey:
    return tuple(sorted(attributes.items()))


def _merge(
    data: MetricsData,
    metrics: list[Metric],
    resource: Resource,
    scope: InstrumentationScope,
) -> MetricsData:
    """Return `data` with `metrics` added to the scope of this instrumentation."""
    if not metrics:
        return data
    resource_metrics = list(data.resource_metrics)
    for i, rm in enumerate(resource_metrics):
        scopes = list(rm.scope_metrics)
        for j, sm in enumerate(scopes):
            if sm.scope.name == scope.name:
                scopes[j] = replace(sm, metrics=[*sm.metrics, *metrics])
                break
        else:
            scopes.append(ScopeMetrics(scope=scope, metrics=metrics, schema_url=""))
        resource_metrics[i] = replace(rm, scope_metrics=scopes)
        break
    else:
        resource_metrics.append(
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")],
                schema_url="",
            )
        )
    return MetricsData(resource_metrics=resource_metrics)
