"""kill -9 at random moments while a producer posts: nothing acknowledged is lost or doubled.

A producer posts exports continuously, as an OTel exporter behind a collector would:
each export carries one cumulative counter (+1 per export) and one delta counter (1 per
export, its own interval); an export that got no answer (the backend died under it) is
retried until it gets a 200, with the same bytes. The backend is killed with SIGKILL at a
random moment 20 times and restarted on the same data folder (WAL replay). At the end,
every export was acknowledged exactly once as far as the producer knows, so both counters
must total exactly the number of exports, and SQLite's integrity check must pass.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.backend.backend_testing import metric_request
from tests.backend.test_storage import _start

KILLS = 20
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _export(n: int, start: float, t: float) -> bytes:
    cumulative = metric_request(
        "crash.cumulative",
        temporality=2,
        points=[{"value": n, "start_s": start, "time_s": t}],
    )
    delta = metric_request(
        "crash.delta",
        temporality=1,
        points=[{"value": 1, "start_s": t - 0.001, "time_s": t}],
    )
    cumulative.resource_metrics.extend(delta.resource_metrics)
    return bytes(cumulative.SerializeToString())


def _total(url: str, metric: str) -> float:
    resp = httpx.get(
        f"{url}/metrics/history",
        params={"metric": metric, "from": "now-1h", "step": "1h", "group_by": ""},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    return sum(v for _, v in doc["series"][0]["points"] if v)


def test_random_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    start = time.time() - 60  # the producer started just before: its first point counts
    proc, url = _start(tmp_path)
    target = {"url": url}
    acked = [0]
    stop = threading.Event()

    def produce() -> None:
        n = 0
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                n += 1
                body = _export(n, start, time.time())
                while True:  # the same bytes until a 200, as an exporter retries
                    try:
                        resp = client.post(
                            f"{target['url']}/v1/metrics", content=body, headers=PROTOBUF
                        )
                        if resp.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.02)
                acked[0] = n

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 1.0))
            before = acked[0]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc, target["url"] = _start(tmp_path)
            assert before > 0
        deadline = time.monotonic() + 10
        mark = acked[0]
        while acked[0] < mark + 3:  # the producer goes on after the last restart
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stop.set()
        producer.join(20)
        assert not producer.is_alive()
        exports = acked[0]
        assert exports > KILLS
        assert _total(target["url"], "crash.cumulative") == exports
        assert _total(target["url"], "crash.delta") == exports
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    with sqlite3.connect(tmp_path / "mlpulse.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute(
            "SELECT sum(b.sum) FROM buckets b JOIN series s ON s.id = b.series_id"
            " WHERE b.resolution = 10 AND s.metric = 'crash.delta'"
        ).fetchone()[0]
    assert stored == exports  # after a clean stop every bucket is in the tables
