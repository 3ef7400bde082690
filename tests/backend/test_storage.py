"""Storage: durability across kill -9, retention, rollups, the write transaction."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_testing import Backend, metric_request

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest, open_engine
from mlpulse.backend.query.histograms import quantile
from mlpulse.backend.storage.aggregate import merge_all
from mlpulse.backend.storage.base import StorageBusyError
from mlpulse.backend.storage.retention import apply_retention

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = (
    "import sys, uvicorn\n"
    "from mlpulse.backend.app import create_app\n"
    "from mlpulse.backend.config import BackendSettings\n"
    "app = create_app(BackendSettings(data_dir=sys.argv[1], api_token='t'))\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning',\n"
    "            timeout_keep_alive=75)\n"  # outlives httpx's 5 s idle expiry
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(data_dir), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "backend did not start"
        time.sleep(0.05)


def _cumulative(value: float, start: float, t: float) -> bytes:
    req = metric_request(
        "ml.model.predictions",
        temporality=2,
        points=[
            {"value": value, "start_s": start, "time_s": t, "attributes": {"ml.model.name": "m"}}
        ],
    )
    return bytes(req.SerializeToString())


def _post(url: str, body: bytes) -> None:
    resp = httpx.post(
        f"{url}/v1/metrics", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert resp.status_code == 200


def _count(url: str) -> float:
    snap = httpx.get(f"{url}/metrics/current", params={"window": "5m"}).json()
    return float(snap["model_metrics"]["m"]["predictions_count"])


def test_acknowledged_export_survives_kill_9(tmp_path: Path) -> None:
    now = time.time()
    proc, url = _start(tmp_path)
    try:
        _post(url, _cumulative(42, now - 5, now - 2))  # acknowledged with 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc, url = _start(tmp_path)
    try:
        assert _count(url) == 42
        # The cumulative state survived too: the next point adds only its increase,
        # and a replay of the first export adds nothing.
        _post(url, _cumulative(50, now - 5, now - 1))
        _post(url, _cumulative(42, now - 5, now - 2))
        assert _count(url) == 50
        assert httpx.get(f"{url}/health").json()["last_ingest_age_seconds"] < 60
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def _delta_request(t: float, value: float, hist: dict[str, Any] | None = None) -> Any:
    if hist is not None:
        return metric_request(
            "http.server.request.duration",
            kind="exp",
            unit="s",
            points=[{"hist": hist, "time_s": t, "start_s": t - 1}],
        )
    return metric_request("ml.model.predictions", points=[{"value": value, "time_s": t}])


def test_rollups_preserve_counts_and_histogram_merges(tmp_path: Path) -> None:
    store = open_engine(tmp_path / "db.sqlite")
    hour = (int(time.time()) // 3600 - 2) * 3600
    # 90 points, 40 s apart: 90 ten-second buckets, 60 one-minute buckets, 1 hour bucket.
    for i in range(90):
        t = hour + 40 * i + 1
        ingest(store, _delta_request(t, i + 1), Limits())
        scale = 3 if i % 2 else 1  # different scales, merged by downscaling
        hist = {
            "scale": scale, "count": 3 + i, "sum": 1.0 * (3 + i), "zero_count": 1,
            "positive": {"offset": -4 + i % 5, "bucket_counts": [1, 0, 1 + i]},
        }  # fmt: skip
        ingest(store, _delta_request(t, 0, hist), Limits())
    per_res = {}
    for res in (10, 60, 3600):
        counter = [s.id for s in store.series("ml.model.predictions")]
        rows = list(store.read(counter, res, hour, hour + 3600))
        hist_ids = [s.id for s in store.series("http.server.request.duration")]
        hrows = list(store.read(hist_ids, res, hour, hour + 3600))
        per_res[res] = (
            len(rows),
            sum(a.sum for _, _, a in rows),
            merge_all([a for _, _, a in hrows]),
        )
    assert [per_res[r][0] for r in (10, 60, 3600)] == [90, 60, 1]
    assert {per_res[r][1] for r in per_res} == {sum(range(1, 91))}
    fine, coarse = per_res[10][2], per_res[3600][2]
    assert fine.count == coarse.count == sum(3 + i for i in range(90))
    assert fine.exponential == coarse.exponential
    assert coarse.exponential is not None and coarse.exponential.scale == 1
    assert coarse.exponential.total == coarse.count
    for q in (0.5, 0.9, 0.99):
        assert quantile(fine, q) == quantile(coarse, q)
    store.close()


def test_retention_deletes_old_buckets_per_resolution(tmp_path: Path) -> None:
    store = open_engine(tmp_path / "db.sqlite")
    now = time.time()
    old_ok = Limits(max_age_ns=30 * 86400 * 10**9)  # store what ingest would refuse as too old
    for age in (10 * 86400, 3 * 86400, 2 * 3600, 60):
        ingest(store, _delta_request(now - age, 1), old_ok)
    ids = [s.id for s in store.series("ml.model.predictions")]

    def count(res: int) -> int:
        return len(list(store.read(ids, res, 0, now + 10)))

    assert [count(r) for r in (10, 60, 3600)] == [4, 4, 4]
    deleted = apply_retention(store, {10: 86400, 60: 7 * 86400, 3600: 90 * 86400}, now)
    assert deleted == {10: 2, 60: 1, 3600: 0, 0: 0}
    assert [count(r) for r in (10, 60, 3600)] == [2, 3, 4]
    # Once nothing is left, the series and its ingest state are forgotten as well.
    assert apply_retention(store, {10: 1, 60: 1, 3600: 1}, now + 3600)[0] == 1
    assert store.metrics() == []
    ingest(store, _delta_request(now + 1, 5), Limits())
    ids = [s.id for s in store.series("ml.model.predictions")]
    assert [a.sum for _, _, a in store.read(ids, 10, 0, now + 10)] == [5]
    store.close()


def test_retention_job_runs_in_the_background(backend_factory: Any) -> None:
    backend: Backend = backend_factory(
        retention_10s=120, retention_1m=3600, maintenance_interval_s=0.1
    )
    now = time.time()
    for age in (600, 5):
        body = _delta_request(now - age, 1).SerializeToString()
        assert (
            backend.client.post(
                "/v1/metrics", content=body, headers={"Content-Type": "application/x-protobuf"}
            ).status_code
            == 200
        )
    store = backend.app.state.store
    ids = [s.id for s in store.series("ml.model.predictions")]
    deadline = time.monotonic() + 5
    while len(list(store.read(ids, 10, 0, now + 10))) != 1:
        assert time.monotonic() < deadline, "retention job did not run"
        time.sleep(0.05)
    assert len(list(store.read(ids, 60, 0, now + 10))) == 2


def test_failed_checkpoint_keeps_everything_for_the_next(tmp_path: Path) -> None:
    import sqlite3

    store = open_engine(tmp_path / "db.sqlite", busy_timeout_ms=50, checkpoint_interval_s=60)
    now = time.time()
    ingest(store, _delta_request(now - 60, 3), Limits())
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    with pytest.raises(StorageBusyError):
        store.checkpoint()
    # Ingest goes on meanwhile: it only needs the WAL and the head.
    ingest(store, _delta_request(now - 30, 4), Limits())
    other.execute("ROLLBACK")
    other.close()
    store.checkpoint()
    ids = [s.id for s in store.series("ml.model.predictions")]
    assert sorted(a.sum for _, _, a in store.read(ids, 10, 0, now + 10)) == [3, 4]
    store.close()
    reopened = open_engine(tmp_path / "db.sqlite")  # from the database alone: the WAL is cut
    assert sorted(a.sum for _, _, a in reopened.read(ids, 10, 0, now + 10)) == [3, 4]
    reopened.close()


def test_ingest_while_the_database_is_locked_is_acknowledged(tmp_path: Path) -> None:
    import sqlite3

    store = open_engine(tmp_path / "db.sqlite", busy_timeout_ms=50, checkpoint_interval_s=60)
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    result = ingest(store, _delta_request(time.time(), 1), Limits())
    assert result.accepted == 1
    other.execute("ROLLBACK")
    other.close()
    store.close()
    reopened = open_engine(tmp_path / "db.sqlite")
    ids = [s.id for s in reopened.series("ml.model.predictions")]
    assert [a.sum for _, _, a in reopened.read(ids, 10, 0, time.time() + 10)] == [1]
    reopened.close()


def test_wal_and_synchronous_settings(tmp_path: Path) -> None:
    store = open_engine(tmp_path / "db.sqlite", synchronous="FULL")
    conn = store.store._writer
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    with pytest.raises(ValueError):
        open_engine(tmp_path / "x.sqlite", synchronous="OFF")


def test_sigterm_stops_the_backend_with_an_event_stream_open(tmp_path: Path) -> None:
    import threading

    proc, url = _start(tmp_path)
    lines: list[str] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{url}/events", timeout=30) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                connected.set()

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    try:
        assert connected.wait(10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)  # a stream that never ends would keep uvicorn waiting
        assert time.monotonic() - started < 5
        reader.join(5)
        assert not reader.is_alive()  # the stream ended cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sql_windows_equal_python_merges(tmp_path: Path) -> None:
    from mlpulse.backend.storage.rollup import regroup

    store = open_engine(tmp_path / "db.sqlite")
    base = (int(time.time()) // 600 - 3) * 600
    for i in range(60):
        t = base + 17 * i + 3
        for metric, kind in (("system.cpu.utilization", "gauge"), ("ml.model.actual", "sum")):
            req = metric_request(
                metric,
                kind=kind,
                temporality=2,
                monotonic=False,
                points=[{"value": (i * 7) % 11 - 3, "time_s": t, "start_s": base - 1}],
            )
            ingest(store, req, Limits())
    for metric in ("system.cpu.utilization", "ml.model.actual"):
        ids = [s.id for s in store.series(metric)]
        for res, step in ((10, 60), (60, 300), (10, 1020)):
            python = regroup(store.read(ids, res, base, base + 1200), step, base)
            sql = {
                (sid, w): a
                for sid, w, a in store.read_windows(ids, res, base, base + 1200, step, base)
            }
            assert python.keys() == sql.keys()
            for key, a in python.items():
                b = sql[key]
                assert (a.count, a.min, a.max, a.last, a.last_ns) == (
                    b.count, b.min, b.max, b.last, b.last_ns,
                ), (metric, res, step, key)  # fmt: skip
                assert a.sum == pytest.approx(b.sum)
    store.close()


def test_series_limit_counts_active_series_only(tmp_path: Path) -> None:
    store = open_engine(tmp_path / "db.sqlite")
    now = time.time()

    def send(instance: str, t: float) -> int:
        req = metric_request(
            "ml.model.predictions", instance=instance, points=[{"value": 1, "time_s": t}]
        )
        return ingest(store, req, Limits(max_series=2)).rejected

    assert send("a", now - 7200) == 0  # idle for two hours
    assert send("b", now) == 0
    assert send("c", now) == 0  # "a" no longer counts
    assert send("d", now) == 1  # "b" and "c" are active: the limit holds
    store.close()
