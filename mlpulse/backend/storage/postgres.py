"""The shared store: several backend replicas on one PostgreSQL database (psycopg 3).

    engine = PostgresEngine("postgresql://mlpulse@db:5432/mlpulse")
    result = ingest(engine, request, limits)      # mlpulse.backend.ingest.pipeline
    rows = engine.read(series_ids, 60, start, end)

Why it has no head: an export may land on any replica, also when consecutive exports of
one cumulative series alternate between replicas, so the state that turns cumulative
points into deltas (the series' last point) must be shared. Each export is therefore one
transaction that locks the `ingest_state` rows of its series (`FOR UPDATE`, in id order,
so two replicas never deadlock), decides every point with `temporality.to_delta`, merges
the deltas into their 10 s / 1 min / 1 h buckets and commits; the 200 goes out after the
COMMIT, so nothing acknowledged is lost and every replica sees the point at once.
Replays and late points stay exact because the decisions are the same as the embedded
engine's, made against the one shared state; delta intervals are deduplicated by their
primary key.

Reads are the shared tiered path (`reads.TieredReads`). Its cache of closed windows is
per replica; a late write (into a bucket older than the close grace) bumps
`meta.generation` in the same transaction, and every replica reads it at most once a
second, so a late point shows everywhere within a second or two.

Other replicas learn about new series from the `series` table (checked at most once a
second by count), and about commits through LISTEN/NOTIFY (`pg_events.py`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from mlpulse.backend.ingest.points import Flattened, Sample
from mlpulse.backend.ingest.temporality import (
    FIRST_SEEN_GRACE_S,
    LATE_DELTA_WINDOW_S,
    is_interval_delta,
    to_delta,
)
from mlpulse.backend.storage.aggregate import (
    Aggregate,
    dump_exemplars,
    dump_hist,
    load_exemplars,
    load_hist,
    merge,
)
from mlpulse.backend.storage.base import (
    RESOLUTIONS,
    DeltaInterval,
    MetricInfo,
    PointState,
    SeriesInfo,
    SeriesKey,
    StorageBusyError,
    StoreUnavailableError,
)
from mlpulse.backend.storage.engine import ACTIVE_WINDOW_S
from mlpulse.backend.storage.head import CLOSE_GRACE_S, bucket_of
from mlpulse.backend.storage.reads import TieredReads, scalar

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA_LOCK = 0x6D6C_7075_6C73_0001  # advisory lock: one replica creates the schema
_NOTIFY_CHANNEL = "mlpulse_ingest"
_REFRESH_S = 1.0  # how stale a replica's series list and generation may be
_HEARTBEAT_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id BIGSERIAL PRIMARY KEY,
    fingerprint BYTEA NOT NULL UNIQUE,
    metric TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT NOT NULL,
    monotonic BOOLEAN NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    attributes TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS series_by_metric ON series (metric, service);
CREATE TABLE IF NOT EXISTS ingest_state (
    series_id BIGINT PRIMARY KEY REFERENCES series (id) ON DELETE CASCADE,
    start_ns BIGINT,
    time_ns BIGINT,
    cum_count DOUBLE PRECISION,
    cum_sum DOUBLE PRECISION,
    cum_min DOUBLE PRECISION,
    cum_max DOUBLE PRECISION,
    cum_hist BYTEA
);
CREATE TABLE IF NOT EXISTS buckets (
    resolution INTEGER NOT NULL,
    series_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    count DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION,
    max DOUBLE PRECISION,
    last DOUBLE PRECISION,
    last_ns BIGINT NOT NULL,
    hist BYTEA,
    exemplars TEXT,
    PRIMARY KEY (resolution, series_id, ts)
);
CREATE INDEX IF NOT EXISTS buckets_by_time ON buckets (resolution, ts);
CREATE TABLE IF NOT EXISTS delta_seen (
    series_id BIGINT NOT NULL,
    start_ns BIGINT NOT NULL,
    time_ns BIGINT NOT NULL,
    PRIMARY KEY (series_id, start_ns, time_ns)
);
CREATE INDEX IF NOT EXISTS delta_seen_by_time ON delta_seen (time_ns);
CREATE TABLE IF NOT EXISTS replicas (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    last_ingest DOUBLE PRECISION
);
"""

_BUCKET_COLUMNS = "count, sum, min, max, last, last_ns, hist, exemplars"
# Bulk moves go through COPY into session-local temporary tables (emptied at COMMIT):
# psycopg's COPY writes rows in C, where executemany or array parameters cost 30-150 µs
# per bucket row. The export's bucket keys go in `incoming_keys` to read what is stored,
# the merged buckets into `incoming_buckets`, upserted in one statement.
_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming_keys (r INTEGER, s BIGINT, t BIGINT)"
    " ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS incoming_buckets (LIKE buckets) ON COMMIT DELETE ROWS"
)
_COPY_KEYS = "COPY incoming_keys (r, s, t) FROM STDIN"
_COPY_BUCKETS = (
    "COPY incoming_buckets (resolution, series_id, ts, count, sum, min, max, last, last_ns,"
    " hist, exemplars) FROM STDIN"
)
_UPSERT_BUCKETS = (
    "INSERT INTO buckets SELECT * FROM incoming_buckets"
    " ON CONFLICT (resolution, series_id, ts) DO UPDATE SET count = EXCLUDED.count,"
    " sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, last = EXCLUDED.last,"
    " last_ns = EXCLUDED.last_ns, hist = EXCLUDED.hist, exemplars = EXCLUDED.exemplars"
)
_SELECT_STORED = (
    "SELECT b.resolution, b.series_id, b.ts, b.count, b.sum, b.min, b.max, b.last, b.last_ns,"
    " b.hist, b.exemplars FROM incoming_keys q"
    " JOIN buckets b ON b.resolution = q.r AND b.series_id = q.s AND b.ts = q.t"
)
_UPDATE_STATES = (
    "UPDATE ingest_state AS st SET start_ns = u.start_ns, time_ns = u.time_ns,"
    " cum_count = u.c, cum_sum = u.s, cum_min = u.mn, cum_max = u.mx, cum_hist = u.h"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::bytea[]) AS u (sid, start_ns, time_ns, c, s, mn, mx, h)"
    " WHERE st.series_id = u.sid"
)
# The columns `_series_info` reads, in its order.
_SELECT_SERIES = (
    "SELECT id, fingerprint, metric, kind, unit, monotonic, service, instance, attributes,"
    " resource, scope FROM series"
)
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def _row_aggregate(row: Sequence[Any]) -> Aggregate:
    explicit, exponential = load_hist(bytes(row[6]) if row[6] is not None else None)
    return Aggregate(
        count=row[0], sum=row[1], min=row[2], max=row[3], last=row[4], last_ns=row[5],
        explicit=explicit, exponential=exponential, exemplars=load_exemplars(row[7]),
    )  # fmt: skip


def _state_of(row: Sequence[Any]) -> PointState | None:
    """An `ingest_state` row (without its id) as a PointState; None before any point."""
    start_ns, time_ns, c, s, mn, mx, hist = row
    if time_ns is None:
        return None
    cumulative = None
    if c is not None or s is not None:
        explicit, exponential = load_hist(bytes(hist) if hist is not None else None)
        cumulative = Aggregate(
            count=c or 0.0, sum=s or 0.0, min=mn, max=mx,
            explicit=explicit, exponential=exponential,
        )  # fmt: skip
    return PointState(int(start_ns), int(time_ns), cumulative)


def _state_row(sid: int, state: PointState) -> tuple[Any, ...]:
    c = state.cumulative
    if c is None:
        return (sid, state.start_ns, state.time_ns, None, None, None, None, None)
    return (
        sid, state.start_ns, state.time_ns, float(c.count), float(c.sum), _f(c.min), _f(c.max),
        dump_hist(c),
    )  # fmt: skip


def _f(value: float | None) -> float | None:
    """A float8 array element: ints (counts of a sum) become floats, None stays NULL."""
    return None if value is None else float(value)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as `width` parallel lists (the arrays an `unnest` statement takes)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _series_info(row: Sequence[Any]) -> tuple[bytes, SeriesInfo]:
    sid, fp, metric, kind, unit, monotonic, service, instance, attrs, resource, scope = row
    return bytes(fp), SeriesInfo(
        id=int(sid), metric=metric, kind=kind, unit=unit, monotonic=bool(monotonic),
        service=service, instance=instance, attributes=json.loads(attrs),
        resource=json.loads(resource), scope=scope,
    )  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_error(url: str, exc: BaseException) -> str:
    """A one-line cause for a failed connection, without the password."""
    return f"cannot use the database at {redact(url)}: {_first_line(exc)}"


def redact(url: str) -> str:
    """The URL with any password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}"


class PostgresEngine(TieredReads):
    """The metrics store on PostgreSQL, shared by replicas (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        limits: Any = None,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.limits = limits
        self.max_exemplars = int(getattr(limits, "max_exemplars", 4))
        self.replica_id = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:  # a wrong URL, a refused connection: one clear error, before any thread
            with psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s))) as conn:
                self._create_schema(conn)
        except psycopg.Error as exc:
            raise StoreUnavailableError(connect_error(url, exc)) from exc
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=connect_timeout_s,
            kwargs={"connect_timeout": max(1, int(connect_timeout_s))},
            check=ConnectionPool.check_connection,
            name="mlpulse",
            open=True,
        )
        self.lock = threading.Lock()  # the registry and local caches
        self._ids: dict[bytes, int] = {}
        self._info: dict[int, SeriesInfo] = {}
        self._by_metric: dict[str, list[int]] = {}
        self._refreshed_at = 0.0
        self._generation_value = 0
        self._generation_at = 0.0
        self._last_ingest: float | None = None
        self._cluster_last_ingest: tuple[float, float | None] = (0.0, None)
        meta = self._meta()
        self._created_at = float(meta["created_at"])
        self._created_ns = int(self._created_at * 1e9)
        self._refresh(force=True)
        self._closed = False
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name="mlpulse-pg-heartbeat", daemon=True
        )
        self._heartbeat.start()

    # --- schema -----------------------------------------------------------------------

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)
            now = repr(time.time())
            for key, value in (
                ("schema_version", str(SCHEMA_VERSION)),
                ("created_at", now),
                ("generation", "0"),
            ):
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (key, value),
                )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise StoreUnavailableError(
                    f"the database has schema {row[0]}, newer than this mlpulse ({SCHEMA_VERSION})"
                )

    def _meta(self) -> dict[str, str]:
        with self.pool.connection() as conn:
            return {k: v for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}

    # --- series -----------------------------------------------------------------------

    def _add_info(self, fp: bytes, info: SeriesInfo) -> None:
        if info.id in self._info:
            return
        self._ids[fp] = info.id
        self._info[info.id] = info
        self._by_metric.setdefault(info.metric, []).append(info.id)

    def _forget(self, sids: Iterable[int]) -> None:
        for sid in sids:
            info = self._info.pop(sid, None)
            if info is None:
                continue
            self._by_metric[info.metric].remove(sid)
            for fp, known in list(self._ids.items()):
                if known == sid:
                    del self._ids[fp]

    def _refresh(self, *, force: bool = False) -> None:
        """Learn the series other replicas created (or retention removed), once a second."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < _REFRESH_S:
            return
        self._refreshed_at = now
        with self.pool.connection() as conn:
            counted = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM series").fetchone()
            count, top = counted if counted is not None else (0, 0)
            with self.lock:
                if count == len(self._info) and (not self._info or top == max(self._info)):
                    return
            ids = {int(r[0]) for r in conn.execute("SELECT id FROM series").fetchall()}
            with self.lock:
                missing = sorted(ids - set(self._info))
                gone = set(self._info) - ids
            rows = []
            if missing:
                rows = conn.execute(
                    _SELECT_SERIES + " WHERE id = ANY(%s)",
                    (missing,),
                ).fetchall()
        with self.lock:
            self._forget(gone)
            for row in rows:
                self._add_info(*_series_info(row))

    def _resolve(self, keys: Sequence[SeriesKey], max_series: int, now: float) -> list[int | None]:
        """The id of each series; unknown ones are created (their own short transaction)."""
        with self.lock:
            ids: list[int | None] = [self._ids.get(k.fingerprint) for k in keys]
        todo: dict[bytes, SeriesKey] = {}
        for key, sid in zip(keys, ids, strict=True):
            if sid is None:
                todo.setdefault(key.fingerprint, key)
        if not todo:
            return ids
        with self.pool.connection() as conn:
            since = int((now - ACTIVE_WINDOW_S) * 1e9)
            row = conn.execute(
                "SELECT count(*) FROM ingest_state WHERE time_ns IS NULL OR time_ns >= %s",
                (since,),
            ).fetchone()
            room = max(0, max_series - int(row[0] if row else 0))
            found = {
                bytes(r[1]): r
                for r in conn.execute(
                    _SELECT_SERIES + " WHERE fingerprint = ANY(%s)",
                    (list(todo),),
                ).fetchall()
            }
            # The first ones of the export get the room left (as the embedded engine does);
            # inserted in fingerprint order, so concurrent replicas never deadlock.
            new = sorted([fp for fp in todo if fp not in found][:room])
            if new:
                with conn.transaction():
                    conn.cursor().executemany(
                        "INSERT INTO series (fingerprint, metric, kind, unit, monotonic, service,"
                        " instance, attributes, resource, scope, created_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (fingerprint) DO NOTHING",
                        [_series_params(fp, todo[fp], now) for fp in new],
                    )
                    conn.execute(
                        "INSERT INTO ingest_state (series_id) SELECT id FROM series"
                        " WHERE fingerprint = ANY(%s) ORDER BY id ON CONFLICT DO NOTHING",
                        (new,),
                    )
                found.update(
                    (bytes(r[1]), r)
                    for r in conn.execute(
                        _SELECT_SERIES + " WHERE fingerprint = ANY(%s)",
                        (new,),
                    ).fetchall()
                )
        with self.lock:
            for row in found.values():
                self._add_info(*_series_info(row))
            return [self._ids.get(k.fingerprint) for k in keys]

    # --- write path -------------------------------------------------------------------

    def apply(self, flat: Flattened, limits: Any, now: float) -> tuple[int, int, int, list[str]]:
        """Store the samples of one export in one transaction.

        Returns (accepted, ignored, over the series limit, services). Raises
        StorageBusyError (a retryable 503) when the database cannot take it.
        """
        try:
            for attempt in range(3):
                try:
                    return self._apply(flat.samples, limits, now)
                except _RETRYABLE:
                    if attempt == 2:
                        raise
                except _MissingSeriesError as exc:
                    with self.lock:
                        self._forget(exc.sids)
            raise AssertionError("unreachable")  # pragma: no cover
        except (psycopg.Error, StoreUnavailableError, OSError) as exc:
            raise StorageBusyError(f"database: {_first_line(exc)}") from exc
        except PoolTimeout as exc:
            raise StorageBusyError(f"database: {_first_line(exc)}") from exc

    def _apply(
        self, samples: list[Sample], limits: Any, now: float
    ) -> tuple[int, int, int, list[str]]:
        ids = self._resolve([s.key for s in samples], limits.max_series, now)
        over = sum(1 for sid in ids if sid is None)
        sids = sorted({sid for sid in ids if sid is not None})
        if not sids:
            return 0, 0, over, []
        late_after_ns = int((now - LATE_DELTA_WINDOW_S) * 1e9)
        horizon_ns = int((now - CLOSE_GRACE_S - 10) * 1e9)
        accepted = ignored = 0
        services: set[str] = set()
        buckets: dict[tuple[int, int, int], Aggregate] = {}
        changed: dict[int, PointState] = {}
        late = False
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT series_id, start_ns, time_ns, cum_count, cum_sum, cum_min, cum_max,"
                " cum_hist FROM ingest_state WHERE series_id = ANY(%s) ORDER BY series_id"
                " FOR UPDATE",
                (sids,),
            ).fetchall()
            states: dict[int, PointState | None] = {int(r[0]): _state_of(r[1:]) for r in rows}
            missing = [sid for sid in sids if sid not in states]
            if missing:
                raise _MissingSeriesError(missing)
            fresh = self._record_intervals(conn, ids, samples)
            used: set[DeltaInterval] = set()
            order = sorted(range(len(ids)), key=lambda i: samples[i].time_ns)
            for i in order:
                sid, sample = ids[i], samples[i]
                if sid is None:
                    continue
                seen = False
                if is_interval_delta(sample):
                    interval = (sid, sample.start_ns, sample.time_ns)
                    seen = interval not in fresh or interval in used
                    used.add(interval)
                delta, state = to_delta(
                    states[sid], sample, self._created_ns, FIRST_SEEN_GRACE_S,
                    seen=seen, late_after_ns=late_after_ns,
                )  # fmt: skip
                if delta is None:
                    ignored += 1
                    continue
                if state is not None:
                    states[sid] = changed[sid] = state
                late = late or sample.time_ns < horizon_ns
                for res in RESOLUTIONS:
                    key = (res, sid, bucket_of(sample.time_ns, res))
                    cur = buckets.get(key)
                    buckets[key] = delta if cur is None else merge(cur, delta, self.max_exemplars)
                services.add(sample.key.service)
                accepted += 1
            if buckets:
                self._merge_buckets(conn, buckets)
            if changed:
                states_rows = [_state_row(sid, st) for sid, st in sorted(changed.items())]
                conn.execute(_UPDATE_STATES, _columns(states_rows, 8))
            if late:
                self._bump_generation(conn)  # every replica's cached windows are stale
            if accepted:
                event = {
                    "replica": self.replica_id,
                    "points": accepted,
                    "services": sorted(services),
                }
                conn.execute("SELECT pg_notify(%s, %s)", (_NOTIFY_CHANNEL, json.dumps(event)))
        return accepted, ignored, over, sorted(services)

    def _record_intervals(
        self, conn: psycopg.Connection[Any], ids: list[int | None], samples: list[Sample]
    ) -> set[DeltaInterval]:
        """Insert the export's delta intervals; return those that were not stored before."""
        intervals = sorted(
            {
                (sid, s.start_ns, s.time_ns)
                for sid, s in zip(ids, samples, strict=True)
                if sid is not None and is_interval_delta(s)
            }
        )
        if not intervals:
            return set()
        rows = conn.execute(
            "INSERT INTO delta_seen (series_id, start_ns, time_ns)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING series_id, start_ns, time_ns",
            ([i[0] for i in intervals], [i[1] for i in intervals], [i[2] for i in intervals]),
        ).fetchall()
        return {(int(a), int(b), int(c)) for a, b, c in rows}

    def _merge_buckets(
        self, conn: psycopg.Connection[Any], buckets: Mapping[tuple[int, int, int], Aggregate]
    ) -> None:
        """Merge the export's deltas into the stored buckets (their series are locked)."""
        keys = sorted(buckets)
        with conn.cursor() as cur:
            cur.execute(_TEMP_TABLES)
            with cur.copy(_COPY_KEYS) as copy:
                for key in keys:
                    copy.write_row(key)
            stored = {
                (int(row[0]), int(row[1]), int(row[2])): _row_aggregate(row[3:])
                for row in cur.execute(_SELECT_STORED).fetchall()
            }
            with cur.copy(_COPY_BUCKETS) as copy:
                for key in keys:
                    agg = buckets[key]
                    old = stored.get(key)
                    if old is not None:
                        agg = merge(old, agg, self.max_exemplars)
                    copy.write_row(
                        (*key, agg.count, agg.sum, agg.min, agg.max, agg.last, agg.last_ns,
                         dump_hist(agg), dump_exemplars(agg.exemplars))
                    )  # fmt: skip
            cur.execute(_UPSERT_BUCKETS)

    def committed(self, at: float) -> None:
        """Note when an export that stored points committed (for `last_ingest`)."""
        self._last_ingest = at

    # --- read path (MetricStore) ------------------------------------------------------

    def _generation(self) -> int:
        now = time.monotonic()
        if now - self._generation_at >= _REFRESH_S:
            try:
                with self.pool.connection() as conn:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                self._generation_value = int(row[0]) if row else 0
                self._generation_at = now
            except psycopg.Error:
                log.warning("generation check failed; cached results kept for now")
        return self.cache.generation(self._generation_value)

    def _read(
        self, sids: list[int], resolution: int, lo: int, hi: float, histograms: bool
    ) -> dict[tuple[int, int], Aggregate]:
        if not sids:
            return {}
        cols = _BUCKET_COLUMNS if histograms else "count, sum, min, max, last, last_ns, NULL, NULL"
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT series_id, ts, {cols} FROM buckets WHERE resolution = %s"  # noqa: S608
                " AND series_id = ANY(%s) AND ts >= %s AND ts < %s",
                (resolution, sids, lo, hi),
            ).fetchall()
        out = {(int(r[0]), int(r[1])): _row_aggregate(r[2:]) for r in rows}
        if not histograms:
            out = {k: scalar(v) for k, v in out.items()}
        return out

    def series(self, metric: str, filters: Mapping[str, str] | None = None) -> list[SeriesInfo]:
        """Return the series of a metric whose labels match every filter."""
        self._refresh()
        with self.lock:
            infos = [self._info[i] for i in self._by_metric.get(metric, ())]
        if filters:
            infos = [s for s in infos if all(s.label(k) == v for k, v in filters.items())]
        return sorted(infos, key=lambda s: s.id)

    def first_bucket(
        self, series_ids: Sequence[int], resolution: int, start: float, end: float
    ) -> int | None:
        """Return the earliest bucket start in [start, end) among the series, if any."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT min(ts) FROM buckets WHERE resolution = %s AND series_id = ANY(%s)"
                " AND ts >= %s AND ts < %s",
                (resolution, list(series_ids), int(start // 1), end),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def metrics(self) -> list[MetricInfo]:
        """Return every metric name with its kind, unit and series count."""
        self._refresh()
        with self.lock:
            groups: dict[tuple[str, str, str], int] = {}
            for info in self._info.values():
                k = (info.metric, info.kind, info.unit)
                groups[k] = groups.get(k, 0) + 1
        return [MetricInfo(m, kind, unit, n) for (m, kind, unit), n in sorted(groups.items())]  # type: ignore[arg-type]

    def created_at(self) -> float:
        """Return when the database's schema was first created (epoch seconds)."""
        return self._created_at

    def last_ingest(self) -> float | None:
        """Return the newest commit of any replica (as of its last heartbeat) or of this one."""
        mine = self._last_ingest
        theirs = self._cluster_last_ingest[1]
        if mine is None or (theirs is not None and theirs > mine):
            return theirs
        return mine

    def delta_intervals_since(self) -> float:
        """Every accepted delta interval is recorded from the schema's creation on."""
        return 0.0

    # --- replicas ---------------------------------------------------------------------

    def _beat(self) -> None:
        host = os.uname().nodename
        started = time.time()
        while not self._stop.wait(_HEARTBEAT_S if self._cluster_last_ingest[0] else 0):
            try:
                with self.pool.connection() as conn:
                    conn.execute(
                        "INSERT INTO replicas (id, host, started_at, heartbeat_at, last_ingest)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                        " heartbeat_at = EXCLUDED.heartbeat_at, last_ingest = EXCLUDED.last_ingest",
                        (self.replica_id, host, started, time.time(), self._last_ingest),
                    )
                    row = conn.execute("SELECT max(last_ingest) FROM replicas").fetchone()
                    self._cluster_last_ingest = (time.time(), row[0] if row else None)
                    conn.execute(
                        "DELETE FROM replicas WHERE heartbeat_at < %s", (time.time() - 3600,)
                    )
            except Exception as exc:  # the database is away: ingest says so with 503s
                log.debug("replica heartbeat failed: %s", exc)
                self._cluster_last_ingest = (time.time(), self._cluster_last_ingest[1])

    def replicas(self) -> list[dict[str, Any]]:
        """The replicas that sent a heartbeat in the last 30 s."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, host, started_at, heartbeat_at, last_ingest FROM replicas"
                " WHERE heartbeat_at >= %s ORDER BY started_at",
                (time.time() - 30,),
            ).fetchall()
        keys = ("id", "host", "started_at", "heartbeat_at", "last_ingest")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # --- maintenance ------------------------------------------------------------------

    def _bump_generation(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")

    def delete_before(self, resolution: int, before: float) -> int:
        """Delete buckets of a resolution older than `before`, in batches of 10,000 rows."""
        total = 0
        while True:
            with self.pool.connection() as conn, conn.transaction():
                cur = conn.execute(
                    "DELETE FROM buckets WHERE ctid IN (SELECT ctid FROM buckets"
                    " WHERE resolution = %s AND ts < %s LIMIT 10000)",
                    (resolution, before),
                )
                n = cur.rowcount
                if n:
                    self._bump_generation(conn)
            total += n
            if n < 10000:
                break
        if total:
            with self._rw.exclusive():
                self.cache.clear()
        return total

    def delete_orphan_series(self) -> int:
        """Forget series with no bucket left that sent nothing within the longest window."""
        before = int((time.time() - max(ACTIVE_WINDOW_S, LATE_DELTA_WINDOW_S)) * 1e9)
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "DELETE FROM series s USING ingest_state st WHERE st.series_id = s.id"
                " AND (st.time_ns IS NULL OR st.time_ns < %s)"
                " AND NOT EXISTS (SELECT 1 FROM buckets b WHERE b.series_id = s.id)"
                " RETURNING s.id",
                (before,),
            ).fetchall()
        gone = {int(r[0]) for r in rows}
        if gone:
            with self.lock:
                self._forget(gone)
        return len(gone)

    def delete_delta_intervals_before(self, before: float) -> int:
        """Forget delta intervals whose point time is before `before`."""
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM delta_seen WHERE time_ns < %s", (int(before * 1e9),))
            return cur.rowcount

    def ping(self) -> bool:
        """Return True when the database answers."""
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        """Stop the heartbeat and close the pool."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._heartbeat.join(timeout=5)
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("DELETE FROM replicas WHERE id = %s", (self.replica_id,))
        except Exception:
            log.debug("could not unregister the replica", exc_info=True)
        self.pool.close()

    def stats(self) -> dict[str, Any]:
        """Sizes, for /health and benchmarks."""
        with self.lock:
            return {"series": len(self._info), "replica": self.replica_id}


class _MissingSeriesError(Exception):
    """Series this replica knew were removed (retention): resolve them again."""

    def __init__(self, sids: list[int]) -> None:
        super().__init__(f"{len(sids)} series removed meanwhile")
        self.sids = sids


def _text(value: str) -> str:
    # PostgreSQL's text cannot hold NUL; client strings may. The JSON columns escape it
    # (\u0000), the plain ones show U+FFFD; the fingerprint keeps the exact identity.
    return value.replace("\x00", "\ufffd")


def _series_params(fp: bytes, key: SeriesKey, now: float) -> tuple[Any, ...]:
    return (
        fp, _text(key.metric), key.kind, _text(key.unit), key.monotonic, _text(key.service),
        _text(key.instance), json.dumps(dict(key.attributes), sort_keys=True),
        json.dumps(dict(key.resource), sort_keys=True), _text(key.scope), now,
    )  # fmt: skip


def notify_channel() -> str:
    """The LISTEN/NOTIFY channel commits are announced on."""
    return _NOTIFY_CHANNEL


__all__ = ["PostgresEngine", "StoreUnavailableError", "connect_error", "notify_channel", "redact"]
