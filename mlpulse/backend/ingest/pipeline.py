"""One export request, end to end: flatten, limit, log, apply to the head.

`ingest(engine, request, limits)` runs in a worker thread. Flattening (the costly part:
protobuf to samples, limits, validation) runs outside any lock; then, under the engine's
lock, the request's bytes go to the write-ahead log and its points into the head. When
`ingest` returns, the export is durable (it is replayed from the WAL after a crash), so
its 200 can go out; a checkpoint writes it to the database a few seconds later.

Per point the decision is `temporality.to_delta`'s, made against the head's state:

- gauges and cumulative points not newer than the series' last point: replays or out of
  order, ignored;
- delta sums and histograms are deduplicated by their exact interval: a recorded one is
  a replay; an older unrecorded one (a collector re-sending a batch late) is new data
  and lands in the buckets of its own time, while its records are kept;
- cumulative points telescope in the head (the open bucket's delta is `last - base`);
  a new start time or a value going down is a restart, counted from zero.

Replay after a crash runs the same code on the logged bytes with the logged server time,
so it makes the same decisions and assigns the same series ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from mlpulse.backend.config import BackendSettings
from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.otlp import decode_request
from mlpulse.backend.ingest.points import Flattened, Sample, flatten
from mlpulse.backend.ingest.temporality import (
    FIRST_SEEN_GRACE_S,
    LATE_DELTA_WINDOW_S,
    is_interval_delta,
)
from mlpulse.backend.storage.base import DeltaInterval
from mlpulse.backend.storage.engine import Engine
from mlpulse.backend.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    # Imported where a PostgreSQL store is opened: the driver costs an embedded backend
    # about 20 MiB of resident memory for nothing.
    from mlpulse.backend.storage.postgres import PostgresEngine

PROTOBUF, JSON = 0, 1  # encodings as logged


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


def ingest(
    engine: Engine | PostgresEngine,
    request: ExportMetricsServiceRequest,
    limits: Limits,
    raw: tuple[bytes, int] | None = None,
    *,
    now: float | None = None,
) -> IngestResult:
    """Store an export request durably; return what was accepted and refused.

    `raw` is the request as received (body, PROTOBUF or JSON), which is what the WAL
    keeps; without it the request is serialized for the log.
    """
    now = time.time() if now is None else now
    flat = flatten(request, limits, int(now * 1e9))
    result = IngestResult()
    reasons = dict(flat.reasons)
    rejected = flat.rejected
    if flat.samples:
        if not isinstance(engine, Engine):
            # The shared store (PostgresEngine): one transaction per export, committed
            # before the 200.
            result.accepted, result.ignored, over, result.services = engine.apply(flat, limits, now)
        else:
            body, encoding = raw if raw is not None else (request.SerializeToString(), PROTOBUF)
            with engine.lock:
                engine.log_export(body, encoding, now)
                over = _apply(engine, flat, limits, now, result)
        if over:
            rejected += over
            reasons["series limit reached"] = reasons.get("series limit reached", 0) + over
            if limits.tally is not None:
                limits.tally["series_limit"] += over
        if result.accepted:
            result.committed_at = time.time()
            engine.committed(result.committed_at)
    result.rejected = rejected
    result.message = _message(reasons) if rejected else ""
    return result


def replay(engine: Engine, body: bytes, encoding: int, now: float) -> None:
    """Apply a logged export again (engine start-up): same bytes, same server time."""
    request = decode_request(body, "protobuf" if encoding == PROTOBUF else "json")
    flat = flatten(request, engine.limits, int(now * 1e9))
    if flat.samples:
        with engine.lock:
            _apply(engine, flat, engine.limits, now, IngestResult())


def _apply(
    engine: Engine, flat: Flattened, limits: Limits, now: float, result: IngestResult
) -> int:
    """Apply samples to the head (engine lock held); return how many hit the series limit."""
    head = engine.head
    head.now = now
    samples = flat.samples
    ids = engine.resolve_series([s.key for s in samples], limits.max_series, now)
    late_after = max(now - LATE_DELTA_WINDOW_S, engine.delta_intervals_since())
    late_after_ns = int(late_after * 1e9)
    late = _late_intervals(engine, ids, samples, late_after_ns)
    seen = engine.seen_intervals(late) if late else set()
    resources: set[tuple[tuple[str, str], ...]] = set()  # of accepted points
    over = 0
    order = sorted(range(len(ids)), key=lambda i: samples[i].time_ns)
    series = head.series
    for i in order:
        sid, sample = ids[i], samples[i]
        if sid is None:
            over += 1
            continue
        entry = series.get(sid)
        state = None if entry is None else entry.state
        newer = state is None or sample.time_ns > state.time_ns
        if not sample.cumulative and sample.key.kind != "gauge":  # is_interval_delta
            interval = (sid, sample.start_ns, sample.time_ns)
            if interval in seen or (not newer and sample.time_ns < late_after_ns):
                result.ignored += 1
                continue
            seen.add(interval)  # a duplicate later in this export is a replay too
            engine.intervals.add(interval)
            head.add_delta(sid, sample, newer=newer)
        elif not newer:
            result.ignored += 1
            continue
        elif not sample.cumulative:
            head.add_delta(sid, sample, newer=True)  # a gauge reading
        elif not head.add_cumulative(sid, sample, FIRST_SEEN_GRACE_S):
            result.ignored += 1
            continue
        resources.add(sample.key.resource)
        result.accepted += 1
    # Per distinct resource, not per point: a request has one or a few.
    result.services = sorted({dict(r).get("service.name", "") for r in resources})
    return over


def _late_intervals(
    engine: Engine, ids: list[int | None], samples: list[Sample], late_after_ns: int
) -> list[DeltaInterval]:
    """The intervals of delta points not newer than their series' state but recent enough
    to be taken if unseen: the only ones that need a lookup."""
    out = []
    for sid, sample in zip(ids, samples, strict=True):
        if sample.cumulative or sid is None or sample.time_ns < late_after_ns:
            continue  # cumulative points (most of them) first: the cheapest test
        if not is_interval_delta(sample):
            continue
        state = engine.head.state(sid)
        if state is not None and sample.time_ns <= state.time_ns:
            out.append((sid, sample.start_ns, sample.time_ns))
    return out


def open_engine(
    path: Path,
    limits: Limits | None = None,
    *,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int = 2_000,
    checkpoint_interval_s: float = 2.0,
    checkpoint_backlog_s: float = 30.0,
) -> Engine:
    """Open the embedded engine on a SQLite file (WAL folder beside it) and replay its WAL."""
    store = SQLiteStore(path, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
    return Engine(
        store,
        path.parent / f"{path.stem}-wal",
        limits=limits or Limits(),
        sync=synchronous == "FULL",
        checkpoint_interval_s=checkpoint_interval_s,
        checkpoint_backlog_s=checkpoint_backlog_s,
        replay=replay,
    )


def open_store(settings: BackendSettings, limits: Limits | None = None) -> Engine | PostgresEngine:
    """Open the store `MLPULSE_STORAGE_URL` names: PostgreSQL (shared) or SQLite (embedded).

    Raises `StoreUnavailableError` with a one-line cause when PostgreSQL cannot be used.
    """
    limits = limits or Limits.from_settings(settings)
    if settings.postgres_url is not None:
        from mlpulse.backend.storage.postgres import PostgresEngine

        return PostgresEngine(
            settings.postgres_url, limits=limits, pool_size=settings.postgres_pool_size
        )
    return open_engine(
        settings.database_path,
        limits,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        checkpoint_backlog_s=settings.checkpoint_backlog_s,
    )
