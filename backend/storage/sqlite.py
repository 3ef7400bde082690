"""SQLite implementation of the metrics store (stdlib sqlite3, one file, WAL mode).

Schema (see docs/api.md for the reasoning):

- `series`: one row per series identity (resource + scope + metric + point attributes),
  with `service`/`instance` columns pulled out of the resource for filtering.
- `buckets`: one row per (resolution, series, bucket start) holding an `Aggregate`
  (scalars in columns, histogram buckets as compact binary, exemplars as JSON).
  Ingest merges every accepted point into its 10 s, 1 min and 1 h bucket in the same
  transaction, so the rollups are always exact, late points included.
- `ingest_state`: the last accepted point per series (time, start time, cumulative
  snapshot) so cumulative → delta conversion and replay detection survive a restart.
- `delta_seen`: every accepted delta sum/histogram interval (series, start, time), written
  in the export's transaction, so a late delta point is taken once and a replay never
  (also after a restart); retention prunes rows older than the late-point window.
- `meta`: key/value (schema version, last ingest time).

Durability: WAL with `synchronous=NORMAL` (default) makes every committed transaction
survive a crash of the process, kill -9 included; `MLPULSE_SQLITE_SYNCHRONOUS=FULL` also
survives power loss at the cost of an fsync per commit. Writes go through one connection
behind a lock and start with `BEGIN IMMEDIATE`; readers use one connection per thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from backend.storage.aggregate import (
    Aggregate,
    dump_exemplars,
    dump_hist,
    load_exemplars,
    load_hist,
    merge,
)
from backend.storage.base import (
    DeltaInterval,
    Kind,
    MetricInfo,
    PointState,
    SeriesInfo,
    SeriesKey,
    StorageBusyError,
)

SCHEMA_VERSION = 1
ACTIVE_WINDOW_S = (
    3600.0  # a series counts against MLPULSE_MAX_SERIES this long after its last point
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    fingerprint BLOB NOT NULL UNIQUE,
    metric TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT NOT NULL,
    monotonic INTEGER NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    attributes TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_by_metric ON series (metric, service);
CREATE TABLE IF NOT EXISTS ingest_state (
    series_id INTEGER PRIMARY KEY REFERENCES series (id),
    start_ns INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    cum_count REAL,
    cum_sum REAL,
    cum_min REAL,
    cum_max REAL,
    cum_hist TEXT
);
CREATE TABLE IF NOT EXISTS buckets (
    resolution INTEGER NOT NULL,
    series_id INTEGER NOT NULL REFERENCES series (id),
    ts INTEGER NOT NULL,
    count REAL NOT NULL,
    sum REAL NOT NULL,
    min REAL,
    max REAL,
    last REAL,
    last_ns INTEGER NOT NULL,
    hist TEXT,
    exemplars TEXT,
    PRIMARY KEY (resolution, series_id, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_by_time ON buckets (resolution, ts);
CREATE TABLE IF NOT EXISTS delta_seen (
    series_id INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    PRIMARY KEY (series_id, start_ns, time_ns)
) WITHOUT ROWID;
"""
# Interval lookups: (series, start, time) triples per query, within SQLite's variable limit.
_INTERVALS_PER_QUERY = 10_000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 300

_BUCKET_COLUMNS = "count, sum, min, max, last, last_ns, hist, exemplars"
_SCALAR_COLUMNS = "count, sum, min, max, last, last_ns, NULL, NULL"
_SELECT_STATES = (
    "SELECT series_id, start_ns, time_ns, cum_count, cum_sum, cum_min, cum_max, cum_hist"
    " FROM ingest_state WHERE series_id IN "
)
# Per series and window: sums, min/max, and the `last` of the latest bucket (a window
# function picks it; SQLite's bare-column rule is ambiguous with several min/max).
_FIRST_BUCKET_SQL = (
    "SELECT min(ts) FROM buckets WHERE resolution = ? AND ts >= ? AND ts < ?"
    " AND series_id IN ({marks})"
)
_WINDOWS_SQL = """
SELECT series_id, w, SUM(count), SUM(sum), MIN(min), MAX(max), MAX(last_ns),
       MAX(CASE WHEN rn = 1 THEN last END)
FROM (
    SELECT series_id, count, sum, min, max, last, last_ns,
           ((ts - ?) / ?) * ? + ? AS w,
           ROW_NUMBER() OVER (
               PARTITION BY series_id, (ts - ?) / ? ORDER BY last_ns DESC
           ) AS rn
    FROM buckets
    WHERE resolution = ? AND series_id IN ({marks}) AND ts >= ? AND ts < ?
)
GROUP BY series_id, w
"""
_SELECT_BUCKETS = (
    "SELECT series_id, "  # noqa: S608
    + _BUCKET_COLUMNS
    + " FROM buckets WHERE resolution = ? AND ts = ? AND series_id IN "
)
_UPSERT_BUCKET = (
    "INSERT OR REPLACE INTO buckets (resolution, series_id, ts, "  # noqa: S608
    + _BUCKET_COLUMNS
    + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row_to_aggregate(row: Sequence[Any]) -> Aggregate:
    explicit, exponential = load_hist(row[6])
    return Aggregate(
        count=row[0],
        sum=row[1],
        min=row[2],
        max=row[3],
        last=row[4],
        last_ns=row[5],
        explicit=explicit,
        exponential=exponential,
        exemplars=load_exemplars(row[7]),
    )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


class _SQLiteWrite:
    """The write transaction handed out by `SQLiteStore.write()`."""

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn
        self.new_series: dict[bytes, int] = {}
        self.ingest: tuple[int, float] | None = None

    def resolve_series(self, keys: Sequence[SeriesKey], max_series: int) -> list[int | None]:
        out: list[int | None] = []
        known = self._store._series_ids
        count: int | None = None
        for key in keys:
            fp = key.fingerprint
            sid = known.get(fp) or self.new_series.get(fp)
            if sid is None:
                row = self._conn.execute(
                    "SELECT id FROM series WHERE fingerprint = ?", (fp,)
                ).fetchone()
                if row is not None:
                    sid = int(row[0])
                    self.new_series[fp] = sid
            if sid is None:
                if count is None:
                    count = self._active_series()
                if count >= max_series:
                    out.append(None)
                    continue
                cur = self._conn.execute(
                    "INSERT INTO series (fingerprint, metric, kind, unit, monotonic, service,"
                    " instance, attributes, resource, scope, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fp,
                        key.metric,
                        key.kind,
                        key.unit,
                        int(key.monotonic),
                        key.service,
                        key.instance,
                        json.dumps(dict(key.attributes)),
                        json.dumps(dict(key.resource)),
                        key.scope,
                        time.time(),
                    ),
                )
                sid = int(cast(int, cur.lastrowid))
                self.new_series[fp] = sid
                count += 1
            out.append(sid)
        return out

    def _active_series(self) -> int:
        """Series that received a point in the last ACTIVE_WINDOW_S (plus any without state).

        Counting active series, not every row, keeps the limit about cardinality: a
        producer restarting with a new `service.instance.id` leaves idle series behind,
        which stop counting after an hour and are deleted once their data has expired.
        """
        since = int((time.time() - ACTIVE_WINDOW_S) * 1e9)
        row = self._conn.execute(
            "SELECT (SELECT count(*) FROM ingest_state WHERE time_ns >= ?)"
            " + (SELECT count(*) FROM series WHERE id NOT IN (SELECT series_id FROM ingest_state))",
            (since,),
        ).fetchone()
        return int(row[0])

    def load_states(self, series_ids: Iterable[int]) -> dict[int, PointState]:
        ids = list(set(series_ids))
        out: dict[int, PointState] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = _SELECT_STATES + f"({marks})"
            rows = self._conn.execute(sql, chunk).fetchall()
            for sid, start_ns, time_ns, c, s, mn, mx, hist in rows:
                cumulative = None
                if c is not None or s is not None:
                    explicit, exponential = load_hist(hist)
                    cumulative = Aggregate(
                        count=c or 0.0,
                        sum=s or 0.0,
                        min=mn,
                        max=mx,
                        explicit=explicit,
                        exponential=exponential,
                    )
                out[int(sid)] = PointState(int(start_ns), int(time_ns), cumulative)
        return out

    def save_states(self, states: Mapping[int, PointState]) -> None:
        rows = []
        for sid, st in states.items():
            c = st.cumulative
            rows.append(
                (
                    sid,
                    st.start_ns,
                    st.time_ns,
                    c.count if c else None,
                    c.sum if c else None,
                    c.min if c else None,
                    c.max if c else None,
                    dump_hist(c) if c else None,
                )
            )
        self._conn.executemany(
            "INSERT OR REPLACE INTO ingest_state (series_id, start_ns, time_ns, cum_count,"
            " cum_sum, cum_min, cum_max, cum_hist) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def merge_aggregates(
        self, rows: Mapping[tuple[int, int, int], Aggregate], max_exemplars: int
    ) -> None:
        # Read what is stored for these keys, grouped by (resolution, bucket start): one
        # export usually puts every series in the same bucket of each resolution.
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for res, sid, ts in rows:
            by_bucket.setdefault((res, ts), []).append(sid)
        stored: dict[tuple[int, int, int], Aggregate] = {}
        for (res, ts), sids in by_bucket.items():
            for chunk in _chunks(sids):
                sql = _SELECT_BUCKETS + f"({','.join('?' * len(chunk))})"
                for row in self._conn.execute(sql, (res, ts, *chunk)):
                    stored[(res, int(row[0]), ts)] = _row_to_aggregate(row[1:])
        out = []
        for (res, sid, ts), agg in rows.items():
            old = stored.get((res, sid, ts))
            merged = merge(old, agg, max_exemplars) if old is not None else agg
            out.append(
                (
                    res,
                    sid,
                    ts,
                    merged.count,
                    merged.sum,
                    merged.min,
                    merged.max,
                    merged.last,
                    merged.last_ns,
                    dump_hist(merged),
                    dump_exemplars(merged.exemplars),
                )
            )
        self._conn.executemany(_UPSERT_BUCKET, out)

    def seen_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> set[DeltaInterval]:
        todo = list(set(intervals))
        out: set[DeltaInterval] = set()
        for i in range(0, len(todo), _INTERVALS_PER_QUERY):
            chunk = todo[i : i + _INTERVALS_PER_QUERY]
            values = ",".join(["(?,?,?)"] * len(chunk))
            sql = (
                f"WITH q (s, a, b) AS (VALUES {values})"  # noqa: S608
                " SELECT d.series_id, d.start_ns, d.time_ns FROM q JOIN delta_seen d"
                " ON d.series_id = q.s AND d.start_ns = q.a AND d.time_ns = q.b"
            )
            params = [v for interval in chunk for v in interval]
            out.update((int(a), int(b), int(c)) for a, b, c in self._conn.execute(sql, params))
        return out

    def record_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO delta_seen (series_id, start_ns, time_ns) VALUES (?, ?, ?)",
            intervals,
        )

    def record_ingest(self, points: int, at: float) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_ingest', ?)", (repr(at),)
        )
        self.ingest = (points, at)


def _chunks(items: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SQLiteStore:
    """The default store: one SQLite file in WAL mode.

    >>> store = SQLiteStore(Path("/tmp/mlpulse.db"))
    >>> with store.write() as tx:
    ...     ids = tx.resolve_series([key], max_series=1000)
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 2_000,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._series_ids: dict[bytes, int] = {}
        self._info: dict[int, SeriesInfo] = {}
        self._closed = False
        self._writer = self._connect()
        with self._write_lock:
            self._writer.executescript(_SCHEMA)
            self._writer.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            existed = self._writer.execute("SELECT 1 FROM meta WHERE key = 'created_at'").fetchone()
            # A store from before `delta_seen` has accepted delta points it has no record
            # of: late points older than the upgrade cannot be told from replays.
            self._writer.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('delta_intervals_since', ?)",
                (repr(time.time()) if existed else "0.0",),
            )
            since = self._writer.execute(
                "SELECT value FROM meta WHERE key = 'delta_intervals_since'"
            ).fetchone()
            self._writer.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                (repr(time.time()),),
            )
            created = self._writer.execute(
                "SELECT value FROM meta WHERE key = 'created_at'"
            ).fetchone()
            row = self._writer.execute(
                "SELECT value FROM meta WHERE key = 'last_ingest'"
            ).fetchone()
        self._last_ingest: float | None = float(row[0]) if row else None
        self._created_at = float(created[0])
        self._delta_intervals_since = float(since[0])

    def _connect(self) -> sqlite3.Connection:
        # Each connection is used by one thread at a time (the writer behind its lock,
        # readers per thread); check_same_thread=False only lets close() reach them all.
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("store is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[_SQLiteWrite]:
        """Open a write transaction; raise StorageBusyError if the database stays locked."""
        if not self._write_lock.acquire(timeout=self._busy_timeout_ms / 1000):
            raise StorageBusyError("another write holds the store")
        try:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StorageBusyError(str(exc)) from exc
                raise
            tx = _SQLiteWrite(self, self._writer)
            try:
                yield tx
                self._writer.execute("COMMIT")
            except BaseException as exc:
                self._writer.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise StorageBusyError(str(exc)) from exc
                raise
            self._series_ids.update(tx.new_series)
            if tx.ingest is not None:
                self._last_ingest = tx.ingest[1]
        finally:
            self._write_lock.release()

    def _series_info(self, row: Sequence[Any]) -> SeriesInfo:
        sid = int(row[0])
        info = self._info.get(sid)
        if info is None:
            info = SeriesInfo(
                id=sid,
                metric=row[1],
                kind=cast(Kind, row[2]),
                unit=row[3],
                monotonic=bool(row[4]),
                service=row[5],
                instance=row[6],
                attributes=json.loads(row[7]),
                resource=json.loads(row[8]),
                scope=row[9],
            )
            self._info[sid] = info
        return info

    def series(self, metric: str, filters: Mapping[str, str] | None = None) -> list[SeriesInfo]:
        """Return the series of a metric whose labels match every filter."""
        rows = self._reader().execute(
            "SELECT id, metric, kind, unit, monotonic, service, instance, attributes,"
            " resource, scope FROM series WHERE metric = ? ORDER BY id",
            (metric,),
        )
        out = [self._series_info(r) for r in rows]
        if filters:
            out = [s for s in out if all(s.label(k) == v for k, v in filters.items())]
        return out

    def read(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        *,
        histograms: bool = True,
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Yield (series id, bucket start, aggregate) for buckets starting in [start, end)."""
        conn = self._reader()
        columns = _BUCKET_COLUMNS if histograms else _SCALAR_COLUMNS
        for chunk in _chunks(list(series_ids)):
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT series_id, ts, {columns} FROM buckets"  # noqa: S608
                f" WHERE resolution = ? AND series_id IN ({marks}) AND ts >= ? AND ts < ?",
                (resolution, *chunk, start, end),
            ).fetchall()
            for row in rows:
                yield int(row[0]), int(row[1]), _row_to_aggregate(row[2:])

    def first_bucket(
        self, series_ids: Sequence[int], resolution: int, start: float, end: float
    ) -> int | None:
        """Return the earliest bucket start in [start, end) among the series, if any."""
        conn = self._reader()
        first: int | None = None
        for chunk in _chunks(list(series_ids)):
            marks = ",".join("?" * len(chunk))
            sql = _FIRST_BUCKET_SQL.replace("{marks}", marks)
            row = conn.execute(sql, (resolution, start, end, *chunk)).fetchone()
            if row and row[0] is not None:
                first = int(row[0]) if first is None else min(first, int(row[0]))
        return first

    def read_windows(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        step: int,
        origin: int,
    ) -> Iterator[tuple[int, int, Aggregate]]:
        """Scalar aggregates merged per series and step window, in SQL."""
        if step <= 0 or start < origin:
            raise ValueError("need step > 0 and start >= origin")
        conn = self._reader()
        for chunk in _chunks(list(series_ids)):
            marks = ",".join("?" * len(chunk))
            sql = _WINDOWS_SQL.replace("{marks}", marks)
            params = (origin, step, step, origin, origin, step, resolution, *chunk, start, end)
            for row in conn.execute(sql, params):
                yield (
                    int(row[0]),
                    int(row[1]),
                    Aggregate(
                        count=row[2],
                        sum=row[3],
                        min=row[4],
                        max=row[5],
                        last_ns=row[6],
                        last=row[7],
                    ),
                )

    def metrics(self) -> list[MetricInfo]:
        """Return every metric name with its kind, unit and series count."""
        rows = self._reader().execute(
            "SELECT metric, kind, unit, count(*) FROM series GROUP BY metric, kind, unit"
            " ORDER BY metric"
        )
        return [MetricInfo(r[0], cast(Kind, r[1]), r[2], int(r[3])) for r in rows]

    def created_at(self) -> float:
        """Return when this store was first created (epoch seconds)."""
        return self._created_at

    def delta_intervals_since(self) -> float:
        """Return since when every accepted delta interval is recorded (0: always)."""
        return self._delta_intervals_since

    def last_ingest(self) -> float | None:
        """Return when the last export committed (epoch seconds), or None."""
        return self._last_ingest

    def delete_before(self, resolution: int, before: float) -> int:
        """Delete buckets of a resolution that start before `before`; return how many."""
        with self._write_lock:
            cur = self._writer.execute(
                "DELETE FROM buckets WHERE resolution = ? AND ts < ?", (resolution, before)
            )
            return int(cur.rowcount)

    def delete_delta_intervals_before(self, before: float) -> int:
        """Forget delta intervals whose point time is before `before`; return how many."""
        before_ns = int(before * 1e9)
        with self._write_lock:
            # Per series, a range of the primary key: a delta interval ends after it
            # starts, so every row to delete has start_ns < before_ns too.
            cur = self._writer.execute(
                "DELETE FROM delta_seen WHERE series_id IN (SELECT id FROM series)"
                " AND start_ns < ? AND time_ns < ?",
                (before_ns, before_ns),
            )
            return int(cur.rowcount)

    def delete_orphan_series(self) -> int:
        """Forget series with no bucket left at any resolution (and their ingest state)."""
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                orphans = (
                    "SELECT id FROM series s WHERE NOT EXISTS (SELECT 1 FROM buckets b"
                    " WHERE b.resolution IN (10, 60, 3600) AND b.series_id = s.id)"
                )
                self._writer.execute(f"DELETE FROM ingest_state WHERE series_id IN ({orphans})")  # noqa: S608
                self._writer.execute(f"DELETE FROM delta_seen WHERE series_id IN ({orphans})")  # noqa: S608
                cur = self._writer.execute(f"DELETE FROM series WHERE id IN ({orphans})")  # noqa: S608
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            if cur.rowcount:
                self._series_ids.clear()
                self._info.clear()
            return int(cur.rowcount)

    def ping(self) -> bool:
        """Return True when the store answers a trivial query."""
        try:
            self._reader().execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        """Close every connection (readers of other threads included)."""
        self._closed = True
        with self._write_lock, self._conns_lock:
            for conn in self._all_conns:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all_conns.clear()
