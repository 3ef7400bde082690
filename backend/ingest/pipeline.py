"""One export request, end to end: flatten, limit, convert to deltas, store.

`ingest(store, request, limits)` runs in a worker thread (it blocks on SQLite) and makes
the whole request one transaction: either every accepted point is stored with its new
ingest state (and, for delta sums and histograms, its recorded interval), or nothing is.
Late delta points are looked up among the recorded intervals in one batch per export;
points newer than their series' state need no lookup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from backend.ingest.limits import Limits
from backend.ingest.points import Sample, flatten
from backend.ingest.temporality import LATE_DELTA_WINDOW_S, is_interval_delta, to_delta
from backend.storage.aggregate import Aggregate
from backend.storage.base import DeltaInterval, MetricStore, PointState
from backend.storage.rollup import fan_out


@dataclass(slots=True)
class IngestResult:
    """What happened to an export request."""

    accepted: int = 0  # points stored
    ignored: int = 0  # replays and out-of-order points (not errors)
    rejected: int = 0  # refused, reported through partial_success
    message: str = ""
    services: list[str] = field(default_factory=list)
    committed_at: float | None = None


def _message(reasons: dict[str, int]) -> str:
    parts = [f"{n} point(s): {reason}" for reason, n in sorted(reasons.items())[:5]]
    if len(reasons) > 5:
        parts.append(f"and {len(reasons) - 5} other reason(s)")
    return "; ".join(parts)


def _late_intervals(
    ids: list[int | None],
    samples: list[Sample],
    states: dict[int, PointState],
    late_after_ns: int,
) -> list[DeltaInterval]:
    """The intervals of delta points not newer than their series' state but recent enough
    to be taken if unseen: the only ones that need a lookup."""
    out = []
    for sid, sample in zip(ids, samples, strict=True):
        if sid is None or not is_interval_delta(sample) or sample.time_ns < late_after_ns:
            continue
        state = states.get(sid)
        if state is not None and sample.time_ns <= state.time_ns:
            out.append((sid, sample.start_ns, sample.time_ns))
    return out


def ingest(
    store: MetricStore, request: ExportMetricsServiceRequest, limits: Limits
) -> IngestResult:
    """Store an export request in one transaction; return what was accepted and refused."""
    flat = flatten(request, limits)
    result = IngestResult()
    reasons = dict(flat.reasons)
    rejected = flat.rejected
    if flat.samples:
        created_ns = int(store.created_at() * 1e9)
        late_after = max(time.time() - LATE_DELTA_WINDOW_S, store.delta_intervals_since())
        late_after_ns = int(late_after * 1e9)
        with store.write() as tx:
            ids = tx.resolve_series([s.key for s in flat.samples], limits.max_series)
            states = tx.load_states(i for i in ids if i is not None)
            late = _late_intervals(ids, flat.samples, states, late_after_ns)
            seen = tx.seen_delta_intervals(late) if late else set()
            intervals: list[DeltaInterval] = []
            changed: dict[int, PointState] = {}
            rows: dict[tuple[int, int, int], Aggregate] = {}
            services: set[str] = set()
            order = sorted(range(len(ids)), key=lambda i: flat.samples[i].time_ns)
            for i in order:
                sid, sample = ids[i], flat.samples[i]
                if sid is None:
                    rejected += 1
                    reasons["series limit reached"] = reasons.get("series limit reached", 0) + 1
                    continue
                interval = (sid, sample.start_ns, sample.time_ns)
                delta, new_state = to_delta(
                    states.get(sid),
                    sample,
                    created_ns,
                    seen=interval in seen,
                    late_after_ns=late_after_ns,
                )
                if new_state is not None:
                    states[sid] = changed[sid] = new_state
                if delta is None:
                    result.ignored += 1
                    continue
                if is_interval_delta(sample):
                    seen.add(interval)  # a duplicate later in this export is a replay too
                    intervals.append(interval)
                fan_out(rows, sid, sample.time_ns, delta, limits.max_exemplars)
                services.add(sample.key.service)
                result.accepted += 1
            if rows:
                tx.merge_aggregates(rows, limits.max_exemplars)
            if changed:
                tx.save_states(changed)
            if intervals:
                tx.record_delta_intervals(intervals)
            if result.accepted:
                tx.record_ingest(result.accepted, time.time())
            result.services = sorted(services)
        if result.accepted:
            result.committed_at = time.time()
    result.rejected = rejected
    result.message = _message(reasons) if rejected else ""
    return result
