"""SQLite implementation of the persistent store (stdlib sqlite3, one file, WAL mode).

The engine (`engine.py`) keeps open buckets in memory and writes a checkpoint here every
few seconds, in one transaction. Schema:

- `series`: one row per series identity (resource + scope + metric + point attributes),
  with `service`/`instance` columns pulled out of the resource for filtering.
- `buckets`: one row per closed (resolution, series, bucket start), an `Aggregate`
  (scalars in columns, histogram buckets as compact binary, exemplars as JSON). Every
  point lands in its 10 s, 1 min and 1 h bucket, so the rollups are exact, late points
  included (a late point's bucket is merged into the stored one).
- `head_state`: per series, the head's state at the last checkpoint (last point, the
  cumulative snapshots, open buckets); with `meta.wal_segment`, where WAL replay starts.
- `ingest_state`: the per-series state of schema 1 (before the head), read once to
  convert an old data folder.
- `delta_seen`: every accepted delta sum/histogram interval (series, start, time), so a
  late delta point is taken once and a replay never (also after a restart); retention
  prunes rows older than the late-point window.
- `meta`: key/value (schema version, created, last ingest, WAL segment).

Durability comes from the WAL in front (nothing is acknowledged before it is there);
`MLPULSE_SQLITE_SYNCHRONOUS=FULL` fsyncs both the WAL and every checkpoint. Writes go
through one connection behind a lock; readers use one connection per thread.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any, cast

from mlpulse.backend.storage.aggregate import (
    Aggregate,
    dump_exemplars,
    dump_hist,
    load_exemplars,
    load_hist,
    merge,
)
from mlpulse.backend.storage.base import (
    DeltaInterval,
    Kind,
    MetricInfo,
    PointState,
    SeriesInfo,
    SeriesKey,
    StorageBusyError,
)

SCHEMA_VERSION = 2  # 2: the head's checkpoints (head_state, meta wal_segment)

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
CREATE TABLE IF NOT EXISTS head_state (
    series_id INTEGER PRIMARY KEY,
    state BLOB NOT NULL
);
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


def _load_states(conn: sqlite3.Connection, series_ids: Iterable[int]) -> dict[int, PointState]:
    """Read schema-1 ingest states (the last point and cumulative snapshot per series)."""
    ids = list(set(series_ids))
    out: dict[int, PointState] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(_SELECT_STATES + f"({marks})", chunk).fetchall()
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


# --- the parameters of a bucket row --------------------------------------------------
#
# The checkpoint binds ~10 parameters per closed bucket, and the sqlite3 module binds an
# int, float, str or bytearray directly but looks every other type up as a possible
# adapter first (a registry lookup and two attribute misses: ~0.3 us for None, ~0.4 us
# for bytes, as much as SQLite's own insert of a short row). So the rows are built of
# those four types only, with what SQLite stores unchanged:
#
# - NULL is bound as NaN: SQLite stores a NaN double as NULL (sqlite3_bind_double), so
#   the column holds NULL exactly as when None is bound (and a NaN value was NULL before
#   too). Only the nullable columns (min, max, last, hist, exemplars) get it.
# - A histogram is a bytearray (`dump_hist`), stored as the same BLOB as bytes.

_NULL = math.nan  # binds as SQL NULL, without the adapter lookup of None (see above)


def _bucket_row(res: int, sid: int, ts: int, agg: Aggregate) -> tuple[Any, ...]:
    """The parameters of `_UPSERT_BUCKET` for one bucket (of bindable types, see above)."""
    hist = dump_hist(agg)
    mn, mx, last = agg.min, agg.max, agg.last
    return (
        res, sid, ts, agg.count, agg.sum,
        _NULL if mn is None else mn, _NULL if mx is None else mx,
        _NULL if last is None else last, agg.last_ns,
        _NULL if hist is None else hist, dump_exemplars(agg.exemplars) if agg.exemplars else _NULL,
    )  # fmt: skip


def _merge_buckets(
    conn: sqlite3.Connection,
    rows: Mapping[tuple[int, int, int], Aggregate],
    maybe_stored: set[tuple[int, int, int]],
) -> None:
    """Merge each (resolution, series id, bucket start) aggregate into what is stored.

    Closed buckets are usually new rows; the ones that may exist (`maybe_stored`: a
    late point, a bucket a previous checkpoint wrote part of) are read in one batch per
    chunk of keys and merged.
    """
    keys = [k for k in rows if k in maybe_stored]  # the others are new rows
    stored: dict[tuple[int, int, int], Aggregate] = {}
    for i in range(0, len(keys), _INTERVALS_PER_QUERY):
        chunk = keys[i : i + _INTERVALS_PER_QUERY]
        values = ",".join(["(?,?,?)"] * len(chunk))
        sql = (
            f"WITH q (r, s, t) AS (VALUES {values})"  # noqa: S608
            " SELECT b.resolution, b.series_id, b.ts, b.count, b.sum, b.min, b.max, b.last,"
            " b.last_ns, b.hist, b.exemplars"
            " FROM q JOIN buckets b ON b.resolution = q.r AND b.series_id = q.s AND b.ts = q.t"
        )
        params = [v for key in chunk for v in key]
        for row in conn.execute(sql, params):
            stored[(int(row[0]), int(row[1]), int(row[2]))] = _row_to_aggregate(row[3:])

    def encoded() -> Iterator[tuple[Any, ...]]:
        # In primary-key order: each insert lands next to the previous one in the B-tree,
        # which makes the executemany about twice as cheap as in the head's dict order.
        # A generator: rows are encoded as SQLite takes them, never all at once (with
        # 10k series a checkpoint's rows would be tens of MiB at the same time).
        for key in sorted(rows):
            agg = rows[key]
            old = stored.get(key)
            yield _bucket_row(*key, merge(old, agg) if old is not None else agg)

    conn.executemany(_UPSERT_BUCKET, encoded())


def _check_series(conn: sqlite3.Connection, series_ids: set[int]) -> None:
    """Raise as the buckets' foreign key would if a series id is not in `series`."""
    ids = list(series_ids)
    found = 0
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT count(*) FROM series WHERE id IN ({marks})"  # noqa: S608
        found += int(conn.execute(sql, chunk).fetchone()[0])
    if found != len(ids):
        raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")


def _seen_intervals(
    conn: sqlite3.Connection, intervals: Iterable[DeltaInterval]
) -> set[DeltaInterval]:
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
        out.update((int(a), int(b), int(c)) for a, b, c in conn.execute(sql, params))
    return out


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

    # --- the engine's side (PersistentStore) -------------------------------------------

    def load_series(self) -> list[tuple[bytes, SeriesInfo]]:
        """Return every stored series with its fingerprint."""
        rows = (
            self._reader()
            .execute(
                "SELECT id, metric, kind, unit, monotonic, service, instance, attributes,"
                " resource, scope, fingerprint FROM series ORDER BY id"
            )
            .fetchall()
        )
        return [(bytes(r[10]), self._series_info(r)) for r in rows]

    def load_head(self) -> list[tuple[int, bytes]]:
        """Return the head state blobs of the last checkpoint."""
        rows = self._reader().execute("SELECT series_id, state FROM head_state").fetchall()
        return [(int(sid), bytes(blob)) for sid, blob in rows]

    def load_legacy_states(self) -> dict[int, PointState]:
        """Ingest states of a store from before the head (schema 1), until a checkpoint."""
        conn = self._reader()
        if conn.execute("SELECT 1 FROM meta WHERE key = 'head_format'").fetchone():
            return {}
        ids = [int(r[0]) for r in conn.execute("SELECT series_id FROM ingest_state")]
        return _load_states(conn, ids)

    def wal_segment(self) -> int:
        """Return the last WAL segment the stored checkpoint covers (0: none)."""
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'wal_segment'").fetchone()
        return int(row[0]) if row else 0

    def save_checkpoint(
        self,
        *,
        new_series: Sequence[tuple[bytes, SeriesKey, int, float]],
        head: Sequence[tuple[int, bytes]],
        buckets: Mapping[tuple[int, int, int], Aggregate],
        maybe_stored: set[tuple[int, int, int]],
        intervals: Iterable[DeltaInterval],
        wal_segment: int | None,
        last_ingest: float | None,
        commit_guard: Callable[[], AbstractContextManager[None]],
        on_commit: Callable[[], None],
    ) -> None:
        """Write one checkpoint in one transaction (see `PersistentStore`)."""
        if not self._write_lock.acquire(timeout=self._busy_timeout_ms / 1000):
            raise StorageBusyError("another write holds the store")
        conn = self._writer
        try:
            # The buckets' foreign key is checked once per series (`_check_series`), not
            # by SQLite per row: a lookup in `series` per bucket is a tenth of a
            # checkpoint. The pragma is a no-op inside a transaction, hence out here.
            conn.execute("PRAGMA foreign_keys = OFF")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StorageBusyError(str(exc)) from exc
                raise
            try:
                conn.executemany(
                    "INSERT INTO series (id, fingerprint, metric, kind, unit, monotonic,"
                    " service, instance, attributes, resource, scope, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            sid, fp, key.metric, key.kind, key.unit, int(key.monotonic),
                            key.service, key.instance, json.dumps(dict(key.attributes)),
                            json.dumps(dict(key.resource)), key.scope, at,
                        )
                        for fp, key, sid, at in new_series
                    ],
                )  # fmt: skip
                if buckets:
                    _check_series(conn, {sid for _, sid, _ in buckets})
                    _merge_buckets(conn, buckets, maybe_stored)
                # By series id, as stored; a bytearray binds without the adapter lookup
                # of bytes (see _NULL), a copy of ~1 KB costing a fraction of it.
                states = [(sid, bytearray(blob)) for sid, blob in sorted(head)]
                conn.executemany(
                    "INSERT OR REPLACE INTO head_state (series_id, state) VALUES (?, ?)", states
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO delta_seen (series_id, start_ns, time_ns)"
                    " VALUES (?, ?, ?)",
                    intervals,
                )
                meta = [("head_format", "1")]
                if wal_segment is not None:
                    meta.append(("wal_segment", str(wal_segment)))
                if last_ingest is not None:
                    meta.append(("last_ingest", repr(last_ingest)))
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
                with commit_guard():
                    conn.execute("COMMIT")
                    on_commit()
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise StorageBusyError(str(exc)) from exc
                raise
            if last_ingest is not None:
                self._last_ingest = last_ingest
        finally:
            with suppress(sqlite3.Error):  # nothing to restore if the connection broke
                conn.execute("PRAGMA foreign_keys = ON")
            self._write_lock.release()

    def seen_delta_intervals(self, intervals: Iterable[DeltaInterval]) -> set[DeltaInterval]:
        """Return which of the given (series id, start ns, time ns) are stored."""
        return _seen_intervals(self._reader(), intervals)

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

    def delete_orphan_series(self, keep: set[int] | None = None) -> set[int]:
        """Forget series with no bucket left at any resolution (except `keep`)."""
        keep = keep or set()
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                rows = self._writer.execute(
                    "SELECT id FROM series s WHERE NOT EXISTS (SELECT 1 FROM buckets b"
                    " WHERE b.resolution IN (10, 60, 3600) AND b.series_id = s.id)"
                ).fetchall()
                gone = {int(r[0]) for r in rows} - keep
                doomed = [(sid,) for sid in gone]
                for table, column in (
                    ("ingest_state", "series_id"),
                    ("head_state", "series_id"),
                    ("delta_seen", "series_id"),
                    ("series", "id"),
                ):
                    self._writer.executemany(
                        f"DELETE FROM {table} WHERE {column} = ?",  # noqa: S608
                        doomed,
                    )
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            if gone:
                self._info.clear()
            return gone

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
