"""The read path's result cache stays bounded in bytes, whatever an entry holds; the
planner cuts a sliding window's segments where they stop being cacheable."""

from __future__ import annotations

from mlpulse.backend.storage.aggregate import Aggregate, ExpBuckets
from mlpulse.backend.storage.planner import ResultCache, _weight, plan


def _histograms(n_series: int, n_buckets: int) -> dict[int, Aggregate]:
    """One exponential histogram per series, as a window over many series caches."""
    return {
        sid: Aggregate(
            count=float(n_buckets),
            sum=1.0,
            exponential=ExpBuckets(3, pos_offset=-4, pos_counts=[1] * n_buckets),
        )
        for sid in range(n_series)
    }


def test_weight_grows_with_series_and_buckets() -> None:
    small = _weight(_histograms(10, 10))
    assert _weight(_histograms(100, 10)) > 9 * small
    assert _weight(_histograms(10, 100)) > 5 * small


def test_cache_evicts_oldest_entries_beyond_its_byte_bound() -> None:
    value = _histograms(100, 40)
    size = _weight(value)
    cache = ResultCache(max_entries=1000, max_bytes=10 * size)
    for key in range(50):
        cache.put(key, 0, value)
    assert cache.bytes <= 10 * size
    assert cache.get(49, 0) is value  # the newest stay
    assert cache.get(0, 0) is None  # the oldest went, although far below max_entries
    kept = sum(cache.get(k, 0) is not None for k in range(50))
    assert kept == 10


def test_cache_skips_a_result_too_large_for_it() -> None:
    cache = ResultCache(max_bytes=_weight(_histograms(10, 10)))
    cache.put("small", 0, {1: 1.0})
    cache.put("huge", 0, _histograms(10, 10))  # over a quarter of the bound
    assert cache.get("huge", 0) is None
    assert cache.get("small", 0) == {1: 1.0}


def test_replacing_an_entry_does_not_count_it_twice() -> None:
    value = _histograms(10, 10)
    cache = ResultCache(max_bytes=100 * _weight(value))
    for _ in range(20):
        cache.put("k", 0, value)
    assert cache.bytes == _weight(value)
    cache.clear()
    assert cache.bytes == 0
    assert cache.get("k", 0) is None


def _covered(segments: list[tuple[int, int, float]]) -> list[tuple[int, int]]:
    """Every 10 s bucket start the segments cover, with the resolution covering it."""
    out = []
    for res, lo, hi in segments:
        assert lo % res == 0, (res, lo)
        out += [(t, res) for t in range(lo, int(hi), 10)]
    return out


def test_plan_cuts_the_segment_that_straddles_the_sealed_end() -> None:
    lo, hi = 7 * 3600 + 20 * 60 + 30, 8 * 3600 + 20 * 60 + 30  # a 1 h window, not aligned
    sealed = 8 * 3600 + 19 * 60 + 50.0  # the newest minutes can still change
    whole, cut = plan(lo, hi), plan(lo, hi, sealed)
    assert [t for t, _ in _covered(cut)] == list(range(lo, hi, 10))  # no gap, no overlap
    assert _covered(cut) == _covered(whole)  # same resolutions, only cut
    ends = [seg_hi for _, _, seg_hi in cut]
    assert 8 * 3600 + 19 * 60 in ends  # the 1 min segment ends on the sealed minute
    assert len(cut) == len(whole) + 1


def test_plan_leaves_segments_alone_when_sealed_is_outside_them() -> None:
    lo, hi = 3600, 5 * 3600 + 60
    assert plan(lo, hi, sealed=hi + 100) == plan(lo, hi)
    assert plan(lo, hi, sealed=lo - 100) == plan(lo, hi)
