"""A prediction cache: LRU with a time to live, bounded by an estimate of its bytes."""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


def approx_size(obj: object) -> int:
    """Estimate the bytes held by `obj`: containers, slotted objects and dataclasses."""
    size = sys.getsizeof(obj)
    if isinstance(obj, str | bytes | int | float | bool) or obj is None:
        return size
    if isinstance(obj, tuple | list | frozenset | set):
        return size + sum(approx_size(item) for item in obj)
    if isinstance(obj, dict):
        return size + sum(approx_size(k) + approx_size(v) for k, v in obj.items())
    slots = getattr(type(obj), "__slots__", ())
    if slots:
        return size + sum(approx_size(getattr(obj, name, None)) for name in slots)
    return size


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters and size of a cache at one moment."""

    entries: int
    size_bytes: int
    max_bytes: int
    ttl_s: float
    hits: int
    misses: int
    evictions: int
    expirations: int

    @property
    def hit_rate(self) -> float | None:
        """Hits over lookups, or None before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


class TTLCache(Generic[K, V]):
    """Least-recently-used cache whose entries expire `ttl_s` after insertion.

    The bound is in bytes (an estimate by `approx_size` of key and value), so a cache
    of big entries holds fewer of them. Thread-safe. Pass `clock` to control time::

        cache: TTLCache[str, float] = TTLCache(max_bytes=1 << 20, ttl_s=60)
        cache.put("k", 1.0)
        cache.get("k")  # 1.0, counted as a hit
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl_s: float,
        clock: Clock = time.monotonic,
        size_of: Callable[[K, V], int] | None = None,
    ) -> None:
        if max_bytes <= 0 or ttl_s <= 0:
            raise ValueError("max_bytes and ttl_s must be positive")
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._size_of = size_of or (lambda key, value: approx_size(key) + approx_size(value))
        # key -> (value, expires_at, size); order = recency, oldest first.
        self._entries: OrderedDict[K, tuple[V, float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def get(self, key: K) -> V | None:
        """Return the live value for `key` (refreshing its recency) or None; counts it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                value, expires_at, size = entry
                if expires_at > self._clock():
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return value
                del self._entries[key]
                self._size -= size
                self.expirations += 1
            self.misses += 1
            return None

    def put(self, key: K, value: V) -> bool:
        """Store `value`, evicting least recently used entries; False if it can never fit."""
        size = self._size_of(key, value)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[2]
            now = self._clock()
            self._drop_expired_head(now)
            self._entries[key] = (value, now + self.ttl_s, size)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, _, evicted_size) = self._entries.popitem(last=False)
                self._size -= evicted_size
                self.evictions += 1
        return True

    def count_miss(self) -> None:
        """Count a lookup that skipped the cache (a bypass) as a miss."""
        with self._lock:
            self.misses += 1

    def _drop_expired_head(self, now: float) -> None:
        # The least recently used entries are the likeliest to have expired; dropping
        # them first keeps dead entries from holding the byte budget.
        while self._entries:
            key, (_, expires_at, size) = next(iter(self._entries.items()))
            if expires_at > now:
                return
            del self._entries[key]
            self._size -= size
            self.expirations += 1

    def clear(self) -> int:
        """Drop every entry; return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._size = 0
            return count

    def count(self, predicate: Callable[[K], bool]) -> int:
        """How many live entries have a key for which `predicate` holds."""
        with self._lock:
            now = self._clock()
            return sum(
                1 for key, (_, expires_at, _) in self._entries.items()
                if expires_at > now and predicate(key)
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Estimated bytes held by the entries."""
        return self._size

    def size(self) -> tuple[int, int]:
        """Return (entries, bytes) together, for the cache gauges."""
        with self._lock:
            return len(self._entries), self._size

    def stats(self) -> CacheStats:
        """Return a consistent snapshot of counters and size."""
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                size_bytes=self._size,
                max_bytes=self.max_bytes,
                ttl_s=self.ttl_s,
                hits=self.hits,
                misses=self.misses,
                evictions=self.evictions,
                expirations=self.expirations,
            )
