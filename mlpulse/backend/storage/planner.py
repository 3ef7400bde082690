"""The read planner: which resolution serves which part of a range; the result cache.

A window [lo, hi) (lo a multiple of 10 s) is covered exactly by whole hours from the 1 h
rollup, whole minutes from the 1 min rollup and 10 s buckets at the edges:

    lo        ⌈lo⌉min     ⌈lo⌉h                ⌊hi⌋h     ⌊hi⌋min     hi
    |-- 10 s --|-- 1 min --|------- 1 h --------|-- 1 min --|-- 10 s --|

so a 24 h summary reads about 24 + 2·60 + 2·6 buckets per series instead of 8 640. The
rollups are exact (every point is merged into its bucket at every resolution), so the
plan changes nothing but the cost.

`ResultCache` keeps the results of closed segments and windows (those no ordinary write
can change any more), keyed by what was asked and valid for one generation: a late write
into a closed bucket, or retention, starts a new generation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mlpulse.backend.storage.aggregate import Aggregate


def _ceil(t: float, res: int) -> int:
    return -int(-t // res) * res


def _floor(t: float, res: int) -> int:
    return int(t // res) * res


def plan(lo: int, hi: float, sealed: float | None = None) -> list[tuple[int, int, float]]:
    """Cover buckets starting in [lo, hi) with (resolution, start, end) segments.

    With `sealed` (the end of what no ordinary write can change), a segment that
    straddles it is cut there (at its own resolution's grid): its closed part can then
    be cached. A sliding window's newest minutes are never closed, and without the cut
    its long 1 min segment was read again on every request.
    """
    h0, h1 = _ceil(lo, 3600), _floor(hi, 3600)
    if h1 > h0:
        segments = [*_minutes(lo, h0), (3600, h0, h1), *_minutes(h1, hi)]
    else:
        segments = _minutes(lo, hi)
    if sealed is None:
        return segments
    out: list[tuple[int, int, float]] = []
    for res, seg_lo, seg_hi in segments:
        cut = _floor(sealed, res)
        if seg_lo < cut < seg_hi:
            out += [(res, seg_lo, cut), (res, cut, seg_hi)]
        else:
            out.append((res, seg_lo, seg_hi))
    return out


def _minutes(lo: int, hi: float) -> list[tuple[int, int, float]]:
    m0, m1 = _ceil(lo, 60), _floor(hi, 60)
    if m1 <= m0:
        return [(10, lo, hi)] if hi > lo else []
    out: list[tuple[int, int, float]] = []
    if m0 > lo:
        out.append((10, lo, m0))
    out.append((60, m0, m1))
    if hi > m1:
        out.append((10, m1, hi))
    return out


# What one cached aggregate costs, roughly (bytes): the object and its fields, plus each
# histogram bucket count (a list slot and, mostly, an int object of its own).
_AGGREGATE_BYTES = 200
_BUCKET_BYTES = 36


def _weight(value: Any) -> int:
    """Approximate bytes a cached result holds (its aggregates and their buckets).

    Results are dicts, tuples and lists of aggregates (or of small values); an entry's
    count alone says nothing: one entry may hold a histogram per series of 10k series.
    """
    if isinstance(value, Aggregate):
        n = 0
        if value.exponential is not None:
            n = len(value.exponential.pos_counts) + len(value.exponential.neg_counts)
        elif value.explicit is not None:
            n = len(value.explicit.counts)
        return _AGGREGATE_BYTES + _BUCKET_BYTES * n
    if isinstance(value, dict):
        return 64 + sum(_weight(v) for v in value.values())
    if isinstance(value, tuple | list):
        return 64 + sum(_weight(v) for v in value)
    return 64


class ResultCache:
    """An LRU of query results, valid for one generation, bounded in entries and bytes.

    The byte bound is what keeps memory flat: with 10k series an alert evaluation's
    sliding window caches a few MiB per entry, so an entry count alone let the cache
    grow by ~30 MiB a minute (B7).
    """

    def __init__(self, max_entries: int = 2048, max_bytes: int = 24 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[int, Any, int]] = OrderedDict()
        self._bytes = 0
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    def generation(self, late_writes: int) -> int:
        """The current generation: late writes and `clear()` both move it on."""
        return late_writes * 1_000_003 + self._epoch

    def get(self, key: Any, generation: int) -> Any:
        """Return the result stored for `key` in this generation, or None."""
        hit = self._entries.get(key)
        if hit is None or hit[0] != generation:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return hit[1]

    def put(self, key: Any, generation: int, value: Any) -> None:
        """Store a result of a closed segment or window set (not one beyond the bound)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        size = _weight(value)
        if size > self.max_bytes // 4:
            return  # one result would evict most others: recomputing it is cheaper
        self._entries[key] = (generation, value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    @property
    def bytes(self) -> int:
        """Approximate bytes the cached results hold."""
        return self._bytes

    def clear(self) -> None:
        """Drop everything (retention deleted buckets)."""
        self._entries.clear()
        self._bytes = 0
        self._epoch += 1
