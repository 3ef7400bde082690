"""Pushed live updates: after a commit, compute once what every open page would re-fetch.

`LivePusher` sits between ingest and the broker. Ingest calls `committed(result)` after
each commit (cheap, never blocks); two worker threads then compute, through the query
layer's public functions, the newest windows of the signals the page charts (sent in the
`ingest` event) and the `/metrics/current` snapshot (sent in a `snapshot` event: the
charts never wait for its ~30 signals). Commits that arrive while a worker computes are
coalesced into its next computation: a burst of exports costs two computations, never
one per export, and ingest never waits for them.

What gets computed depends on who listens (`GET /events?snapshot=1&range=3600&step=30`,
see `mlpulse.backend.live`): the snapshot when a subscriber asked for it, and for each distinct
view (range, step) the two newest steps of each charted signal, at the resolution the
page's own `/metrics/history` fetch of that range uses — so a pushed point equals the
fetched one. A commit with no such subscriber publishes the plain event only.

    pusher = LivePusher(store, broker, retention=settings.retention_seconds())
    pusher.committed(result)  # from the ingest route, after the store commit
    pusher.close()            # at shutdown, before the store closes

Event shape: docs/contracts.md, "Live events".
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from mlpulse.backend.api.params import finite
from mlpulse.backend.ingest.pipeline import IngestResult
from mlpulse.backend.live import Broker, View
from mlpulse.backend.query.history import series_json
from mlpulse.backend.query.signals import (
    choose_resolution,
    evaluate_range,
    shared_merges,
)
from mlpulse.backend.query.snapshot import STALE_AFTER_S, snapshot
from mlpulse.backend.query.view import read_once
from mlpulse.backend.storage.base import MetricStore

log = logging.getLogger(__name__)

SNAPSHOT_WINDOW_S = 300.0
"""The window of `/metrics/current` as the page asks for it (its default, 5 min)."""

SNAPSHOT_AFTER_INGEST_MAX_S = 0.05
"""How long the snapshot waits at most for the `ingest` event to be written to every
subscriber before it starts computing (a stalled client never holds it up longer)."""

NEWEST_STEPS = 2
"""Steps pushed per view: the open one and the one before (a commit near a step's end)."""


@dataclass(frozen=True)
class Charted:
    """One signal a dashboard chart draws, grouped as the page asks for it."""

    signal: str
    group_by: tuple[str, ...]


CHARTED: tuple[Charted, ...] = (
    # The percentiles first: they read the duration histograms, and `read_once` then serves
    # the count and sum of the signals after them from that read (the other way round the
    # metric would be read twice, once without and once with its histograms).
    Charted("p95_latency_ms", ("service",)),
    Charted("p99_latency_ms", ("service",)),
    Charted("request_rate", ("service",)),
    Charted("avg_latency_ms", ("service",)),
    Charted("error_rate_percent", ("service",)),
    Charted("model_mae", ("service", "model")),
    Charted("cache_hits", ("service",)),
    Charted("cache_misses", ("service",)),
)
"""Must match the specs of dashboards/js/panels/graphs.js (and its cache gauge)."""


def newest_windows(
    store: MetricStore,
    view: View,
    now: float,
    retention: Mapping[int, int] | None = None,
    charted: Sequence[Charted] = CHARTED,
) -> dict[str, Any]:
    """Return the newest `NEWEST_STEPS` steps of each charted signal for `view`.

    The resolution is the one `/metrics/history` picks for the view's whole range
    (`choose_resolution(now - range, now, step)`), so each pushed step window is computed
    exactly as in the page's full fetch. Series are in `/metrics/history`'s shape.
    """
    res = choose_resolution(now - view.range_s, now, view.step, retention)
    step = max(view.step, res)
    to = math.ceil(now / step) * step  # the page's `to`: now aligned up to the step
    start = to - NEWEST_STEPS * step
    signals: dict[str, list[dict[str, Any]]] = {}
    filters = {"service": view.service} if view.service else None
    with shared_merges():  # p95 and p99 of a step merge its histograms once
        for c in charted:
            signals[c.signal] = series_json(
                evaluate_range(
                    store, c.signal, start, to, step, c.group_by, filters, resolution=res
                )
            )
    return finite(
        {
            "range": view.range_s,
            "step": step,
            "resolution": res,
            "from": start,
            "to": to,
            "signals": signals,
        }
    )


class _Worker:
    """A daemon thread that runs `work()` once per wake-up, wake-ups during it coalesced."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self._work = work
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self._work()
            except Exception:  # the next commit tries again
                log.exception("live push: %s failed", self._thread.name)


class LivePusher:
    """Publishes an `ingest` event per burst of commits, with the newest data computed once.

    Two workers, each coalescing on its own: one publishes `ingest` with the charts' newest
    steps (milliseconds), the other the `snapshot` (~30 signals, several times longer),
    started once the `ingest` event is out (never competing with it for the CPU); a
    snapshot still computing never makes the next commit's charts wait. Thread-safe;
    `committed` may be called from the event loop or any thread. The workers start with
    the first commit and stop at `close()`.
    """

    def __init__(
        self,
        store: MetricStore,
        broker: Broker,
        *,
        retention: Mapping[int, int] | None = None,
        snapshot_window_s: float = SNAPSHOT_WINDOW_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.store = store
        self.broker = broker
        self.retention = dict(retention) if retention is not None else None
        self.snapshot_window_s = snapshot_window_s
        self.stale_after_s = stale_after_s
        self.computations = 0  # bursts whose newest steps were computed
        self.snapshot_computations = 0
        self._lock = threading.Lock()
        self._closed = False
        self._workers: list[_Worker] = []
        self._commits = 0
        self._points = 0
        self._services: set[str] = set()
        self._committed_at = 0.0  # the newest commit
        self._snapshot_due = 0.0  # the newest commit the snapshot has not covered yet
        self._ingest_seq = 0  # the broker's id of the newest `ingest` event

    def committed(self, result: IngestResult) -> None:
        """Note a commit; the events follow from the worker threads (coalesced)."""
        if result.committed_at is None:
            return
        with self._lock:
            if self._closed:
                return
            self._commits += 1
            self._points += result.accepted
            self._services.update(result.services)
            self._committed_at = max(self._committed_at, result.committed_at)
            self._snapshot_due = self._committed_at
            if not self._workers:
                self._workers = [
                    _Worker("mlpulse-live-push", self._charts_then_snapshot),
                    _Worker("mlpulse-live-snapshot", self._push_snapshot),
                ]
            charts = self._workers[0]
        charts.wake()  # the snapshot follows once the charts' event is out

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (after the computations under way, if any)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.close(timeout)

    def _take(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._commits:
                return None
            event = {
                "committed_at": self._committed_at,
                "points": self._points,
                "services": sorted(self._services),
                "commits": self._commits,
            }
            self._commits = self._points = 0
            self._services = set()
            return event

    def _charts_then_snapshot(self) -> None:
        """Publish `ingest`, then let the snapshot worker start.

        The snapshot (~30 signals) costs several times the charts' newest steps; computed
        at the same time it would share the CPU (and the GIL) with them and delay the
        event the charts wait for. Started after it, it only meets the next commit's
        charts when commits come faster than a snapshot takes.
        """
        try:
            seq = self._push_ingest()
            if seq:
                with self._lock:
                    self._ingest_seq = seq
        finally:
            with self._lock:
                snapshot = self._workers[1] if self._snapshot_due else None
            if snapshot is not None:
                snapshot.wake()

    def _push_ingest(self) -> int:
        """Publish `ingest` for the commits since the last one, with the newest steps;
        return its broker id (0: nothing to publish)."""
        event = self._take()
        if event is None:
            return 0
        _, views = self.broker.interests()
        if views:
            now = time.time()
            event["computed_at"] = now
            try:
                once = read_once(self.store)  # signals sharing a metric read it once
                event["windows"] = {
                    view.key: newest_windows(once, view, now, self.retention) for view in views
                }
            except Exception:  # a failed computation still announces the commits
                log.exception("live push: computing the newest steps failed")
            self.computations += 1
            # When the computation ended: the live benchmark tells computing from delivery.
            event["published_at"] = time.time()
        return self.broker.publish("ingest", event)

    def _push_snapshot(self) -> None:
        """Publish `snapshot` as of now, when a subscriber wants it."""
        with self._lock:
            committed_at, self._snapshot_due = self._snapshot_due, 0.0
            seq = self._ingest_seq
        if not committed_at or not self.broker.interests()[0]:
            return
        # The charts' event first: computed while the loop writes it, the snapshot would
        # take the GIL from it (and the machine's CPU from the pages drawing it).
        self.broker.wait_sent(seq, SNAPSHOT_AFTER_INGEST_MAX_S)
        now = time.time()
        doc = finite(
            snapshot(self.store, now, self.snapshot_window_s, stale_after=self.stale_after_s)
        )
        self.snapshot_computations += 1
        self.broker.publish(
            "snapshot",
            {
                "committed_at": committed_at,
                "at": now,
                "window_seconds": self.snapshot_window_s,
                "doc": doc,
            },
        )


async def close_pusher_on_exit(app: FastAPI) -> None:
    """Background job: stop the pusher at shutdown (before the store closes)."""
    try:
        await asyncio.Event().wait()  # until cancelled at shutdown
    finally:
        app.state.pusher.close()


__all__ = ["CHARTED", "Charted", "LivePusher", "close_pusher_on_exit", "newest_windows"]
