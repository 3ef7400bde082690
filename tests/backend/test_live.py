"""Live events: an `ingest` event after each commit (with the pushed update a subscriber
asked for, equal to what it would fetch), coalescing, keepalives, slow subscribers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest
from backend_testing import Backend, meter_provider, metric_request
from opentelemetry.sdk.metrics import MeterProvider

from mlpulse.backend.live import Broker, _stream


def _read_events(
    url: str,
    want: int,
    out: list[tuple[str, Any]],
    ready: threading.Event,
    params: dict[str, Any] | None = None,
) -> None:
    with (
        httpx.Client(base_url=url, timeout=30) as c,
        c.stream("GET", "/events", params=params) as resp,
    ):
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


def test_slow_subscriber_gets_a_resync_instead_of_missing_events_silently() -> None:
    async def scenario() -> None:
        broker = Broker(queue_size=3)
        with broker.subscribe() as sub:
            started = time.perf_counter()
            for i in range(1000):
                broker.publish("ingest", {"i": i})
            assert time.perf_counter() - started < 1  # the publisher never waited
            queued = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert broker.subscribers == 0
        # What is left: a `resync` saying how many events were dropped, then the newest.
        resyncs = [m for m in queued if m.startswith("event: resync\n")]
        kept = [json.loads(m.split("data: ")[1])["i"] for m in queued if m not in resyncs]
        assert len(resyncs) == 1 and queued[0] == resyncs[0]
        dropped = json.loads(resyncs[0].split("data: ")[1])["dropped"]
        assert kept == list(range(1000 - len(kept), 1000))
        assert dropped + len(kept) == 1000
        assert sub.resyncs > 1

    asyncio.run(scenario())


def test_a_stream_that_ends_keeps_its_end_when_full() -> None:
    async def scenario() -> None:
        broker = Broker(queue_size=2)
        with broker.subscribe() as sub:
            broker.publish("ingest", {"i": 0})
            broker.close()
            await asyncio.sleep(0)  # the sentinel is queued behind the event
            sub.offer("event: ingest\ndata: {}\n\n")  # full: the sentinel must survive
            assert [sub.queue.get_nowait() for _ in range(sub.queue.qsize())] == [""]
        with broker.subscribe() as sub:
            for i in range(2):
                sub.offer(f"event: ingest\ndata: {i}\n\n")
            sub.offer("")  # a full queue still takes the end of the stream
            assert [sub.queue.get_nowait() for _ in range(sub.queue.qsize())] == [""]

    asyncio.run(scenario())


def test_wait_sent_waits_for_every_stream_to_write_the_message() -> None:
    """The pusher's snapshot waits for the `ingest` event to be out (`Broker.wait_sent`):
    it returns once each subscriber's stream wrote the message, dropped it in a resync,
    or left; a subscriber that came later is not waited for."""

    async def scenario() -> None:
        broker = Broker(queue_size=2)
        with broker.subscribe() as a, broker.subscribe() as b:
            seq = broker.publish("ingest", {"i": 1})
            stream_a = _stream(broker, a)
            assert (await anext(stream_a)).startswith("retry:")
            msg = await anext(stream_a)
            assert msg.startswith(f"id: {seq}\n")
            # `a` has not resumed after the message yet, `b` has not even read it.
            assert not await asyncio.to_thread(broker.wait_sent, seq, 0.05)
            waiter = asyncio.create_task(asyncio.to_thread(broker.wait_sent, seq, 5.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            pending = asyncio.create_task(anext(stream_a))  # resumes: `a` wrote it
            await asyncio.sleep(0.05)
            assert not waiter.done()  # still `b`
            for i in range(3):  # `b` falls behind: its copy is replaced by a resync
                broker.publish("ingest", {"i": 2 + i})
            stream_b = _stream(broker, b)
            await anext(stream_b)
            assert (await anext(stream_b)).startswith("event: resync\n")
            assert not waiter.done()  # the resync is not written yet
            rest = asyncio.create_task(anext(stream_b))
            assert await asyncio.wait_for(waiter, 5.0) is True
            with broker.subscribe():  # came after the message: never waited for
                assert await asyncio.to_thread(broker.wait_sent, seq, 0.05)
            for task in (pending, rest):
                task.cancel()
            await stream_a.aclose()
            await stream_b.aclose()

    asyncio.run(scenario())


def test_a_subscriber_that_leaves_is_not_waited_for() -> None:
    async def scenario() -> None:
        broker = Broker()
        with broker.subscribe():
            seq = broker.publish("ingest", {"i": 1})
            waiter = asyncio.create_task(asyncio.to_thread(broker.wait_sent, seq, 5.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
        assert await asyncio.wait_for(waiter, 5.0) is True

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


def _traffic(url: str) -> MeterProvider:
    """One export of an instrumented API: requests on two routes, cache lookups, feedback.

    Returns the provider, to shut down once the test has read (shutting down exports again).
    """
    provider = meter_provider(url)
    meter = provider.get_meter("mlapi")
    hist = meter.create_histogram("http.server.request.duration", unit="s")
    lookups = meter.create_counter("ml.cache.lookups")
    err_abs = meter.create_counter("ml.model.error.absolute")
    feedback = meter.create_counter("ml.model.feedback")
    for i in range(40):
        status = 500 if i % 9 == 0 else 200
        route = "/predict/results" if i % 3 else "/predict/duration"
        hist.record(0.004 * (1 + i % 7), {"http.route": route, "http.response.status_code": status})
        lookups.add(1, {"ml.cache.result": "hit" if i % 4 else "miss"})
        err_abs.add(0.5 + i % 5, {"ml.model.name": "result"})
        feedback.add(1, {"ml.model.name": "result"})
    assert provider.force_flush()
    return provider


def test_pushed_update_equals_what_the_page_would_fetch(backend: Backend) -> None:
    view = {"snapshot": "1", "range": 3600, "step": 30}
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_events, args=(backend.url, 2, events, ready, view))
    reader.start()
    assert ready.wait(5)
    provider = _traffic(backend.url)
    reader.join(20)
    # The charts' newest steps and the snapshot, each in its own event.
    assert sorted(name for name, _ in events) == ["ingest", "snapshot"]
    data = next(d for name, d in events if name == "ingest")
    snap = next(d for name, d in events if name == "snapshot")
    assert data["points"] > 0 and data["services"] == ["mlapi"]
    assert data["computed_at"] >= data["committed_at"]

    # The newest steps: exactly what /metrics/history answers for those steps.
    pushed = data["windows"]["3600:30"]
    assert pushed["step"] == 30 and pushed["to"] - pushed["from"] == 60
    assert pushed["to"] >= data["computed_at"] > pushed["to"] - 30
    groups = {"model_mae": "service,model"}
    for signal, series in pushed["signals"].items():
        fetched = backend.get(
            "/metrics/history",
            metric=signal,
            step=30,
            group_by=groups.get(signal, "service"),
            **{"from": pushed["from"], "to": pushed["to"]},
        )
        assert fetched["resolution"] == pushed["resolution"]
        assert series == fetched["series"], signal
    values = {s: [v for x in ser for _, v in x["points"]] for s, ser in pushed["signals"].items()}
    assert sum(v for v in values["cache_hits"] if v) == 30
    assert sum(v for v in values["cache_misses"] if v) == 10
    assert any(v for v in values["p95_latency_ms"])

    # The snapshot: the /metrics/current document at the moment it was computed.
    assert snap["committed_at"] == data["committed_at"]
    window = snap["window_seconds"]
    again = backend.get("/metrics/summary", **{"from": snap["at"] - window, "to": snap["at"]})
    assert snap["doc"] == again
    assert snap["doc"]["api_metrics"]["total_requests"] == 40
    provider.shutdown()


def test_commits_during_a_computation_are_coalesced(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    pusher = backend.app.state.pusher
    charts, numbers = pusher._push_ingest, pusher._push_snapshot

    def slowly(work: Any) -> Any:
        def run() -> None:
            time.sleep(0.2)  # as on a big store: commits keep arriving meanwhile
            work()

        return run

    monkeypatch.setattr(pusher, "_push_ingest", slowly(charts))
    monkeypatch.setattr(pusher, "_push_snapshot", slowly(numbers))
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    params = {"snapshot": "1", "range": 900, "step": 10}
    reader = threading.Thread(target=_read_events, args=(backend.url, 10**6, events, ready, params))
    reader.start()
    assert ready.wait(5)
    exports = 30
    now = time.time()
    started = time.perf_counter()
    for i in range(exports):
        req = metric_request(
            "ml.model.predictions", points=[{"value": 1, "time_s": now + i * 1e-3}]
        )
        resp = backend.client.post(
            "/v1/metrics",
            content=req.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert resp.status_code == 200
    posting = time.perf_counter() - started
    deadline = time.monotonic() + 20

    def done() -> bool:
        ingests = [d for e, d in events if e == "ingest"]
        snapshots = [d for e, d in events if e == "snapshot"]
        return (
            sum(d["commits"] for d in ingests) == exports
            and bool(snapshots)
            and snapshots[-1]["committed_at"] == ingests[-1]["committed_at"]
        )

    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    backend.app.state.broker.close()  # ends the stream: the reader returns
    reader.join(5)
    # Ingest never waited for the computations (30 of them would take 6 s).
    assert posting < 3
    # Every commit announced exactly once, in far fewer computations than exports.
    ingests = [d for e, d in events if e == "ingest"]
    snapshots = [d for e, d in events if e == "snapshot"]
    assert sum(d["commits"] for d in ingests) == exports
    assert sum(d["points"] for d in ingests) == exports
    assert pusher.computations == len(ingests) <= 2 + posting / 0.2
    assert pusher.snapshot_computations == len(snapshots) <= 2 + posting / 0.2
    # The last snapshot covers the last commit and counts every export.
    assert snapshots[-1]["committed_at"] == ingests[-1]["committed_at"]
    assert snapshots[-1]["doc"]["model_metrics"]["unknown"]["predictions_count"] == exports


def test_a_plain_subscriber_costs_no_computation(backend: Backend) -> None:
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_events, args=(backend.url, 1, events, ready))
    reader.start()
    assert ready.wait(5)
    req = metric_request("ml.model.predictions", points=[{"value": 1, "time_s": time.time()}])
    backend.client.post(
        "/v1/metrics",
        content=req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    reader.join(10)
    ((_, data),) = events
    assert set(data) == {"committed_at", "points", "services", "commits"}
    assert backend.app.state.pusher.computations == 0


@pytest.mark.parametrize(
    "params",
    [{"range": 3600}, {"step": 30}, {"range": 3600, "step": 7}, {"range": 10**9, "step": 10}],
)
def test_bad_view_is_refused(backend: Backend, params: dict[str, Any]) -> None:
    assert backend.client.get("/events", params=params).status_code == 400
