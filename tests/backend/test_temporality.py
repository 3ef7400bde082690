"""Cumulative → delta conversion: restarts, resets, replays, late joins, histograms, and
delta points deduplicated by their interval."""

from __future__ import annotations

from mlpulse.backend.ingest.points import Sample
from mlpulse.backend.ingest.temporality import to_delta
from mlpulse.backend.storage.aggregate import Aggregate, ExpBuckets, ExplicitBuckets
from mlpulse.backend.storage.base import PointState, SeriesKey

S = 1_000_000_000
CREATED = 1000 * S


def _key(kind: str = "sum", monotonic: bool = True) -> SeriesKey:
    return SeriesKey("m", kind, "", monotonic, (("service.name", "s"),), "", ())  # type: ignore[arg-type]


def _sum(value: float, t: int, start: int = CREATED + S, monotonic: bool = True) -> Sample:
    agg = Aggregate(count=1, sum=value, last=value, last_ns=t)
    return Sample(_key("sum", monotonic), True, start, t, agg)


def _run(samples: list[Sample]) -> list[float | None]:
    state: PointState | None = None
    out: list[float | None] = []
    for s in samples:
        delta, new = to_delta(state, s, CREATED)
        out.append(None if delta is None else delta.sum)
        if new is not None:
            state = new
    return out


def test_cumulative_sum_becomes_increases() -> None:
    t = CREATED + 10 * S
    assert _run([_sum(5, t), _sum(9, t + S), _sum(9, t + 2 * S), _sum(12, t + 3 * S)]) == [
        5, 4, 0, 3,
    ]  # fmt: skip


def test_restart_by_new_start_time_counts_from_zero() -> None:
    t = CREATED + 10 * S
    new_start = t + 5 * S
    got = _run([_sum(100, t), _sum(120, t + S), _sum(7, t + 6 * S, start=new_start)])
    assert got == [100, 20, 7]


def test_restart_with_higher_value_and_new_start_is_not_a_difference() -> None:
    t = CREATED + 10 * S
    got = _run([_sum(10, t), _sum(500, t + 6 * S, start=t + 5 * S)])
    assert got == [10, 500]


def test_reset_detected_from_a_decreasing_monotonic_value() -> None:
    t = CREATED + 10 * S
    start = 0  # producer without start times
    got = _run([_sum(50, t, start), _sum(60, t + S, start), _sum(4, t + 2 * S, start)])
    assert got[1:] == [10, 4]


def test_non_monotonic_sum_may_go_down() -> None:
    t = CREATED + 10 * S
    got = _run([_sum(50, t, monotonic=False), _sum(30, t + S, monotonic=False)])
    assert got == [50, -20]


def test_replayed_and_out_of_order_points_are_ignored() -> None:
    t = CREATED + 10 * S
    got = _run([_sum(5, t), _sum(9, t + 2 * S), _sum(9, t + 2 * S), _sum(7, t + S)])
    assert got == [5, 4, None, None]


def test_point_of_an_older_incarnation_is_ignored() -> None:
    t = CREATED + 10 * S
    got = _run([_sum(5, t, start=t - S), _sum(3, t + 3 * S, start=t - 2 * S)])
    assert got == [5, None]


def test_series_that_started_before_the_store_is_a_baseline_first() -> None:
    old_start = CREATED - 3600 * S
    got = _run([_sum(10_000, CREATED + S, old_start), _sum(10_010, CREATED + 2 * S, old_start)])
    assert got == [0, 10]


def test_delta_and_gauge_points_pass_through_but_replays_do_not() -> None:
    agg = Aggregate(count=1, sum=3, last_ns=5 * S)
    sample = Sample(_key(), False, 4 * S, 5 * S, agg)
    delta, state = to_delta(None, sample, CREATED)
    assert delta is agg and state is not None
    assert to_delta(state, sample, CREATED) == (None, None)
    assert to_delta(state, sample, CREATED, seen=True, late_after_ns=0) == (None, None)


def _delta(t: int, kind: str = "sum") -> Sample:
    return Sample(_key(kind), False, t - S, t, Aggregate(count=1, sum=1, last_ns=t))


def test_late_unseen_delta_point_counts_without_moving_the_state() -> None:
    state = PointState(9 * S, 10 * S)
    for kind in ("sum", "histogram", "exp_histogram"):
        late = _delta(5 * S, kind)
        delta, new = to_delta(state, late, CREATED, late_after_ns=0)
        assert delta is late.value and new is None
        assert to_delta(state, late, CREATED, seen=True, late_after_ns=0) == (None, None)


def test_late_delta_point_older_than_the_records_is_ignored() -> None:
    state = PointState(9 * S, 10 * S)
    assert to_delta(state, _delta(5 * S), CREATED, late_after_ns=6 * S) == (None, None)
    assert to_delta(state, _delta(5 * S), CREATED) == (None, None)  # no records at all
    # A newer point is new whatever its age.
    delta, new = to_delta(state, _delta(11 * S), CREATED, late_after_ns=20 * S)
    assert delta is not None and new == PointState(10 * S, 11 * S)


def test_late_gauge_point_is_ignored_even_with_records() -> None:
    gauge = Sample(_key("gauge"), False, 0, 5 * S, Aggregate(count=1, sum=2, last=2))
    assert to_delta(PointState(0, 10 * S), gauge, CREATED, late_after_ns=0) == (None, None)


def test_cumulative_exponential_histogram_delta_across_a_downscale() -> None:
    t = CREATED + 10 * S
    key = _key("exp_histogram")
    first = Aggregate(
        count=4, sum=10, min=0.5, max=4, last_ns=t,
        exponential=ExpBuckets(1, 0, 0.0, -2, [1, 1, 1, 1]),
    )  # fmt: skip
    # Later the SDK downscaled to 0 (range grew) and recorded 3 more values.
    second = Aggregate(
        count=7, sum=40, min=0.5, max=16, last_ns=t + S,
        exponential=ExpBuckets(0, 0, 0.0, -1, [2, 2, 1, 2]),
    )  # fmt: skip
    _, state = to_delta(None, Sample(key, True, CREATED + S, t, first), CREATED)
    delta, _ = to_delta(state, Sample(key, True, CREATED + S, t + S, second), CREATED)
    assert delta is not None and delta.exponential is not None
    assert (delta.count, delta.sum, delta.max, delta.min) == (3, 30, 16, None)
    assert delta.exponential == ExpBuckets(0, 0, 0.0, 1, [1, 2])
    assert delta.exponential.total == 3


def test_cumulative_explicit_histogram_reset_when_a_bucket_goes_down() -> None:
    t = CREATED + 10 * S
    key = _key("histogram")
    a = Aggregate(count=5, sum=5, last_ns=t, explicit=ExplicitBuckets((1.0,), [2, 3]))
    b = Aggregate(count=6, sum=6, last_ns=t + S, explicit=ExplicitBuckets((1.0,), [1, 5]))
    _, state = to_delta(None, Sample(key, True, CREATED + S, t, a), CREATED)
    delta, _ = to_delta(state, Sample(key, True, CREATED + S, t + S, b), CREATED)
    assert delta is b  # bucket 0 went down: a reset, the point counts in full
