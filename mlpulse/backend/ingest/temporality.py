"""Cumulative → delta conversion per series, with restart and replay detection.

Per series the store keeps the last accepted point (`PointState`). For a new point:

- gauges and cumulative points whose time is not after the last accepted one: a
  replayed or out-of-order export, ignored (a newer cumulative point already includes
  what an older one counted; a resent gauge point would otherwise count twice);
- delta sums and histograms (each point covers its own `[start_time, time]` interval)
  are deduplicated by their exact interval instead, because an older point arriving
  late is new data: a collector re-queues the batch it was sending when it restarts at
  the end of its persistent queue, behind newer batches. The store records every
  accepted delta interval (`WriteTransaction.record_delta_intervals`); a point whose
  interval was recorded is a replay and ignored, an older unrecorded one is taken and
  lands in the buckets of its own time. Late points are only taken while their records
  are kept (`LATE_DELTA_WINDOW_S`, and not from before the store started recording):
  beyond that a replay could not be told from new data, so they are ignored as before.
  Per the OTLP data model the delta intervals of one series do not overlap, so a
  different interval (even an overlapping one) is a different point and is taken;
- cumulative points: the delta is `current - previous`. A restart of the producer (a new
  `start_time_unix_nano`, or a monotonic value / histogram bucket going down) makes the
  current value itself the delta: counting restarts from zero, so nothing is negative or
  double counted.
- the first point of a cumulative series counts in full when the series started after
  this store existed (its start time is not older than `first_seen_grace_s` before the
  store was created); otherwise the backend joined mid-stream and the point is only a
  baseline, so a producer's lifetime total is never dumped into one bucket.
"""

from __future__ import annotations

from mlpulse.backend.ingest.points import Sample
from mlpulse.backend.storage.aggregate import (
    NO_COUNTS,
    NO_EXEMPLARS,
    Aggregate,
    subtract_exp,
    subtract_explicit,
)
from mlpulse.backend.storage.base import PointState

FIRST_SEEN_GRACE_S = 300.0
# How long accepted delta intervals are remembered, so how late a delta point may arrive
# and still count (retention prunes older records; older late points are ignored).
LATE_DELTA_WINDOW_S = 24 * 3600.0


def is_interval_delta(sample: Sample) -> bool:
    """True for delta sums and histograms: points deduplicated by their exact interval."""
    return not sample.cumulative and sample.key.kind != "gauge"


def _snapshot(value: Aggregate) -> Aggregate:
    """The cumulative state to keep: the value without exemplars."""
    snap = value.copy()
    snap.exemplars = []
    return snap


def histogram_delta(cur: Aggregate, prev: Aggregate) -> Aggregate | None:
    if cur.count < prev.count:
        return None
    delta = Aggregate(
        count=cur.count - prev.count,
        sum=cur.sum - prev.sum,
        last_ns=cur.last_ns,
        exemplars=list(cur.exemplars) if cur.exemplars else NO_EXEMPLARS,
    )
    # Lifetime min/max only tell about this interval when they moved during it.
    if cur.max is not None and (prev.max is None or cur.max > prev.max):
        delta.max = cur.max
    if cur.min is not None and (prev.min is None or cur.min < prev.min):
        delta.min = cur.min
    if cur.exponential is not None and prev.exponential is not None:
        exp = subtract_exp(cur.exponential, prev.exponential)
        if exp is None:
            return None
        delta.exponential = exp
    elif cur.explicit is not None and prev.explicit is not None:
        explicit = subtract_explicit(cur.explicit, prev.explicit)
        if explicit is None:
            return None
        delta.explicit = explicit
    else:
        return None
    return delta


def zero_like(value: Aggregate) -> Aggregate:
    zero = Aggregate(last=value.last, last_ns=value.last_ns, exemplars=NO_EXEMPLARS)
    if value.exponential is not None:
        zero.exponential = type(value.exponential)(
            value.exponential.scale, 0, 0.0, 0, NO_COUNTS, 0, NO_COUNTS
        )
    if value.explicit is not None:
        zero.explicit = type(value.explicit)(
            value.explicit.bounds, [0] * len(value.explicit.counts)
        )
    return zero


def to_delta(
    state: PointState | None,
    sample: Sample,
    store_created_ns: int,
    first_seen_grace_s: float = FIRST_SEEN_GRACE_S,
    *,
    seen: bool = False,
    late_after_ns: int | None = None,
) -> tuple[Aggregate | None, PointState | None]:
    """Return (delta to store or None to ignore the point, new state or None if unchanged).

    For delta sums and histograms, `seen` tells that the point's exact interval was
    accepted before, and `late_after_ns` is the oldest time a late (not newer than the
    state) point may have to be taken; None takes no late point.
    """
    if is_interval_delta(sample):
        if seen:
            return None, None  # a replay of an accepted interval
        if state is None or sample.time_ns > state.time_ns:
            return sample.value, PointState(sample.start_ns, sample.time_ns)
        if late_after_ns is None or sample.time_ns < late_after_ns:
            return None, None  # too old to tell a replay from new data
        return sample.value, None  # late but new: the state keeps the newest time
    if state is not None and sample.time_ns <= state.time_ns:
        return None, None  # replay or out of order
    if not sample.cumulative:
        return sample.value, PointState(sample.start_ns, sample.time_ns)  # a gauge
    new_state = PointState(sample.start_ns, sample.time_ns, _snapshot(sample.value))
    prev = state.cumulative if state is not None else None
    if state is None or prev is None:
        joined_late = sample.start_ns < store_created_ns - int(first_seen_grace_s * 1e9)
        return (zero_like(sample.value) if joined_late else sample.value), new_state
    if sample.start_ns and state.start_ns and sample.start_ns != state.start_ns:
        if sample.start_ns < state.start_ns:
            return None, None  # a point of an older incarnation, arriving late
        return sample.value, new_state  # restarted: counts from zero again
    cur = sample.value
    if sample.key.kind == "sum":
        diff = cur.sum - prev.sum
        if sample.key.monotonic and diff < 0:
            return cur, new_state  # reset without a new start time
        return (
            Aggregate(count=1, sum=diff, last=cur.sum, last_ns=cur.last_ns,
                      exemplars=list(cur.exemplars)),
            new_state,
        )  # fmt: skip
    delta = histogram_delta(cur, prev)
    return (cur if delta is None else delta), new_state
