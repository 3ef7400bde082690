"""A series' head state survives a checkpoint, including one written by an older build.

The first head builds pickled the open rollups as dicts keyed by resolution holding lists
of parts (several aggregates to merge) and the emitted buckets as a dict; the head now
keeps them in plain slots. Both must load into the same state.
"""

from __future__ import annotations

import pickle

from mlpulse.backend.ingest.points import Sample
from mlpulse.backend.storage.aggregate import Aggregate, Exemplar, ExplicitBuckets
from mlpulse.backend.storage.base import PointState, SeriesKey
from mlpulse.backend.storage.head import Head

S = 1_000_000_000
CREATED = 1_800_000_000 * S
BOUNDS = (1.0, 5.0)


def _key() -> SeriesKey:
    return SeriesKey("h", "histogram", "s", False, (("service.name", "s"),), "", ())


def _hist(counts: list[int], t: int, exemplars: list[Exemplar] | None = None) -> Aggregate:
    return Aggregate(
        count=float(sum(counts)),
        sum=float(sum(counts)) * 2,
        last_ns=t,
        explicit=ExplicitBuckets(BOUNDS, counts),
        exemplars=exemplars or [],
    )


def _sample(counts: list[int], t: int, exemplars: list[Exemplar] | None = None) -> Sample:
    return Sample(_key(), True, CREATED + S, t, _hist(counts, t, exemplars))


def test_old_format_with_several_rollup_parts_loads_merged() -> None:
    t = CREATED + 3600 * S  # the start of an hour
    state = PointState(CREATED + S, t + 125 * S, _hist([3, 4, 5], t + 125 * S))
    minute = [_hist([1, 0, 0], t + 60 * S), _hist([0, 2, 0], t + 70 * S)]
    hour = [_hist([1, 1, 1], t + 10 * S), _hist([0, 0, 4], t + 50 * S)]
    blob = pickle.dumps(
        (
            state,
            state.cumulative,
            None,
            0,
            False,
            [],
            t // S + 120,
            {60: t // S + 60, 3600: t // S},
            {60: minute, 3600: hour},
            {10: t // S + 110, 60: t // S},
        )
    )
    head = Head(CREATED)
    head.load_entry(7, blob)
    e = head.series[7]
    assert e.written(10) == t // S + 110 and e.written(60) == t // S and e.written(3600) == -1
    rows = list(head.rows([7], 3600, 0, float("inf")))
    # The hour's open rollup is its closed minutes plus the open minute's rollup.
    assert sorted(r[2].count for r in rows) == [3.0, 7.0]
    hour_row = next(r[2] for r in rows if r[2].count == 7.0)
    assert hour_row.explicit is not None and hour_row.explicit.counts == [1, 1, 5]
    (minute_row,) = list(head.rows([7], 60, 0, float("inf")))
    assert minute_row[1] == t // S + 60 and minute_row[2].explicit is not None
    assert minute_row[2].explicit.counts == [1, 2, 0]
    # A dump of what was loaded loads to the same state (one part per rollup now).
    again = Head(CREATED)
    again.load_entry(7, head.dump_entry(7))
    assert list(again.rows([7], 3600, 0, float("inf"))) == rows
    assert again.series[7].written(10) == t // S + 110


def test_checkpoint_round_trip_keeps_buckets_and_exemplars() -> None:
    ex = Exemplar(4.0, CREATED + 62 * S, "ab" * 16, "cd" * 8)
    points = [
        ([0, 0, 0], 0, None),
        ([1, 0, 0], 5, None),
        ([1, 2, 0], 12, [ex]),  # opens the second bucket, with an exemplar
        ([1, 2, 3], 65, None),  # the next minute: the first minute's rollup closes
    ]
    head = Head(CREATED - 3600 * S)  # the series started after the store: counts in full
    restored = Head(CREATED - 3600 * S)
    for counts, dt, exemplars in points:
        head.now = (CREATED + dt * S) / S
        assert head.add_cumulative(1, _sample(counts, CREATED + dt * S, exemplars), 300.0)
    restored.load_entry(1, head.dump_entry(1))
    head.pending = {}  # written by the checkpoint that dumped the state
    for h in (head, restored):
        h.close_before(float("inf"))

    def rows(h: Head) -> dict[tuple[int, int, int], tuple[float, list[int] | None, list[str]]]:
        return {
            k: (
                a.count,
                a.explicit.counts if a.explicit else None,
                [x.trace_id for x in a.exemplars],
            )
            for k, a in h.pending.items()
        }

    got = rows(restored)
    assert got == rows(head)
    hour, minute = (CREATED // S) // 3600 * 3600, (CREATED // S + 60) // 60 * 60
    assert got[(3600, 1, hour)] == (6.0, [1, 2, 3], ["ab" * 16])
    assert got[(60, 1, minute)] == (3.0, [0, 0, 3], [])
    assert got[(10, 1, minute)] == (3.0, [0, 0, 3], [])


def test_a_quiet_series_holds_one_snapshot_and_its_newest_time() -> None:
    head = Head(CREATED - 3600 * S)
    for dt in (0, 5, 10, 15):  # the same counts every export: nothing observed
        head.now = (CREATED + dt * S) / S
        assert head.add_cumulative(1, _sample([1, 2, 3], CREATED + dt * S), 300.0)
    e = head.series[1]
    assert e.state is not None and e.state.time_ns == CREATED + 15 * S
    assert e.state.cumulative is e.base  # one object for the level, not two
    view = e.open_bucket()
    assert view is not None and view.count == 0 and view.last_ns == CREATED + 15 * S
    assert view.explicit is not None and view.explicit.counts == [0, 0, 0]
    # A new observation is a new snapshot again, counted exactly.
    head.now = (CREATED + 18 * S) / S
    assert head.add_cumulative(1, _sample([1, 2, 5], CREATED + 18 * S), 300.0)
    view = e.open_bucket()
    assert view is not None and view.count == 2 and view.last_ns == CREATED + 18 * S
    assert view.explicit is not None and view.explicit.counts == [0, 0, 2]
    assert e.state is not None and e.state.cumulative is not e.base
