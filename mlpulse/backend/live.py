"""Live push: an in-process publish/subscribe broker and the `GET /events` SSE route.

Ingest announces each commit through `mlpulse.backend.live_push.LivePusher`, which publishes an
`ingest` event carrying the newest data; the alert engine publishes `alert` events through
the same broker (`request.app.state.broker.publish("alert", {...})`, from any thread).

A subscriber says what it wants pushed: `GET /events?snapshot=1` adds a `snapshot` event
(the `/metrics/current` document) after each `ingest` event, `&range=3600&step=30` (the
page's time range and step) the newest steps of the charted signals for that view to the
`ingest` event. The broker only collects these interests (`Broker.interests()`); the
pusher (`mlpulse.backend.live_push`) computes them once per burst of commits.

Each subscriber has a bounded queue: a slow browser that falls behind never blocks a
publisher; when its queue is full, the queued events are replaced by one `resync` event
(`data: {"dropped": n}`), so the client knows to re-fetch rather than miss data silently.

Event shapes are pinned in docs/contracts.md ("Live events").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

router = APIRouter(tags=["live"])
_CLOSE = ""  # sentinel message: the stream ends

MAX_VIEWS = 4
"""Distinct views (range, step) computed per commit; further ones get the snapshot only."""
MAX_RANGE_S = 90 * 86_400
MAX_STEP_S = 86_400
MAX_POINTS = 11_000  # as `/metrics/history`
MAX_SERVICE_CHARS = 1024  # as an attribute value at ingest


@dataclass(frozen=True)
class View:
    """A page's live time range and step, e.g. the last hour at 30 s steps, for all
    services or one (`service`)."""

    range_s: int
    step: int
    service: str = ""

    @property
    def key(self) -> str:
        """The key of this view's windows in an `ingest` event: "3600:30" or
        "3600:30:mlapi" for one service."""
        base = f"{self.range_s}:{self.step}"
        return f"{base}:{self.service}" if self.service else base


_RESYNC = "event: resync\n"


def _seq(message: str) -> int:
    """The broker's sequence number of a published message (`id: N`), 0 for others."""
    if not message.startswith("id: "):
        return 0
    return int(message[4 : message.index("\n")])


def resync_message(dropped: int) -> str:
    """The SSE message that replaces the events a slow subscriber could not take."""
    return f"{_RESYNC}data: {json.dumps({'dropped': dropped})}\n\n"


class Subscription:
    """One listener's bounded queue of already-formatted SSE messages, and its interests."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
        *,
        snapshot: bool = False,
        view: View | None = None,
    ) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.snapshot = snapshot
        self.view = view
        self.dropped = 0
        self.resyncs = 0
        self.first_seq = 0  # the first published message this subscriber can get
        self.sent = 0  # the newest published message its stream wrote (or dropped)
        self.dropped_upto = 0  # the newest published message a resync replaced

    def offer(self, message: str) -> None:
        """Enqueue without blocking; when full, replace what is queued by one `resync`."""
        try:
            self.queue.put_nowait(message)
            return
        except asyncio.QueueFull:
            pass
        if message == _CLOSE:  # the end of the stream is never dropped
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSE)
            return
        dropped = 1  # this message
        upto = _seq(message)
        while True:
            try:
                queued = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if queued == _CLOSE:  # the stream ends anyway: keep the sentinel
                self.queue.put_nowait(_CLOSE)
                return
            if queued.startswith(_RESYNC):  # an earlier resync: carry its count over
                dropped += int(json.loads(queued.split("data: ", 1)[1])["dropped"])
            else:
                dropped += 1
                upto = max(upto, _seq(queued))
        self.dropped_upto = max(self.dropped_upto, upto)
        self.dropped += dropped
        self.resyncs += 1
        self.queue.put_nowait(resync_message(dropped))


class Broker:
    """Fan-out of named events to every current subscriber.

    >>> broker = Broker()
    >>> broker.publish("ingest", {"committed_at": 1700000000.0, "points": 12})
    """

    def __init__(self, queue_size: int = 256, keepalive_s: float = 15.0) -> None:
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._sent = threading.Condition()  # notified when a stream wrote a message
        self._seq = 0
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def closed(self) -> bool:
        return self._closed

    def interests(self) -> tuple[bool, list[View]]:
        """Whether any subscriber wants the snapshot, and the distinct views wanted."""
        with self._lock:
            subs = list(self._subs)
        snapshot = any(s.snapshot for s in subs)
        views: list[View] = []
        for s in subs:
            if s.view is not None and s.view not in views and len(views) < MAX_VIEWS:
                views.append(s.view)
        return snapshot, views

    def close(self) -> None:
        """End every stream (at shutdown: a server waits for open responses to finish)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, _CLOSE)

    def publish(self, event: str, data: Mapping[str, Any]) -> int:
        """Send `data` as event `event` to every subscriber; safe from any thread.

        Returns the message's sequence number (its SSE `id`), for `wait_sent`.
        """
        with self._lock:
            self._seq += 1
            seq = self._seq
            message = (
                f"id: {self._seq}\nevent: {event}\n"
                f"data: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"
            )
            subs = list(self._subs)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for sub in subs:
            if sub.loop is running:
                sub.offer(message)
            else:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    sub.loop.call_soon_threadsafe(sub.offer, message)
        return seq

    def wait_sent(self, seq: int, timeout: float) -> bool:
        """Wait until every subscriber's stream has written message `seq` (or dropped it,
        or left), at most `timeout` s; whether it has. From a thread, never the loop.

        The live pusher starts the snapshot's computation only after the `ingest` event
        is out, so it never takes the CPU (and the GIL) from the loop writing it.
        """

        def done() -> bool:
            with self._lock:
                subs = list(self._subs)
            return all(s.sent >= seq or s.first_seq > seq for s in subs)

        with self._sent:
            return self._sent.wait_for(done, timeout)

    def _wrote(self, sub: Subscription, message: str) -> None:
        """Note that `sub`'s stream wrote `message` (from the loop)."""
        seq = sub.dropped_upto if message.startswith(_RESYNC) else _seq(message)
        if seq <= sub.sent:
            return
        with self._sent:
            sub.sent = seq
            self._sent.notify_all()

    @contextlib.contextmanager
    def subscribe(
        self, *, snapshot: bool = False, view: View | None = None
    ) -> Iterator[Subscription]:
        """Register a subscriber on the running loop for the duration of the block."""
        sub = Subscription(
            asyncio.get_running_loop(), self.queue_size, snapshot=snapshot, view=view
        )
        with self._lock:
            sub.first_seq = self._seq + 1
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)
            with self._sent:  # one waited for no longer
                self._sent.notify_all()


async def _stream(broker: Broker, sub: Subscription) -> AsyncIterator[str]:
    yield "retry: 2000\n: connected\n\n"
    while not broker.closed:
        try:
            message = await asyncio.wait_for(sub.queue.get(), timeout=broker.keepalive_s)
        except TimeoutError:
            yield ": keepalive\n\n"
            continue
        if message is _CLOSE:
            return
        yield message
        broker._wrote(sub, message)  # resumed: the server has taken the message


def _view(range_s: int | None, step: int | None, service: str = "") -> View | None:
    if range_s is None and step is None:
        return None
    if len(service) > MAX_SERVICE_CHARS:
        raise HTTPException(status_code=400, detail="service: too long")
    if range_s is None or step is None:
        raise HTTPException(status_code=400, detail="range and step go together")
    if not (10 <= step <= MAX_STEP_S and step % 10 == 0):
        raise HTTPException(status_code=400, detail="step: a multiple of 10 s, at most 1 day")
    if not (step <= range_s <= MAX_RANGE_S and range_s / step <= MAX_POINTS):
        raise HTTPException(
            status_code=400, detail=f"range: at least one step, at most {MAX_POINTS} steps, 90 days"
        )
    return View(range_s, step, service)


@router.get("/events")
async def events(
    request: Request,
    snapshot: Annotated[bool, Query(description="push the /metrics/current snapshot")] = False,
    range_s: Annotated[
        int | None, Query(alias="range", description="the page's live range, seconds")
    ] = None,
    step: Annotated[int | None, Query(description="the page's step, seconds")] = None,
    service: Annotated[str, Query(description="the page's selected service")] = "",
) -> StreamingResponse:
    """Server-Sent Events: `ingest` after commits (with the newest chart steps of the
    subscriber's view), `snapshot` after it (when asked for), `alert` on transitions,
    `resync` when this subscriber fell behind."""
    broker: Broker = request.app.state.broker
    view = _view(range_s, step, service)

    async def body() -> AsyncIterator[str]:
        with broker.subscribe(snapshot=snapshot, view=view) as sub:
            async for chunk in _stream(broker, sub):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def close_streams_on_exit(app: FastAPI) -> None:
    """Background job: end every event stream when the server is asked to stop.

    uvicorn waits for open responses before running the lifespan shutdown, and an event
    stream never finishes on its own; so SIGINT/SIGTERM first close the broker, then reach
    the server's own handler. (Only possible in the main thread; elsewhere, e.g. a server
    in a test thread, use uvicorn's `timeout_graceful_shutdown`.)
    """
    broker: Broker = app.state.broker
    chained: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                broker.close()
                previous(signum, frame)

            signal.signal(sig, handler)
            chained.append((sig, previous))
    try:
        await asyncio.Event().wait()  # until cancelled at shutdown
    finally:
        broker.close()
        for signum, previous in chained:
            signal.signal(signum, previous)
