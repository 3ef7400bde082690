"""The head's telescoped buckets equal the per-point deltas of `temporality.to_delta`.

A cumulative series' open bucket keeps only its last snapshot and the one at its start
(`last - base`); this checks, on random streams with restarts (new start times), resets
(values going down), replays and out-of-order points, that every 10 s / 1 min / 1 h
bucket holds exactly the sum of `to_delta`'s per-point deltas of its points.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from mlpulse.backend.ingest.points import Sample
from mlpulse.backend.ingest.temporality import to_delta
from mlpulse.backend.storage.aggregate import Aggregate, ExpBuckets, merge
from mlpulse.backend.storage.base import PointState, SeriesKey
from mlpulse.backend.storage.head import Head, bucket_of

S = 1_000_000_000
CREATED = 1_800_000_000 * S
SID = 1


def _key(kind: str) -> SeriesKey:
    return SeriesKey("m", kind, "", True, (("service.name", "s"),), "", ())  # type: ignore[arg-type]


def _stream(rng: random.Random, kind: str) -> list[Sample]:
    out = []
    t, start, value, counts = CREATED + 5 * S, CREATED + S, 0.0, [0] * 6
    for _ in range(300):
        t += rng.choice([1, 2, 3, 5, 7, 11, 40]) * S // 2
        roll = rng.random()
        if roll < 0.03:
            start, value, counts = t - S, 0.0, [0] * 6  # restart: new start time
        elif roll < 0.05 and kind == "sum":
            value = 0.0  # reset without a new start time
        add = rng.randint(0, 9)
        value += add
        for _ in range(add):
            counts[rng.randrange(6)] += 1
        if kind == "sum":
            agg = Aggregate(count=1, sum=value, last=value, last_ns=t)
        else:
            n = sum(counts)
            agg = Aggregate(
                count=n,
                sum=float(n),
                last_ns=t,
                exponential=ExpBuckets(2, 0, 0.0, -3, list(counts)),
            )
        sample = Sample(_key(kind), True, start, t, agg)
        out.append(sample)
        if rng.random() < 0.1:  # a replay or an out-of-order point, ignored by both
            old = out[rng.randrange(len(out))]
            out.append(Sample(old.key, True, old.start_ns, old.time_ns, old.value.copy()))
    return out


def _expected(samples: list[Sample]) -> dict[tuple[int, int], Aggregate]:
    state: PointState | None = None
    buckets: dict[tuple[int, int], Aggregate] = {}
    for s in samples:
        delta, new = to_delta(state, s, CREATED, seen=False)
        if new is not None:
            state = new
        if delta is None:
            continue
        for res in (10, 60, 3600):
            key = (res, bucket_of(s.time_ns, res))
            buckets[key] = delta if key not in buckets else merge(buckets[key], delta)
    return buckets


def _head(samples: list[Sample]) -> dict[tuple[int, int], Aggregate]:
    head = Head(CREATED)
    for s in samples:
        fresh = Sample(s.key, s.cumulative, s.start_ns, s.time_ns, s.value.copy())
        st = head.state(SID)
        if st is None or s.time_ns > st.time_ns:
            head.add_cumulative(SID, fresh, 300.0)
    head.close_before(float("inf"))
    out: dict[tuple[int, int], Aggregate] = {}
    for (res, _, ts), agg in head.pending.items():
        out[(res, ts)] = agg if (res, ts) not in out else merge(out[(res, ts)], agg)
    return out


def _counts(agg: Aggregate) -> list[int]:
    h = agg.exponential
    if h is None:
        return []
    dense: defaultdict[int, int] = defaultdict(int)
    for i, c in enumerate(h.pos_counts):
        dense[h.pos_offset + i] += c
    return [dense[i] for i in sorted(dense) if dense[i]]


@pytest.mark.parametrize("kind", ["sum", "exp_histogram"])
@pytest.mark.parametrize("seed", range(8))
def test_telescoped_buckets_equal_per_point_deltas(kind: str, seed: int) -> None:
    samples = _stream(random.Random(seed), kind)
    want, got = _expected(samples), _head(samples)
    want = {k: v for k, v in want.items() if v.count or v.sum or _counts(v)}
    got = {k: v for k, v in got.items() if v.count or v.sum or _counts(v)}
    assert got.keys() == want.keys()
    for key, agg in want.items():
        assert got[key].sum == pytest.approx(agg.sum), key
        if kind == "exp_histogram":
            assert got[key].count == agg.count, key
            assert _counts(got[key]) == _counts(agg), key


def test_a_quiet_histogram_keeps_one_copy_of_its_buckets() -> None:
    """Snapshots equal to the previous one share its buckets (one copy in the head, not
    the open bucket's base and the last snapshot each); the deltas stay exact when the
    series moves again, and a changed snapshot is never shared."""
    head = Head(CREATED)
    start = CREATED + S

    def point(t_s: int, counts: list[int]) -> Sample:
        n = sum(counts)
        agg = Aggregate(count=n, sum=float(n), last_ns=CREATED + t_s * S,
                        exponential=ExpBuckets(2, 0, 0.0, -3, list(counts)))  # fmt: skip
        return Sample(_key("exp_histogram"), True, start, CREATED + t_s * S, agg)

    assert head.add_cumulative(SID, point(5, [1, 2, 3]), 300.0)
    first = head.state(SID)
    assert first is not None and first.cumulative is not None
    assert head.add_cumulative(SID, point(12, [1, 2, 3]), 300.0)  # nothing new
    second = head.state(SID)
    assert second is not None and second.cumulative is not None
    assert second.cumulative.exponential is first.cumulative.exponential
    assert head.add_cumulative(SID, point(25, [1, 4, 3]), 300.0)  # two more in bucket 1
    third = head.state(SID)
    assert third is not None and third.cumulative is not None
    assert third.cumulative.exponential is not second.cumulative.exponential
    head.close_before(float("inf"))
    ten_s = {ts: agg for (res, _, ts), agg in head.pending.items() if res == 10}
    by_time = [ten_s[ts] for ts in sorted(ten_s)]
    # Bucket 0 holds the first point in full (the series started after the store);
    # bucket 10 the unchanged snapshot (zero), bucket 20 the two new observations.
    assert [a.count for a in by_time] == [6, 0, 2]
    assert [_counts(a) for a in by_time] == [[1, 2, 3], [], [2]]
