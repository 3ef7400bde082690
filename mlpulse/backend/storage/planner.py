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


def _ceil(t: float, res: int) -> int:
    return -int(-t // res) * res


def _floor(t: float, res: int) -> int:
    return int(t // res) * res


def plan(lo: int, hi: float) -> list[tuple[int, int, float]]:
    """Cover buckets starting in [lo, hi) with (resolution, start, end) segments."""
    h0, h1 = _ceil(lo, 3600), _floor(hi, 3600)
    if h1 > h0:
        return [*_minutes(lo, h0), (3600, h0, h1), *_minutes(h1, hi)]
    return _minutes(lo, hi)


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


class ResultCache:
    """A bounded LRU of query results, valid for one generation."""

    def __init__(self, max_entries: int = 2048) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, tuple[int, Any]] = OrderedDict()
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
        """Store a result of a closed segment or window set."""
        self._entries[key] = (generation, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop everything (retention deleted buckets)."""
        self._entries.clear()
        self._epoch += 1
