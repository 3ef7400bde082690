"""The storage interface: what ingest writes and the query layer reads.

`SQLiteStore` (sqlite.py) implements it on one file; a PostgreSQL store can implement the
same two protocols. Storage is deliberately dumb: ingest decides what a delta is
(`backend.ingest.temporality`) and the query layer computes numbers
(`backend.query.signals`); the store keeps series, per-bucket aggregates, the
per-series ingest state and the accepted delta intervals, and makes one export request
one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from backend.storage.aggregate import Aggregate

Kind = Literal["sum", "gauge", "histogram", "exp_histogram"]
RESOLUTIONS: tuple[int, ...] = (10, 60, 3600)  # seconds per bucket, finest first


class StorageBusyError(Exception):
    """The store cannot take the write now (locked, full); the client should retry."""


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """What identifies a series: resource + scope + metric + point attributes."""

    metric: str
    kind: Kind
    unit: str
    monotonic: bool
    resource: tuple[tuple[str, str], ...]
    scope: str
    attributes: tuple[tuple[str, str], ...]

    @property
    def fingerprint(self) -> bytes:
        doc = [self.metric, self.kind, list(self.resource), self.scope, list(self.attributes)]
        return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).digest()

    @property
    def service(self) -> str:
        return dict(self.resource).get("service.name", "")

    @property
    def instance(self) -> str:
        return dict(self.resource).get("service.instance.id", "")


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A stored series, as the query layer sees it."""

    id: int
    metric: str
    kind: Kind
    unit: str
    monotonic: bool
    service: str
    instance: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    resource: Mapping[str, str] = field(default_factory=dict)
    scope: str = ""

    def label(self, key: str) -> str | None:
        """Return a label by group key (`service`, `instance`) or attribute name."""
        if key == "service":
            return self.service
        if key == "instance":
            return self.instance
        value = self.attributes.get(key)
        return value if value is not None else self.resource.get(key)


@dataclass(slots=True)
class PointState:
    """The last point accepted for a series, to turn cumulative values into deltas.

    `cumulative` is the last cumulative snapshot (None for delta series and gauges, which
    only need `time_ns`: gauges refuse points not newer than it; delta series look late
    points up among their recorded intervals).
    """

    start_ns: int
    time_ns: int
    cumulative: Aggregate | None = None


DeltaInterval = tuple[int, int, int]
"""An accepted delta point: (series id, `start_time_unix_nano`, `time_unix_nano`)."""


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric name known to the store, with its kind and unit."""

    name: str
    kind: Kind
    unit: str
    series: int


class WriteTransaction(Protocol):
    """The operations of one export request, committed together or not at all."""

    def resolve_series(self, keys: Sequence[SeriesKey], max_series: int) -> list[int | None]:
        """Return the id of each series, creating new ones; None once `max_series` is hit."""

    def load_states(self, series_ids: Iterable[int]) -> dict[int, PointState]:
        """Return the stored ingest state of the given series (absent when never seen)."""

    def save_states(self, states: Mapping[int, PointState]) -> None:
        """Store the ingest state of the given series."""

    def merge_aggregates(
        self, rows: Mapping[tuple[int, int, int], Aggregate], max_exemplars: int
    ) -> None:
        """Merge each (resolution, series id, bucket start) aggregate into what is stored."""

    def seen_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> set[DeltaInterval]:
        """Return which of the given (series id, start ns, time ns) were accepted before.

        One lookup for the whole batch: ingest calls it once per export, only for the
        delta points that are not newer than their series' last accepted point.
        """

    def record_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> None:
        """Remember accepted delta intervals (already recorded ones are left as they are)."""

    def record_ingest(self, points: int, at: float) -> None:
        """Note that an export with `points` accepted points committed at `at`."""


class MetricStore(Protocol):
    """A metrics store: series, aggregates per bucket and resolution, ingest state."""

    def write(self) -> AbstractContextManager[WriteTransaction]:
        """Open a write transaction (raises StorageBusyError when the store is busy)."""

    def series(self, metric: str, filters: Mapping[str, str] | None = None) -> list[SeriesInfo]:
        """Return the series of a metric whose labels match every filter."""

    def read(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        *,
        histograms: bool = True,
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Yield (series id, bucket start, aggregate) for buckets starting in [start, end).

        With `histograms=False` the histogram buckets and exemplars are left out (counts,
        sums, min/max/last stay), which is much cheaper for count and rate queries.
        """

    def first_bucket(
        self, series_ids: Sequence[int], resolution: int, start: float, end: float
    ) -> int | None:
        """Return the earliest bucket start in [start, end) among the series, if any."""

    def read_windows(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        step: int,
        origin: int,
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Yield (series id, window start, aggregate) of buckets starting in [start, end),
        merged per series and window [origin + k*step, origin + (k+1)*step), without
        histograms: count and sum added, min/max kept, `last` of the latest point."""

    def metrics(self) -> list[MetricInfo]:
        """Return every metric name with its kind, unit and series count."""

    def created_at(self) -> float:
        """Return when this store was first created (epoch seconds)."""

    def last_ingest(self) -> float | None:
        """Return when the last export committed (epoch seconds), or None."""

    def delete_before(self, resolution: int, before: float) -> int:
        """Delete buckets of a resolution that start before `before`; return how many."""

    def delete_orphan_series(self) -> int:
        """Forget series with no bucket left at any resolution; return how many."""

    def delete_delta_intervals_before(self, before: float) -> int:
        """Forget delta intervals whose point time is before `before`; return how many."""

    def delta_intervals_since(self) -> float:
        """Return since when (epoch seconds) every accepted delta interval is recorded.

        A store created before interval records existed knows nothing of the delta
        points it accepted earlier, so ingest must not take late points older than that.
        """

    def ping(self) -> bool:
        """Return True when the store answers a trivial query."""

    def close(self) -> None:
        """Release connections."""
