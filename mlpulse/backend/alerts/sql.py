"""One connection type for the alert store on SQLite (embedded) or PostgreSQL (shared).

The alert store's SQL is written once, in SQLite's spelling with `?` placeholders; it is
also valid PostgreSQL once the placeholders read `%s` and the schema's types are
PostgreSQL's. `connect(target)` returns a `Connection` for either:

    db = connect(Path(".data/alerts.db"))          # or "postgresql://…"
    db.begin(); db.execute("INSERT INTO t(a) VALUES(?)", (1,)); db.commit()
    row = db.execute("SELECT a FROM t").fetchone(); row["a"], row[0]

Rows answer by name and by position (like `sqlite3.Row`). `lastrowid` works for the
tables with a serial id (`SERIAL_TABLES`): on PostgreSQL their INSERTs get a
`RETURNING id`. A PostgreSQL connection that broke (the server restarted) is replaced
on the next statement; the statement in flight fails and its caller retries later.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

SERIAL_TABLES = ("alert_history", "alert_notifications", "annotations")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


class Cursor(Protocol):
    """What a statement returns."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """A connection used by one thread at a time (the alert store holds a lock)."""

    shared: bool  # True for PostgreSQL: other replicas use the same tables

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def create_schema(self, schema: str) -> None: ...

    def add_column(self, table: str, column: str, kind: str) -> None: ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


def connect(target: Path | str) -> Connection:
    """A connection to a SQLite file (a path) or a PostgreSQL database (a URL)."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return _Postgres(target)
    return _SQLite(Path(target))


class _SQLite:
    shared = False

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=2000")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def create_schema(self, schema: str) -> None:
        self._db.executescript(schema)

    def add_column(self, table: str, column: str, kind: str) -> None:
        names = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
        if column not in names:
            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


class Row(tuple):  # type: ignore[type-arg]
    """A result row that answers by column name and by position, like `sqlite3.Row`."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> tuple[str, ...]:
        return self._names


def _row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in (cursor.description or ()))
    row_type = type("Row", (Row,), {"_names": names})

    def make(values: Sequence[Any]) -> Row:
        return row_type(values)  # type: ignore[no-any-return]

    return make


class _PgCursor:
    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _pg_schema(schema: str) -> str:
    out = re.sub(r"INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", schema)
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", out)
    return re.sub(r"\bINTEGER\b", "BIGINT", out)


class _Postgres:
    shared = True

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        self._in_tx = False
        self._open()

    def _open(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._psycopg.connect(
                self._url, autocommit=True, row_factory=_row_factory, connect_timeout=5
            )
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        text = _pg_sql(sql) if params else sql
        m = _INSERT_INTO.match(sql)
        serial = m is not None and m.group(1) in SERIAL_TABLES and "RETURNING" not in sql.upper()
        if serial:
            text += " RETURNING id"
        try:
            cur = self._open().execute(text, tuple(params))
        except self._psycopg.OperationalError:
            self._in_tx = False
            raise
        rows = cur.fetchall() if cur.description is not None else []
        lastrowid = int(rows[0][0]) if serial and rows else None
        return _PgCursor([] if serial else rows, cur.rowcount, lastrowid)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._open().cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])

    def create_schema(self, schema: str) -> None:
        conn = self._open()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6D6C_7075_6C73_0002,))
            for statement in _pg_schema(schema).split(";"):
                if statement.strip():
                    conn.execute(statement)

    def add_column(self, table: str, column: str, kind: str) -> None:
        self._open().execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {_pg_schema(kind)}"
        )

    def begin(self) -> None:
        self._open().execute("BEGIN")
        self._in_tx = True

    def commit(self) -> None:
        self._in_tx = False
        self._open().execute("COMMIT")

    def rollback(self) -> None:
        self._in_tx = False
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
