"""Live push: an in-process publish/subscribe broker and the `GET /events` SSE route.

Ingest publishes an `ingest` event after each commit; the alert engine publishes `alert`
events through the same broker (`request.app.state.broker.publish("alert", {...})`, from
any thread). Each subscriber has a bounded queue: when a slow browser falls behind, its
oldest events are dropped, so a subscriber never blocks a publisher.

Event shapes are pinned in docs/contracts.md ("Live events").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

router = APIRouter(tags=["live"])
_CLOSE = ""  # sentinel message: the stream ends


class Subscription:
    """One listener's bounded queue of already-formatted SSE messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, message: str) -> None:
        """Enqueue without blocking, dropping the oldest message when full."""
        while True:
            try:
                self.queue.put_nowait(message)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


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
        self._seq = 0
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End every stream (at shutdown: a server waits for open responses to finish)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, _CLOSE)

    def publish(self, event: str, data: Mapping[str, Any]) -> None:
        """Send `data` as event `event` to every subscriber; safe from any thread."""
        with self._lock:
            self._seq += 1
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

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """Register a subscriber on the running loop for the duration of the block."""
        sub = Subscription(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)


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


@router.get("/events")
async def events(request: Request) -> StreamingResponse:
    """Server-Sent Events: `ingest` after each committed export, `alert` on transitions."""
    broker: Broker = request.app.state.broker

    async def body() -> AsyncIterator[str]:
        with broker.subscribe() as sub:
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
