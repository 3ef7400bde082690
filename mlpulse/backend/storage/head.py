"""The head: every series' newest state and its open buckets, in memory.

This is where ingest lands (Prometheus's head block is the model). Per series it keeps:

- the ingest state (start time, time and, for cumulative series, the last snapshot), so
  replays and out-of-order points are recognised exactly as `temporality.to_delta` does;
- the open 10 s bucket. Delta points and gauges accumulate into it. A cumulative series
  only remembers its last snapshot and the snapshot at the bucket's start (`base`): the
  bucket's delta is `last - base`, computed once when the bucket closes, which
  telescopes to the sum of the per-point deltas (a restart inside the bucket folds the
  part before it into `acc` and starts again from zero);
- the open 1 min and 1 h rollups: the closed 10 s buckets of the current minute, and
  the closed minutes of the current hour.

A bucket closes when a point of a later bucket arrives or, for a quiet series (no point
for `CLOSE_GRACE_S`), at a checkpoint once its end is `CLOSE_GRACE_S` old. Closed buckets
(and late delta points, which land in the buckets of their own time) wait in `pending`
until the next checkpoint writes them to the store. Everything here runs under the
engine's lock; nothing does I/O.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass

from mlpulse.backend.ingest.points import Sample
from mlpulse.backend.ingest.temporality import histogram_delta, zero_like
from mlpulse.backend.storage.aggregate import (
    NO_EXEMPLARS,
    Aggregate,
    Exemplar,
    keep_exemplars,
    merge,
    merge_all,
)
from mlpulse.backend.storage.base import RESOLUTIONS, PointState

BucketKey = tuple[int, int, int]  # (resolution, series id, bucket start)
CLOSE_GRACE_S = 30  # a quiet series' bucket closes this long after its end
_NS = 1_000_000_000


def _merged(parts: list[Aggregate], max_exemplars: int) -> Aggregate:
    return parts[0] if len(parts) == 1 else merge_all(parts, max_exemplars)


def bucket_of(time_ns: int, resolution: int) -> int:
    """Return the start (epoch seconds) of the bucket of `resolution` holding `time_ns`."""
    return (time_ns // _NS) // resolution * resolution


def _cumulative_delta(last: Aggregate, base: Aggregate, points: int, time_ns: int) -> Aggregate:
    """The increase from `base` to `last` (both cumulative snapshots of one incarnation)
    up to the newest point, at `time_ns` (`last` may be an earlier snapshot of the same
    level: see `_same_level`)."""
    if last.explicit is None and last.exponential is None:
        increase = last.sum - base.sum
        return Aggregate(points, increase, None, None, last.sum, time_ns, None, None, NO_EXEMPLARS)
    delta = histogram_delta(last, base)
    if delta is None:  # buckets went down without a new start time: a reset, count it all
        delta = last.copy()
    delta.last_ns = time_ns
    delta.exemplars = NO_EXEMPLARS
    return delta


@dataclass(slots=True)
class SeriesHead:
    """One series in the head: ingest state, open 10 s bucket, open 1 min / 1 h rollups."""

    sid: int
    state: PointState | None = None
    base: Aggregate | None = None  # cumulative snapshot at the open bucket's start
    acc: Aggregate | None = None  # open bucket: deltas, gauge points, pre-restart part
    points: int = 0  # cumulative points since `base` that count (a sum bucket's count)
    fresh: bool = False  # a cumulative point arrived since `base` (its level is news)
    exemplars: tuple[Exemplar, ...] = ()  # of those points
    open_ts: int | None = None
    # The open minute's / hour's rollup (its closed 10 s buckets / minutes merged) and its
    # start, and the newest bucket emitted per resolution (-1: none). Plain slots, not
    # dicts keyed by resolution: three small dicts and two lists cost ~700 bytes per
    # series, 7 MiB of B7's 10k series.
    roll60_ts: int | None = None
    roll60: Aggregate | None = None
    roll3600_ts: int | None = None
    roll3600: Aggregate | None = None
    written10: int = -1
    written60: int = -1
    written3600: int = -1
    _view: Aggregate | None = None  # cached open-bucket aggregate
    _view_ok: bool = False
    # Server time of the newest point taken (not checkpointed: 0 after a restart). A
    # series that got one within CLOSE_GRACE_S is not quiet: its own next points close
    # its buckets, so a checkpoint leaves them open (see `close_quiet`).
    seen: float = 0.0

    def roll_ts(self, res: int) -> int | None:
        """Start of the open rollup of `res` (60 or 3600), None when there is none."""
        return self.roll60_ts if res == 60 else self.roll3600_ts

    def roll(self, res: int) -> Aggregate | None:
        """The open rollup of `res` (60 or 3600) so far."""
        return self.roll60 if res == 60 else self.roll3600

    def set_roll(self, res: int, ts: int | None, agg: Aggregate | None) -> None:
        if res == 60:
            self.roll60_ts, self.roll60 = ts, agg
        else:
            self.roll3600_ts, self.roll3600 = ts, agg

    def written(self, res: int) -> int:
        """The newest bucket of `res` emitted to `pending` (-1: none)."""
        return self.written10 if res == 10 else self.written60 if res == 60 else self.written3600

    def set_written(self, res: int, ts: int) -> None:
        if res == 10:
            self.written10 = ts
        elif res == 60:
            self.written60 = ts
        else:
            self.written3600 = ts

    def rolling(self) -> bool:
        """True while a 1 min or 1 h rollup is open."""
        return self.roll60_ts is not None or self.roll3600_ts is not None

    def open_bucket(self) -> Aggregate | None:
        """The open 10 s bucket's aggregate so far (None when empty)."""
        if self._view_ok:
            return self._view
        view = self.acc
        st = self.state
        last = st.cumulative if st is not None else None
        if st is not None and last is not None and self.base is not None and self.fresh:
            part = _cumulative_delta(last, self.base, self.points, st.time_ns)
            part.exemplars = list(self.exemplars) if self.exemplars else NO_EXEMPLARS
            view = part if view is None else merge(view, part)
        self._view, self._view_ok = view, True
        return view

    def _touch(self) -> None:
        # Drop the view too: a closed bucket's aggregate must not stay referenced here
        # until the next read (a histogram per series of 10k series, for nothing).
        self._view, self._view_ok = None, False


class Head:
    """Open buckets and ingest state of every series, plus closed buckets not yet stored."""

    def __init__(self, created_ns: int, max_exemplars: int = 4) -> None:
        self.created_ns = created_ns
        self.max_exemplars = max_exemplars
        self.series: dict[int, SeriesHead] = {}
        self.pending: dict[BucketKey, Aggregate] = {}
        self.maybe_stored: set[BucketKey] = set()  # pending keys the store may hold already
        self.dirty: set[int] = set()
        self.late_writes = 0  # writes into buckets that had closed: bumps query caches
        self.now = 0.0  # the server time of the export being applied

    # --- state ------------------------------------------------------------------------

    def entry(self, sid: int) -> SeriesHead:
        e = self.series.get(sid)
        if e is None:
            e = self.series[sid] = SeriesHead(sid)
        return e

    def state(self, sid: int) -> PointState | None:
        e = self.series.get(sid)
        return None if e is None else e.state

    # --- buckets ----------------------------------------------------------------------

    def _emit(self, e: SeriesHead, res: int, ts: int, agg: Aggregate, late: bool = False) -> None:
        key = (res, e.sid, ts)
        # Buckets close in time order per series: one after the newest written is new to
        # the store (a plain insert); others may exist there and are merged with it.
        if late or ts <= e.written(res):
            self.maybe_stored.add(key)
            if late and ts > e.written(res):
                # A late point into a bucket whose rollup is still open (its minute or
                # hour): a checkpoint may store it before the rollup closes, so the
                # rollup's row must then merge with it, not replace it.
                e.set_written(res, ts)
        else:
            e.set_written(res, ts)
        cur = self.pending.get(key)
        self.pending[key] = agg if cur is None else merge(cur, agg, self.max_exemplars)

    def _close(self, e: SeriesHead) -> None:
        """Close the open 10 s bucket into the 1 min / 1 h rollups and `pending`."""
        if e.open_ts is None:
            return
        agg = e.open_bucket()
        ts = e.open_ts
        if agg is not None:
            self._emit(e, 10, ts, agg)
            minute = ts // 60 * 60
            if e.roll60_ts != minute:
                self._flush_roll(e, 60)
            self._add_part(e, 60, minute, agg)
        last = e.state.cumulative if e.state is not None else None
        if last is not None:
            e.base = last
        e.acc, e.points, e.exemplars, e.open_ts, e.fresh = None, 0, (), None, False
        e._touch()

    def _add_part(self, e: SeriesHead, res: int, ts: int, agg: Aggregate) -> None:
        # One merge per close keeps a rollup at one aggregate. Keeping parts apart for a
        # later merge costs as many merges (a fold: see merge_all) and held up to eight
        # more aggregates per series with their buckets: 13.5 MiB per 10k series (B7).
        # (A checkpoint from before holds a list of parts: `load_entry` merges them.)
        cur = e.roll(res)
        e.set_roll(res, ts, agg if cur is None else merge(cur, agg, self.max_exemplars))

    def _flush_roll(self, e: SeriesHead, res: int) -> None:
        """Emit a finished rollup; a minute also becomes a part of its hour's rollup."""
        agg, rts = e.roll(res), e.roll_ts(res)
        e.set_roll(res, None, None)
        if agg is None or rts is None:
            return
        self._emit(e, res, rts, agg)
        if res == 60:
            hour = rts // 3600 * 3600
            if e.roll3600_ts != hour:
                self._flush_roll(e, 3600)
            self._add_part(e, 3600, hour, agg)

    def _into_open(self, e: SeriesHead, time_ns: int) -> bool:
        """Make the bucket of `time_ns` the open one; False if it closed already."""
        ts = bucket_of(time_ns, 10)
        if ts + 10 + CLOSE_GRACE_S <= self.now:
            self.late_writes += 1  # a delayed export: cached results of closed windows age
        if e.open_ts is None:
            for rts in (e.roll60_ts, e.roll3600_ts):
                if rts is not None and ts < rts:
                    return False
            e.open_ts = ts
        elif ts > e.open_ts:
            self._close(e)
            e.open_ts = ts
        elif ts < e.open_ts:
            return False
        return True

    def _late(self, sid: int, time_ns: int, delta: Aggregate) -> None:
        """A delta point into a closed bucket: straight to `pending` at every resolution."""
        self.late_writes += 1
        for res in RESOLUTIONS:
            self._emit(self.entry(sid), res, bucket_of(time_ns, res), delta.copy(), late=True)

    def close_quiet(self, now_s: float) -> None:
        """Close buckets whose end is more than CLOSE_GRACE_S in the past, of series that
        got no point for CLOSE_GRACE_S.

        A series still sending (a backlog replayed, points timed in the past) keeps its
        buckets open until its own points move on: closing them at every checkpoint would
        reopen the same minute and hour and write their rows again, merged with the
        stored ones (a quarter of B2's rows). Reads see open buckets all the same.
        """
        self.close_before(now_s - CLOSE_GRACE_S, quiet_since=now_s - CLOSE_GRACE_S)

    def close_before(self, horizon: float, quiet_since: float | None = None) -> None:
        """Close every open bucket and rollup that ends by `horizon` (with `quiet_since`,
        only of series whose newest point was taken before it)."""
        for e in self.series.values():
            if quiet_since is not None and e.seen > quiet_since:
                continue
            if e.open_ts is not None and e.open_ts + 10 <= horizon:
                self._close(e)
                self.dirty.add(e.sid)
            for res in (60, 3600):  # a minute first: it joins its hour's rollup
                rts = e.roll_ts(res)
                if rts is not None and rts + res <= horizon:
                    self._flush_roll(e, res)
                    self.dirty.add(e.sid)

    # --- points -----------------------------------------------------------------------

    def add_delta(self, sid: int, sample: Sample, *, newer: bool) -> None:
        """Take a delta sum/histogram point or a gauge reading (already deduplicated)."""
        e = self.entry(sid)
        e.seen = self.now
        if newer:
            e.state = PointState(sample.start_ns, sample.time_ns)
        self.dirty.add(sid)
        if not self._into_open(e, sample.time_ns):
            self._late(sid, sample.time_ns, sample.value)
            return
        value = sample.value
        e.acc = value.copy() if e.acc is None else merge(e.acc, value, self.max_exemplars)
        e._touch()

    def add_cumulative(self, sid: int, sample: Sample, first_seen_grace_s: float) -> bool:
        """Take a cumulative point newer than the state; False if it is an older incarnation."""
        e = self.entry(sid)
        e.seen = self.now
        st = e.state
        value = sample.value
        # The sample is this point's own object: its exemplars move to the bucket and
        # the rest becomes the snapshot, without a copy.
        exemplars, value.exemplars = value.exemplars, NO_EXEMPLARS
        snap = value
        if st is None or st.cumulative is None:
            joined_late = sample.start_ns < self.created_ns - int(first_seen_grace_s * _NS)
            self._into_open(e, sample.time_ns)
            self._restart(e, zero_like(snap) if not joined_late else snap)
            counts = not joined_late
        else:
            restarted = bool(sample.start_ns and st.start_ns and sample.start_ns != st.start_ns)
            if restarted and sample.start_ns < st.start_ns:
                return False  # a point of an older incarnation, arriving late
            self._into_open(e, sample.time_ns)
            if not restarted:
                restarted = _went_down(sample, st.cumulative)
            if restarted:
                self._fold(e)
                self._restart(e, zero_like(snap))
            else:
                _share_unchanged(snap, st.cumulative)
                if _same_level(snap, st.cumulative):
                    # Nothing changed but the time (which the state keeps): the previous
                    # snapshot stands for this one, often the open bucket's base too, so
                    # a quiet series holds one snapshot instead of two.
                    snap = st.cumulative
            counts = True
        e.state = PointState(sample.start_ns, sample.time_ns, snap)
        e.fresh = True  # a joined-late first point adds a zero increase, and the level
        if counts:
            e.points += 1
        if counts and exemplars:
            e.exemplars = tuple(keep_exemplars([*e.exemplars, *exemplars], self.max_exemplars))
        self.dirty.add(sid)
        e._touch()
        return True

    def _fold(self, e: SeriesHead) -> None:
        """Move the cumulative part of the open bucket into `acc` (before a restart)."""
        part = e.open_bucket()
        e.acc = part
        e.points, e.exemplars, e.fresh = 0, (), False

    def _restart(self, e: SeriesHead, base: Aggregate) -> None:
        e.base = base
        if e.acc is None:
            e.points, e.exemplars = 0, ()

    # --- reads ------------------------------------------------------------------------

    def rows(
        self, sids: list[int], resolution: int, lo: int, hi: float
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Yield (series id, bucket start, aggregate) of open buckets and pending ones.

        Several rows may share a key (a rollup and the open bucket of the same hour, a
        late point): callers merge them.
        """
        for sid in sids:
            e = self.series.get(sid)
            if e is None:
                continue
            # An hour's open rollup is its closed minutes plus the open minute's rollup.
            for res in (60, 3600) if resolution == 3600 else (resolution,):
                if res == 10:
                    break
                rts, agg = e.roll_ts(res), e.roll(res)
                if rts is not None and agg is not None:
                    ts = rts // resolution * resolution
                    if lo <= ts < hi:
                        yield sid, ts, agg
            if e.open_ts is not None:
                ts = e.open_ts // resolution * resolution
                if lo <= ts < hi:
                    view = e.open_bucket()
                    if view is not None:
                        yield sid, ts, view
        if self.pending:
            wanted = set(sids)
            for (res, sid, ts), agg in self.pending.items():
                if res == resolution and sid in wanted and lo <= ts < hi:
                    yield sid, ts, agg

    # --- persistence ------------------------------------------------------------------

    def dump_entry(self, sid: int) -> bytes:
        """Serialize one series' head state (for the checkpoint).

        The format of the first head builds (rollups and emitted buckets as dicts keyed
        by resolution), so every checkpoint, older or newer, loads the same way.
        """
        e = self.series[sid]
        roll_ts: dict[int, int] = {}
        roll: dict[int, list[Aggregate]] = {}
        for res in (60, 3600):
            rts, agg = e.roll_ts(res), e.roll(res)
            if rts is not None and agg is not None:
                roll_ts[res], roll[res] = rts, [agg]
        written = {res: e.written(res) for res in RESOLUTIONS if e.written(res) >= 0}
        return pickle.dumps(
            (
                e.state,
                e.base,
                e.acc,
                e.points,
                e.fresh,
                list(e.exemplars),
                e.open_ts,
                roll_ts,
                roll,
                written,
            ),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def load_entry(self, sid: int, blob: bytes) -> None:
        """Restore one series' head state written by `dump_entry`."""
        # Our own checkpoint in our own database file, never client data.
        fields = pickle.loads(blob)  # noqa: S301
        state, base, acc, points, fresh, exemplars, open_ts, roll_ts, roll, written = fields
        e = SeriesHead(sid, state, base, acc, points, fresh, tuple(exemplars), open_ts)
        for res, rts in roll_ts.items():
            parts = roll.get(res)
            if parts:  # an older build kept several parts: merged once, here
                e.set_roll(res, rts, _merged(parts, self.max_exemplars))
        for res, ts in written.items():
            e.set_written(res, ts)
        self.series[sid] = e


def _share_unchanged(snap: Aggregate, prev: Aggregate) -> None:
    """Let `snap` share `prev`'s histogram buckets when they are equal (nothing observed).

    Most series of a fleet see no observation in most 5 s exports: sharing keeps one copy
    of their buckets in the head instead of two (the open bucket's base and the last
    snapshot), and the bucket's delta is then found without subtracting bucket by bucket.
    Buckets are never mutated in place, so sharing is safe.
    """
    a, b = snap.exponential, prev.exponential
    if a is not None and b is not None:
        if (
            a.scale == b.scale
            and a.zero_count == b.zero_count
            and a.pos_offset == b.pos_offset
            and a.neg_offset == b.neg_offset
            and a.zero_threshold == b.zero_threshold
            and a.pos_counts == b.pos_counts
            and a.neg_counts == b.neg_counts
        ):
            snap.exponential = b
        return
    c, d = snap.explicit, prev.explicit
    if c is not None and d is not None and c.bounds == d.bounds and c.counts == d.counts:
        snap.explicit = d


def _same_level(snap: Aggregate, prev: Aggregate) -> bool:
    """`snap` holds what `prev` holds (buckets shared by `_share_unchanged`), but its time."""
    return (
        snap.count == prev.count
        and snap.sum == prev.sum
        and snap.min == prev.min
        and snap.max == prev.max
        and snap.last == prev.last
        and snap.explicit is prev.explicit
        and snap.exponential is prev.exponential
        and not prev.exemplars
    )


def _went_down(sample: Sample, prev: Aggregate) -> bool:
    """A reset without a new start time: a monotonic value or a histogram count went down."""
    cur = sample.value
    if sample.key.kind == "sum":
        return sample.key.monotonic and cur.sum < prev.sum
    return cur.count < prev.count
