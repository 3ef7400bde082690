"""TTLCache: LRU eviction by bytes, TTL expiry on an injected clock, hit/miss counts."""

from __future__ import annotations

import pytest

from mlpulse.mlapi.cache import TTLCache, approx_size
from mlpulse.mlapi.models import Prediction, ScanFeatures


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fixed_size_cache(max_bytes: int, clock: FakeClock | None = None) -> TTLCache[str, int]:
    return TTLCache(
        max_bytes=max_bytes, ttl_s=60.0, clock=clock or FakeClock(), size_of=lambda k, v: 100
    )


def test_least_recently_used_entry_is_evicted_when_bytes_run_out() -> None:
    cache = _fixed_size_cache(max_bytes=300)
    for key in ("a", "b", "c"):
        cache.put(key, 1)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("d", 4)
    assert cache.get("b") is None
    assert [cache.get(k) for k in ("a", "c", "d")] == [1, 1, 4]
    stats = cache.stats()
    assert (stats.entries, stats.size_bytes, stats.evictions) == (3, 300, 1)


def test_bigger_entries_leave_room_for_fewer() -> None:
    cache: TTLCache[str, str] = TTLCache(
        max_bytes=1000, ttl_s=60.0, size_of=lambda key, value: len(value)
    )
    cache.put("small-1", "x" * 100)
    cache.put("small-2", "x" * 100)
    cache.put("big", "x" * 950)  # 1150 bytes: both small entries must go
    assert len(cache) == 1
    assert cache.size_bytes == 950
    assert cache.stats().evictions == 2
    assert cache.get("big") == "x" * 950


def test_an_entry_larger_than_the_bound_is_refused() -> None:
    cache: TTLCache[str, str] = TTLCache(max_bytes=10, ttl_s=60.0, size_of=lambda k, v: 11)
    assert cache.put("k", "v") is False
    assert len(cache) == 0


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = _fixed_size_cache(max_bytes=1000, clock=clock)
    cache.put("k", 7)
    clock.now += 59.9
    assert cache.get("k") == 7
    clock.now += 0.1
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.entries) == (1, 1, 1, 0)
    assert stats.size_bytes == 0


def test_expired_entries_free_their_bytes_on_the_next_put() -> None:
    clock = FakeClock()
    cache = _fixed_size_cache(max_bytes=300, clock=clock)
    cache.put("old-1", 1)
    cache.put("old-2", 2)
    clock.now += 61
    cache.put("new", 3)
    assert (len(cache), cache.size_bytes, cache.stats().evictions) == (1, 100, 0)


def test_hits_misses_and_hit_rate() -> None:
    cache = _fixed_size_cache(max_bytes=1000)
    assert cache.stats().hit_rate is None
    cache.put("k", 1)
    cache.get("k")
    cache.get("k")
    cache.get("k")
    cache.get("other")
    cache.count_miss()
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 2)
    assert stats.hit_rate == 0.6


def test_replacing_a_key_does_not_leak_bytes() -> None:
    cache = _fixed_size_cache(max_bytes=1000)
    cache.put("k", 1)
    cache.put("k", 2)
    assert (len(cache), cache.size_bytes, cache.get("k")) == (1, 100, 2)


def test_clear_drops_everything() -> None:
    cache = _fixed_size_cache(max_bytes=1000)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.clear() == 2
    assert (len(cache), cache.size_bytes) == (0, 0)
    assert cache.size() == (0, 0)


def test_approx_size_counts_the_contents_of_keys_and_values() -> None:
    features = ScanFeatures(10, 30, 2, 3, "1h", True)
    key = ("result", "v1", features)
    assert approx_size(key) > approx_size(("result", "v1")) + approx_size(features) - 1
    assert approx_size(features) > approx_size(10) * 4
    assert approx_size(Prediction(1.0, 0.5)) >= approx_size(1.0) * 2
    assert approx_size("x" * 1000) > approx_size("x")


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        TTLCache(max_bytes=0, ttl_s=1.0)
    with pytest.raises(ValueError):
        TTLCache(max_bytes=1, ttl_s=0.0)
