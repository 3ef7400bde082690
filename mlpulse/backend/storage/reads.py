"""The tiered read path both engines share: planned ranges, windows, the result cache.

A store engine (the embedded `engine.Engine`, the shared `postgres.PostgresEngine`)
subclasses `TieredReads` and says how to read the buckets of one resolution
(`_read`) and which generation its cached results belong to (`_generation`: a late
write or retention moves it on). Everything else here is the same for both:

- `window_totals`: one aggregate per series over a range, planned as whole hours at 1 h,
  whole minutes at 1 min and 10 s edges (`planner.plan`); closed segments cached;
- `windows`: aggregates per series and step window; closed windows cached;
- `closed_results` / `keep_results`: what the query layer computed from closed windows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from mlpulse.backend.storage.aggregate import Aggregate, merge_all
from mlpulse.backend.storage.head import CLOSE_GRACE_S
from mlpulse.backend.storage.locks import ReadWriteLock
from mlpulse.backend.storage.planner import ResultCache, plan
from mlpulse.backend.storage.rollup import regroup

Rows = Iterator[tuple[int, int, Aggregate]]


class TieredReads:
    """The `MetricStore` read methods over a subclass's `_read` (see the module docstring)."""

    def __init__(self) -> None:
        self._rw = ReadWriteLock()  # readers shared; a checkpoint's COMMIT, retention: exclusive
        self.cache = ResultCache()

    def _read(
        self, sids: list[int], resolution: int, lo: int, hi: float, histograms: bool
    ) -> dict[tuple[int, int], Aggregate]:
        """Every bucket of `resolution` starting in [lo, hi), one per (series, start)."""
        raise NotImplementedError

    def _read_segments(
        self, sids: list[int], segments: Sequence[tuple[int, int, float]], histograms: bool
    ) -> list[dict[tuple[int, int], Aggregate]]:
        """`_read` of each (resolution, lo, hi) segment (an engine may gather its head's
        part of them at once)."""
        return [self._read(sids, res, lo, hi, histograms) for res, lo, hi in segments]

    def _generation(self) -> int:
        """The generation cached results are valid for."""
        raise NotImplementedError

    def read(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        *,
        histograms: bool = True,
    ) -> Rows:
        """Yield (series id, bucket start, aggregate) for buckets starting in [start, end)."""
        with self._rw.shared():
            rows = self._read(list(series_ids), resolution, int(start // 1), end, histograms)
        for (sid, ts), agg in sorted(rows.items()):
            yield sid, ts, agg if histograms else scalar(agg)

    def read_windows(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        step: int,
        origin: int,
    ) -> Rows:
        """Scalar aggregates merged per series and step window (see `MetricStore`)."""
        for (sid, w), agg in sorted(
            self.windows(series_ids, resolution, start, end, step, origin, histograms=False).items()
        ):
            yield sid, w, agg

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
        """Aggregates per (series, window [origin + k*step, +step)) of buckets in [start, end).

        Windows that closed (ended before the head's close grace) come from the result
        cache when it has them; the rest is read from the store and the head.
        """
        if step <= 0 or start < origin:
            raise ValueError("need step > 0 and start >= origin")
        sids = sorted(set(series_ids))
        lo = int(start // 1)
        sealed = self._sealed(step, origin)
        grid_end = origin + int((end - origin) // step) * step  # windows ending by `end`
        aligned = (lo - origin) % step == 0
        out: dict[tuple[int, int], Aggregate] = {}
        with self._rw.shared():
            gen = self._generation()
            key = ("w", tuple(sids), resolution, step, origin % step, histograms)
            cached = self.cache.get(key, gen) if aligned else None
            todo_lo = lo
            if cached is not None and cached[1] <= lo < cached[2]:
                have, c_lo, c_hi = cached
                usable = min(c_hi, grid_end)
                for (sid, w), agg in have.items():
                    if lo <= w and w + step <= usable:
                        out[(sid, w)] = agg
                todo_lo = max(lo, usable)
            else:
                cached = None
            rows = self._read(sids, resolution, todo_lo, end, histograms)
            fresh = regroup(((sid, ts, agg) for (sid, ts), agg in rows.items()), step, origin)
            out.update(fresh)
            new_hi = min(sealed, grid_end)
            if aligned and new_hi > todo_lo:
                keep = {k: v for k, v in fresh.items() if k[1] + step <= new_hi}
                c_lo = lo
                if cached is not None:
                    c_lo = cached[1]
                    floor = lo - 2 * 86_400  # forget windows far behind the newest reader
                    keep.update({k: v for k, v in cached[0].items() if k[1] >= floor})
                    c_lo = max(c_lo, floor)
                self.cache.put(key, gen, (keep, c_lo, new_hi))
        return out

    def window_totals(
        self,
        series_ids: Sequence[int],
        start: float,
        end: float,
        *,
        histograms: bool,
        align: int = 10,
    ) -> dict[int, Aggregate]:
        """One aggregate per series over buckets in [start aligned down to `align`, end).

        The planner covers the range with whole hours at 1 h, whole minutes at 1 min and
        10 s buckets at the edges; closed segments come from the result cache.
        """
        sids = sorted(set(series_ids))
        lo = int(start // align) * align
        sealed = self._sealed(10, 0)
        parts: dict[int, list[Aggregate]] = {}
        with self._rw.shared():
            gen = self._generation()
            whole = ("T", tuple(sids), lo, end, histograms)
            if end <= sealed:  # a closed window (a fixed past range): maybe asked before
                done: dict[int, Aggregate] | None = self.cache.get(whole, gen)
                if done is not None:
                    return done
            segments = plan(lo, end, sealed)
            done_by: list[dict[int, Aggregate] | None] = []
            for res, seg_lo, seg_hi in segments:
                key = ("t", tuple(sids), res, seg_lo, seg_hi, histograms)
                done_by.append(self.cache.get(key, gen) if seg_hi <= sealed else None)
            todo = [seg for seg, got in zip(segments, done_by, strict=True) if got is None]
            fresh = iter(self._read_segments(sids, todo, histograms) if todo else [])
            for (res, seg_lo, seg_hi), got in zip(segments, done_by, strict=True):
                if got is None:
                    per: dict[int, list[Aggregate]] = {}
                    for (sid, _), agg in next(fresh).items():
                        per.setdefault(sid, []).append(agg)
                    got = {sid: merge_all(aggs) for sid, aggs in per.items()}
                    if seg_hi <= sealed:
                        key = ("t", tuple(sids), res, seg_lo, seg_hi, histograms)
                        self.cache.put(key, gen, got)
                for sid, agg in got.items():
                    parts.setdefault(sid, []).append(agg)
            out = {
                sid: aggs[0] if len(aggs) == 1 else merge_all(aggs) for sid, aggs in parts.items()
            }
            if end <= sealed:
                self.cache.put(whole, gen, out)
        return out

    def closed_results(self, key: Any, step: int, origin: int) -> tuple[dict[int, Any], int, int]:
        """Results a caller kept for closed windows of `key`: (by window start, sealed, gen).

        Windows ending by `sealed` can be kept with `keep_results`; a late write or
        retention starts a new generation and drops them.
        """
        gen = self._generation()
        have = self.cache.get(("r", key), gen)
        return (dict(have) if have else {}), self._sealed(step, origin), gen

    def keep_results(self, key: Any, generation: int, results: dict[int, Any]) -> None:
        """Keep per-window results of closed windows (see `closed_results`)."""
        self.cache.put(("r", key), generation, results)

    def _sealed(self, step: int, origin: int) -> int:
        """The end of the newest window that no ordinary write can change any more."""
        horizon = time.time() - CLOSE_GRACE_S - 10
        return int(origin + ((horizon - origin) // step) * step)


def scalar(agg: Aggregate) -> Aggregate:
    """The aggregate without histogram buckets and exemplars (counts, sums, min/max/last)."""
    if agg.explicit is None and agg.exponential is None and not agg.exemplars:
        return agg
    return Aggregate(agg.count, agg.sum, agg.min, agg.max, agg.last, agg.last_ns)
