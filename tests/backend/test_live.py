"""Live events: an `ingest` event after each commit, keepalives, slow subscribers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
from backend_testing import Backend, metric_request

from backend.live import Broker


def _read_events(url: str, want: int, out: list[tuple[str, Any]], ready: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as c, c.stream("GET", "/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in resp.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith(":"):
                out.append(("comment", line))
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event or "message", json.loads(line[6:])))
            if len(out) >= want:
                return


def test_ingest_event_after_commit(backend: Backend) -> None:
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_events, args=(backend.url, 1, events, ready))
    reader.start()
    assert ready.wait(5)
    now = time.time()
    req = metric_request(
        "ml.model.predictions",
        points=[{"value": 1, "time_s": now}, {"value": 2, "time_s": now, "attributes": {"a": "b"}}],
    )
    posted = time.time()
    resp = backend.client.post(
        "/v1/metrics",
        content=req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 200
    reader.join(5)
    ((name, data),) = events
    assert name == "ingest"
    assert data["points"] == 2
    assert data["services"] == ["mlapi"]
    assert posted <= data["committed_at"] <= time.time()
    # The data is readable when the event arrives.
    snap = backend.get("/metrics/current", window="1m")
    assert snap["model_metrics"]["unknown"]["predictions_count"] == 3


def test_keepalive_comments(backend: Backend) -> None:
    backend.app.state.broker.keepalive_s = 0.05
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    _read_events(backend.url, 2, events, ready)
    assert events == [("comment", ": keepalive"), ("comment", ": keepalive")]


def test_slow_subscriber_drops_oldest_and_never_blocks() -> None:
    async def scenario() -> None:
        broker = Broker(queue_size=3)
        with broker.subscribe() as sub:
            started = time.perf_counter()
            for i in range(1000):
                broker.publish("ingest", {"i": i})
            assert time.perf_counter() - started < 1
            assert sub.queue.qsize() == 3
            assert sub.dropped == 997
            last = [await sub.queue.get() for _ in range(3)]
            assert [json.loads(m.split("data: ")[1])["i"] for m in last] == [997, 998, 999]
        assert broker.subscribers == 0

    asyncio.run(scenario())


def test_publish_from_another_thread_reaches_the_loop() -> None:
    async def scenario() -> None:
        broker = Broker()
        with broker.subscribe() as sub:
            t = threading.Thread(target=broker.publish, args=("alert", {"rule": "r"}))
            t.start()
            msg = await asyncio.wait_for(sub.queue.get(), 2)
            t.join()
            assert "event: alert\n" in msg and '"rule":"r"' in msg

    asyncio.run(scenario())
