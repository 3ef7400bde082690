"""The storage engine: head + write-ahead log in front of a persistent store.

    engine = Engine.open_sqlite(Path(".data/mlpulse.db"))
    result = ingest(engine, request, limits)      # mlpulse.backend.ingest.pipeline
    rows = engine.read(series_ids, 60, start, end)

Write path: an export is flattened outside any lock; then, under the engine's lock, its
raw body is appended to the WAL and its points are applied to the head (series cache,
open buckets). That is all a request waits for: a few microseconds per point and one
`write` (plus an fsync with `synchronous=FULL`). Every `checkpoint_interval_s` a
background thread closes quiet buckets, rolls the WAL, and writes what changed (new
series, closed buckets, the dirty series' head state, accepted delta intervals) to the
store in one transaction; then it deletes the WAL segments the checkpoint covers. On
start, the store's last checkpoint is loaded and the WAL after it replayed, so a kill -9
at any moment loses nothing that got a 200.

Read path: the query layer sees one `MetricStore`. A read combines the store's buckets
with the head's open and not-yet-checkpointed buckets under a shared lock that a
checkpoint takes exclusively only for its COMMIT, so no bucket is seen twice or missed.
`window_totals` and `windows` plan a range over the resolutions (`planner.py`) and reuse
the results of closed windows until a late write bumps the generation.

The engine never sees SQL: the persistent store (`sqlite.py`; PostgreSQL later) keeps
series, closed buckets, head state and delta intervals, and implements `PersistentStore`.
"""

from __future__ import annotations

import gc
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlpulse.backend.storage.aggregate import Aggregate, merge
from mlpulse.backend.storage.base import (
    DeltaInterval,
    MetricInfo,
    PersistentStore,
    SeriesInfo,
    SeriesKey,
    StorageBusyError,
)
from mlpulse.backend.storage.head import BucketKey, Head, bucket_of
from mlpulse.backend.storage.heap import release_free_heap
from mlpulse.backend.storage.reads import TieredReads, scalar
from mlpulse.backend.storage.wal import WriteAheadLog

log = logging.getLogger(__name__)

ACTIVE_WINDOW_S = (
    3600.0  # a series counts against MLPULSE_MAX_SERIES this long after its last point
)
# Ingest allocates a few short-lived objects per point (samples, aggregates, bucket
# lists) while the head holds hundreds of thousands of long-lived ones. At the default
# thresholds (700, 10, 10) a young collection runs every few points and a full one, which
# walks the whole head, every ~70k allocations: 13% of B2's ingest CPU. These keep young
# collections cheap and rare and full ones rarer; the data has no reference cycles to wait
# for (the head's objects form trees).
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Raise the garbage collector's thresholds to GC_THRESHOLDS (never lower them)."""
    current = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS, strict=True)))


_RECORD = struct.Struct("<dB")  # WAL record header: server time, encoding (0 protobuf, 1 JSON)


class SeriesRegistry:
    """Every known series: id by fingerprint, info by id and metric; new ones to persist."""

    def __init__(self, rows: Iterable[tuple[bytes, SeriesInfo]]) -> None:
        self.ids: dict[bytes, int] = {}
        self.info: dict[int, SeriesInfo] = {}
        self.by_metric: dict[str, list[int]] = {}
        self.new: list[tuple[bytes, SeriesKey, int, float]] = []
        self.next_id = 1
        for fp, info in rows:
            self._add(fp, info)

    def _add(self, fp: bytes, info: SeriesInfo) -> None:
        self.ids[fp] = info.id
        self.info[info.id] = info
        self.by_metric.setdefault(info.metric, []).append(info.id)
        self.next_id = max(self.next_id, info.id + 1)

    def create(self, fp: bytes, key: SeriesKey, now: float) -> int:
        sid = self.next_id
        self._add(fp, info_of(sid, key))
        self.new.append((fp, key, sid, now))
        return sid

    def forget(self, sids: set[int]) -> None:
        for fp, sid in list(self.ids.items()):
            if sid in sids:
                del self.ids[fp]
                info = self.info.pop(sid)
                self.by_metric[info.metric].remove(sid)


_RESOURCES: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}


def info_of(sid: int, key: SeriesKey) -> SeriesInfo:
    """The query-side description of a series key (resource dicts shared, never mutated)."""
    resource = _RESOURCES.get(key.resource)
    if resource is None:
        if len(_RESOURCES) > 10_000:
            _RESOURCES.clear()
        resource = _RESOURCES[key.resource] = dict(key.resource)
    return SeriesInfo(
        id=sid,
        metric=key.metric,
        kind=key.kind,
        unit=key.unit,
        monotonic=key.monotonic,
        service=key.service,
        instance=key.instance,
        attributes=dict(key.attributes),
        resource=resource,
        scope=key.scope,
    )


class Engine(TieredReads):
    """The metrics store of the backend (see the module docstring)."""

    def __init__(
        self,
        store: PersistentStore,
        wal_dir: Path,
        *,
        sync: bool = False,
        checkpoint_interval_s: float = 2.0,
        checkpoint_backlog_s: float = 30.0,
        limits: Any = None,
        replay: Callable[[Engine, bytes, int, float], None] | None = None,
    ) -> None:
        super().__init__()
        tune_gc()
        self.store = store
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_backlog_s = checkpoint_backlog_s
        self._failing_since: float | None = None  # when checkpoints started to fail
        self.lock = threading.RLock()  # the head, the registry, the WAL
        self.limits = limits  # the ingest limits replay flattens with
        max_exemplars = getattr(limits, "max_exemplars", 4)
        self.head = Head(int(store.created_at() * 1e9), max_exemplars)
        self.registry = SeriesRegistry(store.load_series())
        self._flushing: dict[BucketKey, Aggregate] = {}
        self.intervals: set[DeltaInterval] = set()  # accepted since the last checkpoint
        self._flushing_intervals: set[DeltaInterval] = set()
        self._last_ingest = store.last_ingest()
        self._closed = False
        self._checkpoint_lock = threading.Lock()
        for sid, blob in store.load_head():
            self.head.load_entry(sid, blob)
        for sid, state in store.load_legacy_states().items():
            e = self.head.entry(sid)
            e.state, e.base = state, state.cumulative
            # Schema 1 wrote every point into its buckets: those of the last point exist.
            for res in (10, 60, 3600):
                e.set_written(res, bucket_of(state.time_ns, res))
            self.head.dirty.add(sid)
        self.wal = WriteAheadLog(wal_dir, sync=sync)
        replayed = 0
        if replay is not None:
            for payload in self.wal.replay(store.wal_segment()):
                now, encoding = _RECORD.unpack_from(payload)
                replay(self, payload[_RECORD.size :], encoding, now)
                replayed += 1
        if replayed:
            log.info("replayed %d export(s) from the write-ahead log", replayed)
        self.checkpoint()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlpulse-checkpoint", daemon=True)
        self._thread.start()

    # --- write path -------------------------------------------------------------------

    def log_export(self, body: bytes, encoding: int, now: float) -> None:
        """Append an export to the WAL (call with `lock` held, before applying it).

        Raises StorageBusyError (a retryable 503) when the database has refused the
        head's checkpoints for `checkpoint_backlog_s`: memory must not grow without bound.
        """
        failing = self._failing_since
        if failing is not None and time.monotonic() - failing > self.checkpoint_backlog_s:
            behind = time.monotonic() - failing
            raise StorageBusyError(f"database refused checkpoints for {behind:.0f} s")
        try:
            self.wal.append(_RECORD.pack(now, encoding) + body)
        except OSError as exc:
            raise StorageBusyError(f"write-ahead log: {exc}") from exc

    def resolve_series(
        self, keys: Sequence[SeriesKey], max_series: int, now: float
    ) -> list[int | None]:
        """Return the id of each series, creating new ones; None once `max_series` is hit."""
        out: list[int | None] = []
        ids = self.registry.ids
        active: int | None = None
        for key in keys:
            fp = key.fingerprint
            sid = ids.get(fp)
            if sid is None:
                if active is None:
                    active = self._active_series(now)
                if active >= max_series:
                    out.append(None)
                    continue
                sid = self.registry.create(fp, key, now)
                active += 1
            out.append(sid)
        return out

    def _active_series(self, now: float) -> int:
        """Series with a point in the last ACTIVE_WINDOW_S, plus any without a point yet."""
        since = int((now - ACTIVE_WINDOW_S) * 1e9)
        with_state = 0
        recent = 0
        for e in self.head.series.values():
            if e.state is not None:
                with_state += 1
                if e.state.time_ns >= since:
                    recent += 1
        return recent + len(self.registry.info) - with_state

    def seen_intervals(self, intervals: list[DeltaInterval]) -> set[DeltaInterval]:
        """Which of these delta intervals were accepted before (memory, then the store)."""
        out = {i for i in intervals if i in self.intervals or i in self._flushing_intervals}
        rest = [i for i in intervals if i not in out]
        if rest:
            out |= self.store.seen_delta_intervals(rest)
        return out

    def committed(self, at: float) -> None:
        """Note when an export that stored points was applied (for `last_ingest`)."""
        self._last_ingest = at

    # --- checkpoints ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.checkpoint_interval_s):
            try:
                self.checkpoint()
                release_free_heap()  # the checkpoint's temporaries: back to the OS
            except StorageBusyError as exc:
                log.warning("checkpoint postponed: %s", exc)
            except Exception:
                log.exception("checkpoint failed; will retry")

    def checkpoint(self) -> None:
        """Write what changed since the last checkpoint to the store; cut the WAL."""
        with self._checkpoint_lock:
            with self.lock:
                self.head.close_quiet(time.time())
                buckets, self.head.pending = self.head.pending, {}
                maybe, self.head.maybe_stored = self.head.maybe_stored, set()
                blobs = [
                    (sid, self.head.dump_entry(sid))
                    for sid in self.head.dirty
                    if sid in self.head.series
                ]
                self.head.dirty = set()
                new_series, self.registry.new = self.registry.new, []
                intervals, self.intervals = self.intervals, set()
                self._flushing = buckets
                self._flushing_intervals = intervals
                covered = self.wal.roll() if self.wal.bytes_written else None
                self.wal.bytes_written = 0
                last_ingest = self._last_ingest
            if not (buckets or blobs or new_series or intervals or covered):
                self._failing_since = None
                return

            def swap() -> None:
                with self.lock:
                    self._flushing = {}
                    self._flushing_intervals = set()

            try:
                self.store.save_checkpoint(
                    new_series=new_series,
                    head=blobs,
                    buckets=buckets,
                    maybe_stored=maybe,
                    intervals=intervals,
                    wal_segment=covered,
                    last_ingest=last_ingest,
                    commit_guard=self._rw.exclusive,
                    on_commit=swap,
                )
            except BaseException:
                # Nothing was written: keep it all for the next checkpoint.
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                with self.lock:
                    for key, agg in buckets.items():
                        cur = self.head.pending.get(key)
                        self.head.pending[key] = agg if cur is None else merge(cur, agg)
                    self.head.maybe_stored |= maybe | set(buckets)  # merge on the retry
                    self.head.dirty |= {sid for sid, _ in blobs}
                    self.registry.new[:0] = new_series
                    self.intervals |= intervals
                    self._flushing = {}
                    self._flushing_intervals = set()
                raise
            self._failing_since = None
            if covered is not None:
                self.wal.remove_through(covered)

    # --- read path (MetricStore) ------------------------------------------------------

    def _head_rows(
        self, sids: list[int], resolution: int, lo: int, hi: float
    ) -> list[tuple[int, int, Aggregate]]:
        return self._head_rows_of(sids, [(resolution, lo, hi)])[0]

    def _head_rows_of(
        self, sids: list[int], segments: Sequence[tuple[int, int, float]]
    ) -> list[list[tuple[int, int, Aggregate]]]:
        """The head's rows of each (resolution, lo, hi) segment, under one acquisition of
        the lock: one that meets an ingest holding it waits for it and then for the GIL."""
        out = []
        with self.lock:
            wanted = set(sids) if self._flushing else None
            for resolution, lo, hi in segments:
                rows = list(self.head.rows(sids, resolution, lo, hi))
                if wanted is not None:
                    rows.extend(
                        (sid, ts, agg)
                        for (res, sid, ts), agg in self._flushing.items()
                        if res == resolution and sid in wanted and lo <= ts < hi
                    )
                out.append(rows)
        return out

    def _read(
        self, sids: list[int], resolution: int, lo: int, hi: float, histograms: bool
    ) -> dict[tuple[int, int], Aggregate]:
        """Every bucket of the store and the head, merged per (series, bucket start)."""
        head = self._head_rows(sids, resolution, lo, hi)
        return self._with_store(sids, resolution, lo, hi, histograms, head)

    def _read_segments(
        self, sids: list[int], segments: Sequence[tuple[int, int, float]], histograms: bool
    ) -> list[dict[tuple[int, int], Aggregate]]:
        heads = self._head_rows_of(sids, segments)
        return [
            self._with_store(sids, res, lo, hi, histograms, head)
            for (res, lo, hi), head in zip(segments, heads, strict=True)
        ]

    def _with_store(
        self,
        sids: list[int],
        resolution: int,
        lo: int,
        hi: float,
        histograms: bool,
        head: list[tuple[int, int, Aggregate]],
    ) -> dict[tuple[int, int], Aggregate]:
        """The store's buckets of a segment merged with the head's rows of it."""
        out: dict[tuple[int, int], Aggregate] = {}
        for sid, ts, agg in self.store.read(sids, resolution, lo, hi, histograms=histograms):
            out[(sid, ts)] = agg
        for sid, ts, agg in head:
            if not histograms:
                agg = scalar(agg)
            cur = out.get((sid, ts))
            out[(sid, ts)] = agg if cur is None else merge(cur, agg)
        return out

    def _generation(self) -> int:
        return self.cache.generation(self.head.late_writes)

    def series(self, metric: str, filters: Mapping[str, str] | None = None) -> list[SeriesInfo]:
        """Return the series of a metric whose labels match every filter."""
        # Without the lock. A series is added as info first, then its id appended to its
        # metric's list; retention removes them (each step atomic under the GIL), so a
        # copy of the list and lookups that skip a removed id see the registry as it was
        # a moment before or after. Under the lock this was most of a read's lock
        # acquisitions (about 100 per snapshot), and each one that met an ingest holding
        # the lock waited for the lock and then for the GIL: B6's readers spent ~80 % of
        # their time there while one writer posted.
        registry = self.registry
        ids = list(registry.by_metric.get(metric, ()))
        infos = [s for s in map(registry.info.get, ids) if s is not None]
        if filters:
            infos = [s for s in infos if all(s.label(k) == v for k, v in filters.items())]
        return sorted(infos, key=lambda s: s.id)

    def first_bucket(
        self, series_ids: Sequence[int], resolution: int, start: float, end: float
    ) -> int | None:
        """Return the earliest bucket start in [start, end) among the series, if any."""
        sids = list(series_ids)
        with self._rw.shared():
            first = self.store.first_bucket(sids, resolution, start, end)
            for _, ts, _ in self._head_rows(sids, resolution, int(start // 1), end):
                first = ts if first is None else min(first, ts)
        return first

    def metrics(self) -> list[MetricInfo]:
        """Return every metric name with its kind, unit and series count."""
        with self.lock:
            groups: dict[tuple[str, str, str], int] = {}
            for info in self.registry.info.values():
                k = (info.metric, info.kind, info.unit)
                groups[k] = groups.get(k, 0) + 1
        return [MetricInfo(m, kind, unit, n) for (m, kind, unit), n in sorted(groups.items())]  # type: ignore[arg-type]

    def created_at(self) -> float:
        """Return when this store was first created (epoch seconds)."""
        return self.store.created_at()

    def last_ingest(self) -> float | None:
        """Return when the last export with accepted points was applied (epoch seconds)."""
        return self._last_ingest

    def delta_intervals_since(self) -> float:
        """Return since when every accepted delta interval is recorded (0: always)."""
        return self.store.delta_intervals_since()

    # --- maintenance ------------------------------------------------------------------

    def delete_before(self, resolution: int, before: float) -> int:
        """Delete buckets of a resolution that start before `before` (head included)."""
        with self.lock:
            self.head.close_before(before)
        self.checkpoint()  # what retention is about is in the database first
        with self._rw.exclusive():
            n = self.store.delete_before(resolution, before)
            self.cache.clear()
        return n

    def delete_orphan_series(self) -> int:
        """Forget series with no bucket left anywhere (stored or in the head)."""
        self.checkpoint()
        with self._rw.exclusive(), self.lock:
            busy = {
                sid for sid, e in self.head.series.items() if e.open_ts is not None or e.rolling()
            }
            busy |= {sid for _, sid, _ in self.head.pending}
            gone = self.store.delete_orphan_series(keep=busy)
            if gone:
                self.registry.forget(gone)
                for sid in gone:
                    self.head.series.pop(sid, None)
                self.cache.clear()
        return len(gone)

    def delete_delta_intervals_before(self, before: float) -> int:
        """Forget stored delta intervals whose point time is before `before`."""
        return self.store.delete_delta_intervals_before(before)

    def ping(self) -> bool:
        """Return True when the persistent store answers."""
        return self.store.ping()

    def close(self) -> None:
        """Checkpoint everything and release the store and the WAL."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=10)
        with self.lock:  # a clean stop leaves every bucket in the database
            self.head.close_before(float("inf"))
        try:
            self.checkpoint()
        except Exception:
            log.exception("final checkpoint failed; the WAL keeps the data")
        self.wal.close()
        self.store.close()

    def stats(self) -> dict[str, Any]:
        """Sizes of the head, for /health and benchmarks."""
        with self.lock:
            return {
                "series": len(self.registry.info),
                "head_series": len(self.head.series),
                "pending_buckets": len(self.head.pending),
                "wal_segment": self.wal.segment,
            }
