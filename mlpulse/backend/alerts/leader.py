"""Which replica evaluates the alert rules: exactly one at a time.

With the embedded store there is one process, so it always evaluates (`SoleEvaluator`).
On PostgreSQL every replica asks for the same session-level advisory lock
(`pg_try_advisory_lock`) on a connection of its own (`AdvisoryLockEvaluator`): the
server gives it to one session only, and releases it when that session ends — a
clean stop, a kill -9 of the replica (the server sees its socket close) or a lost
network (TCP keepalives). The others ask again every evaluation interval, so one of
them takes over within a few seconds.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

EVALUATOR_LOCK = 0x6D6C_7075_6C73_0003  # the advisory lock key (64-bit, "mlpuls" + 3)


class EvaluatorLease(Protocol):
    """Whether this process is the alert evaluator now."""

    def held(self) -> bool:
        """Return True when this process should evaluate now (may take the lease)."""

    def release(self) -> None:
        """Give the lease up (at shutdown)."""


class SoleEvaluator:
    """The only process on its store: always the evaluator."""

    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None


class AdvisoryLockEvaluator:
    """The evaluator lease as a PostgreSQL session-level advisory lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self._held = False

    def held(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._held = False
                self._conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=5,
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                )  # fmt: skip
            if self._held:
                self._conn.execute("SELECT 1")  # still our session: the lock is still ours
            else:
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (EVALUATOR_LOCK,)
                ).fetchone()
                self._held = bool(row and row[0])
                if self._held:
                    log.info("this replica is now the alert evaluator")
        except psycopg.Error as exc:
            if self._held:
                log.warning("lost the alert evaluator lease: %s", exc)
            self._held = False
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        return self._held

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the lock goes with it
            self._conn = None
        self._held = False


def evaluator_lease(postgres_url: str | None) -> EvaluatorLease:
    """The lease for the configured store."""
    return AdvisoryLockEvaluator(postgres_url) if postgres_url else SoleEvaluator()
