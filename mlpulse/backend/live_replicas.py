"""Live events across replicas: a commit on replica A reaches browsers connected to B.

On a shared PostgreSQL store every export's transaction ends with a `pg_notify` on
`postgres.notify_channel()` (delivered at COMMIT, never for a rolled-back export). Each
replica LISTENs on its own connection and hands the commits of the *other* replicas to
its live pusher, exactly as if they had been ingested here; the pusher then computes
and publishes the `ingest` and `snapshot` events to its own subscribers. With SQLite
this job idles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from mlpulse.backend.ingest.pipeline import IngestResult
from mlpulse.backend.storage.engine import Engine

log = logging.getLogger(__name__)


class CommitListener:
    """LISTEN for other replicas' commits on a thread; reconnects when the server returns."""

    def __init__(self, url: str, replica_id: str, on_commit: Callable[[dict[str, Any]], None]):
        self.url = url
        self.replica_id = replica_id
        self.on_commit = on_commit
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlpulse-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        from mlpulse.backend.storage.postgres import notify_channel

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {notify_channel()}")
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._handle(note.payload)
            except psycopg.Error as exc:
                log.debug("live events listener: %s; reconnecting", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _handle(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if event.get("replica") == self.replica_id:
            return  # our own commit: the ingest route already told the pusher
        self.received += 1
        try:
            self.on_commit(event)
        except Exception:
            log.exception("live events listener: handling a commit failed")

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


async def replica_events_job(app: FastAPI) -> None:
    """Background job: forward other replicas' commits to this replica's live pusher."""
    store = app.state.store
    if isinstance(store, Engine):
        await asyncio.Event().wait()  # embedded store: one process, nothing to hear
        return

    def on_commit(event: dict[str, Any]) -> None:
        result = IngestResult(
            accepted=int(event.get("points", 0)),
            services=[str(s) for s in event.get("services", [])],
            committed_at=time.time(),
        )
        app.state.pusher.committed(result)

    listener = CommitListener(store.url, store.replica_id, on_commit)
    app.state.commit_listener = listener
    try:
        await asyncio.Event().wait()  # until cancelled at shutdown
    finally:
        listener.close()
