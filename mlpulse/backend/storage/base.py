"""The storage interfaces: what the query layer reads and what a database must keep.

- `MetricStore`: what the query layer, the alert engine and the routes see. The engine
  (`engine.py`: head + WAL + planner) implements it; ingest code and query code never
  see which database is behind it.
- `PersistentStore`: what the engine needs of a database: series, closed buckets, the
  head's checkpoints, delta intervals. `SQLiteStore` (sqlite.py) is the embedded one; a
  PostgreSQL store implements the same protocol.

Ingest decides what a delta is (`mlpulse.backend.ingest.temporality`, `storage.head`), the query
layer computes numbers (`mlpulse.backend.query.signals`); the stores only keep data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mlpulse.backend.storage.aggregate import Aggregate

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
    fingerprint: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once per key (ingest caches keys), stored for the series table.
        doc = [self.metric, self.kind, list(self.resource), self.scope, list(self.attributes)]
        fp = hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).digest()
        object.__setattr__(self, "fingerprint", fp)

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

    def __reduce__(self) -> tuple[Any, ...]:
        # Constructor arguments: fast to pickle (head checkpoints); old pickles still load.
        return PointState, (self.start_ns, self.time_ns, self.cumulative)


DeltaInterval = tuple[int, int, int]
"""An accepted delta point: (series id, `start_time_unix_nano`, `time_unix_nano`)."""


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric name known to the store, with its kind and unit."""

    name: str
    kind: Kind
    unit: str
    series: int


class PersistentStore(Protocol):
    """What the engine needs of a database: the closed buckets, series and checkpoints.

    `SQLiteStore` implements it on one file; a PostgreSQL store implements the same. The
    engine (`engine.py`) keeps the open buckets in memory and calls `save_checkpoint`
    every few seconds; everything else here is a read or retention.
    """

    def load_series(self) -> list[tuple[bytes, SeriesInfo]]:
        """Return every stored series with its fingerprint."""

    def load_head(self) -> list[tuple[int, bytes]]:
        """Return the head state blobs of the last checkpoint, by series id."""

    def load_legacy_states(self) -> dict[int, PointState]:
        """Return ingest states of a store written before the head existed (once)."""

    def wal_segment(self) -> int:
        """Return the last WAL segment the stored checkpoint covers (0: none)."""

    def save_checkpoint(
        self,
        *,
        new_series: Sequence[tuple[bytes, SeriesKey, int, float]],
        head: Sequence[tuple[int, bytes]],
        buckets: Mapping[tuple[int, int, int], Aggregate],
        maybe_stored: set[tuple[int, int, int]],
        intervals: Iterable[DeltaInterval],
        wal_segment: int | None,
        last_ingest: float | None,
        commit_guard: Callable[[], AbstractContextManager[None]],
        on_commit: Callable[[], None],
    ) -> None:
        """Write one checkpoint in one transaction; merge buckets into stored ones.

        The COMMIT runs inside `commit_guard()`, followed by `on_commit()`.
        """

    def seen_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> set[DeltaInterval]:
        """Return which of the given (series id, start ns, time ns) are stored."""

    def read(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        *,
        histograms: bool = True,
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Yield (series id, bucket start, aggregate) of stored buckets in [start, end)."""

    def first_bucket(
        self, series_ids: Sequence[int], resolution: int, start: float, end: float
    ) -> int | None:
        """Return the earliest stored bucket start in [start, end) among the series."""

    def created_at(self) -> float:
        """Return when this store was first created (epoch seconds)."""

    def last_ingest(self) -> float | None:
        """Return the last ingest time recorded by a checkpoint."""

    def delta_intervals_since(self) -> float:
        """Return since when every accepted delta interval is recorded."""

    def delete_before(self, resolution: int, before: float) -> int:
        """Delete buckets of a resolution that start before `before`; return how many."""

    def delete_orphan_series(self, keep: set[int]) -> set[int]:
        """Forget series with no stored bucket (except `keep`); return their ids."""

    def delete_delta_intervals_before(self, before: float) -> int:
        """Forget delta intervals whose point time is before `before`; return how many."""

    def ping(self) -> bool:
        """Return True when the store answers a trivial query."""

    def close(self) -> None:
        """Release connections."""


class MetricStore(Protocol):
    """What the query layer and the alert engine read: the engine (`engine.Engine`)."""

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

        One row per key. With `histograms=False` the histogram buckets and exemplars are
        left out (counts, sums, min/max/last stay).
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
        histograms."""

    def windows(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        step: int,
        origin: int,
        *,
        histograms: bool,
    ) -> dict[tuple[int, int], Aggregate]:
        """Aggregates per (series id, window start); closed windows come from a cache."""

    def window_totals(
        self,
        series_ids: Sequence[int],
        start: float,
        end: float,
        *,
        histograms: bool,
        align: int = 10,
    ) -> dict[int, Aggregate]:
        """One aggregate per series over buckets in [start aligned down, end), planned."""

    def closed_results(self, key: Any, step: int, origin: int) -> tuple[dict[int, Any], int, int]:
        """Kept results of closed windows for `key`: (by window start, sealed end, generation)."""

    def keep_results(self, key: Any, generation: int, results: dict[int, Any]) -> None:
        """Keep per-window results of windows that ended by the sealed end."""

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
        """Return since when (epoch seconds) every accepted delta interval is recorded."""

    def ping(self) -> bool:
        """Return True when the store answers a trivial query."""

    def close(self) -> None:
        """Release connections."""


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached or refused the connection (a clear one-line cause).

    Defined here, not beside the PostgreSQL store, so that catching it never imports the
    PostgreSQL driver (about 20 MiB of resident memory) into an embedded backend.
    """
