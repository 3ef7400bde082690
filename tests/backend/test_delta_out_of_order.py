"""Delta points arriving out of order count once; replays never count twice.

A collector that restarts re-queues the batch it was sending at the end of its persistent
queue, so older delta points reach the backend after newer ones. Delta sums and
histograms are deduplicated by their exact interval; gauges and cumulative series keep
refusing any point that is not newer than the last accepted one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_testing import Backend, ServerThread, make_settings, metric_request, post_otlp
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from mlpulse.backend.app import create_app
from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest, open_engine
from mlpulse.backend.ingest.temporality import LATE_DELTA_WINDOW_S
from mlpulse.backend.storage.aggregate import Aggregate
from mlpulse.backend.storage.base import MetricStore
from mlpulse.backend.storage.engine import Engine
from mlpulse.backend.storage.retention import apply_retention

METRIC = "ml.model.predictions"
HIST = "http.server.request.duration"


def _hour() -> int:
    """The start of an hour bucket two hours ago: every test point stays inside it."""
    return (int(time.time()) // 3600 - 2) * 3600


def _sum_request(*points: tuple[float, float], metric: str = METRIC, cumulative: bool = False,
                 start: float | None = None) -> Any:  # fmt: skip
    """A delta (or cumulative) sum request; each point is (time_s, value), interval 10 s."""
    return metric_request(
        metric,
        temporality=2 if cumulative else 1,
        points=[
            {"value": v, "time_s": t, "start_s": (t - 10) if start is None else start}
            for t, v in points
        ],
    )


def _exp_request(*points: tuple[float, int]) -> Any:
    """A delta exponential histogram request; each point is (time_s, n values of 1.5)."""
    return metric_request(
        HIST,
        kind="exp",
        unit="s",
        points=[
            {
                "hist": {
                    "scale": 0, "count": n, "sum": 1.5 * n, "min": 1.5, "max": 1.5,
                    "positive": {"offset": 0, "bucket_counts": [n]},
                },
                "time_s": t,
                "start_s": t - 10,
            }
            for t, n in points
        ],
    )  # fmt: skip


def _explicit_request(*points: tuple[float, list[int]]) -> Any:
    """A delta explicit-bucket histogram request (bounds 0.1, 1); (time_s, bucket counts)."""
    req = metric_request(HIST, unit="s")
    metric = req.resource_metrics[0].scope_metrics[0].metrics[0]
    metric.histogram.aggregation_temporality = 1
    for t, counts in points:
        dp = metric.histogram.data_points.add(
            time_unix_nano=int(t * 1e9), start_time_unix_nano=int((t - 10) * 1e9)
        )
        dp.count = sum(counts)
        dp.sum = float(sum(counts))
        dp.explicit_bounds.extend([0.1, 1.0])
        dp.bucket_counts.extend(counts)
    return req


def _post(backend: Backend, req: Any) -> ExportMetricsServiceResponse:
    resp = post_otlp(backend, req.SerializeToString())
    assert resp.status_code == 200, resp.text
    out = ExportMetricsServiceResponse()
    out.ParseFromString(resp.content)
    assert out.partial_success.rejected_data_points == 0
    return out


def _buckets(store: MetricStore, metric: str, res: int) -> dict[int, Aggregate]:
    ids = [s.id for s in store.series(metric)]
    return {ts: agg for _, ts, agg in store.read(ids, res, 0, time.time() + 3600)}


def _totals(store: MetricStore, metric: str = METRIC) -> list[float]:
    """The sum of every stored bucket, per resolution (10 s, 1 min, 1 h)."""
    return [sum(a.sum for a in _buckets(store, metric, res).values()) for res in (10, 60, 3600)]


def _rows(store: Engine, table: str) -> int:
    store.checkpoint()  # what the database holds once the head is written
    with sqlite3.connect(store.store.path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_delta_sums_out_of_order_count_exactly_once(backend: Backend) -> None:
    store = backend.app.state.store
    h = _hour()
    values = {h + 10 * k + 5: float(k + 1) for k in range(6)}  # 1..6 in six 10 s buckets
    times = sorted(values)
    # The newer batches first, then the batch that was re-queued behind them.
    _post(backend, _sum_request(*[(t, values[t]) for t in times[3:5]]))
    _post(backend, _sum_request((times[5], values[times[5]])))
    _post(backend, _sum_request(*[(t, values[t]) for t in times[:3]]))
    assert _totals(store) == [21.0, 21.0, 21.0]
    # Each late point landed in the buckets of its own time.
    fine = _buckets(store, METRIC, 10)
    assert {ts: a.sum for ts, a in fine.items()} == {t - 5: values[t] for t in times}
    assert _buckets(store, METRIC, 60)[h].sum == 21.0
    # Replays, in order and out of order, whole or in part, change nothing.
    for batch in (times[:3], times[3:5], times, times[1:2]):
        _post(backend, _sum_request(*[(t, values[t]) for t in batch]))
    assert _totals(store) == [21.0, 21.0, 21.0]


def test_a_duplicate_inside_one_export_counts_once(backend: Backend) -> None:
    store = backend.app.state.store
    h = _hour()
    _post(backend, _sum_request((h + 25, 4.0)))
    _post(backend, _sum_request((h + 15, 2.0), (h + 15, 2.0), (h + 5, 1.0), (h + 5, 1.0)))
    assert _totals(store) == [7.0, 7.0, 7.0]


def test_overlapping_but_different_delta_intervals_both_count(backend: Backend) -> None:
    # The OTLP data model says a series' delta intervals do not overlap; when they do,
    # they are different points, not replays of each other.
    store = backend.app.state.store
    h = _hour()
    _post(backend, _sum_request((h + 35, 3.0)))
    _post(backend, _sum_request((h + 15, 1.0), start=h))
    _post(backend, _sum_request((h + 15, 2.0), start=h + 5))
    assert _totals(store) == [6.0, 6.0, 6.0]


@contextmanager
def _serve(data_dir: Path) -> Iterator[Backend]:
    app = create_app(make_settings(data_dir))
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Backend(url, app, app.state.settings, client)


def test_replays_after_a_backend_restart_change_nothing(tmp_path: Path) -> None:
    h = _hour()
    with _serve(tmp_path / "data") as backend:
        _post(backend, _sum_request((h + 45, 4.0)))
        _post(backend, _sum_request((h + 5, 1.0), (h + 15, 2.0)))
    with _serve(tmp_path / "data") as backend:
        store = backend.app.state.store
        assert _totals(store) == [7.0, 7.0, 7.0]
        out = _post(backend, _sum_request((h + 5, 1.0), (h + 15, 2.0), (h + 45, 4.0)))
        assert out.partial_success.rejected_data_points == 0
        # Still late and unseen: it counts, once.
        _post(backend, _sum_request((h + 25, 8.0), (h + 5, 1.0)))
        _post(backend, _sum_request((h + 25, 8.0)))
        assert _totals(store) == [15.0, 15.0, 15.0]


def test_delta_exponential_histograms_out_of_order_count_exactly(backend: Backend) -> None:
    store = backend.app.state.store
    h = _hour()
    _post(backend, _exp_request((h + 35, 4), (h + 45, 5)))
    _post(backend, _exp_request((h + 5, 1), (h + 15, 2), (h + 25, 3)))
    _post(backend, _exp_request((h + 15, 2), (h + 45, 5)))  # replays
    for res in (10, 60, 3600):
        buckets = _buckets(store, HIST, res)
        assert sum(a.count for a in buckets.values()) == 15
        assert sum(a.sum for a in buckets.values()) == 22.5
        for agg in buckets.values():
            assert agg.exponential is not None and agg.exponential.total == agg.count
    assert {ts: a.count for ts, a in _buckets(store, HIST, 10).items()} == {
        h: 1, h + 10: 2, h + 20: 3, h + 30: 4, h + 40: 5,
    }  # fmt: skip


def test_delta_explicit_histograms_out_of_order_count_exactly(backend: Backend) -> None:
    store = backend.app.state.store
    h = _hour()
    _post(backend, _explicit_request((h + 65, [0, 1, 2])))
    _post(backend, _explicit_request((h + 5, [1, 0, 0]), (h + 15, [1, 1, 0])))
    _post(backend, _explicit_request((h + 5, [1, 0, 0]), (h + 65, [0, 1, 2])))  # replays
    for res in (10, 60, 3600):
        buckets = _buckets(store, HIST, res)
        assert sum(a.count for a in buckets.values()) == 6
        counts = [0, 0, 0]
        for agg in buckets.values():
            assert agg.explicit is not None
            counts = [a + b for a, b in zip(counts, agg.explicit.counts, strict=True)]
        assert counts == [2, 2, 2]
    assert {ts: a.count for ts, a in _buckets(store, HIST, 60).items()} == {h: 3, h + 60: 3}


def test_late_cumulative_and_gauge_points_are_still_ignored(backend: Backend) -> None:
    store = backend.app.state.store
    h = _hour()
    # Started before the store: the first point is a baseline, the second adds 20.
    _post(backend, _sum_request((h + 5, 10.0), (h + 25, 30.0), cumulative=True, start=h))
    assert _totals(store) == [20.0, 20.0, 20.0]
    _post(backend, _sum_request((h + 15, 20.0), cumulative=True, start=h))  # late: included
    assert _totals(store) == [20.0, 20.0, 20.0]
    gauge = metric_request("ml.queue.depth", kind="gauge", points=[{"value": 7, "time_s": h + 25}])
    _post(backend, gauge)
    late = metric_request("ml.queue.depth", kind="gauge", points=[{"value": 3, "time_s": h + 15}])
    _post(backend, late)
    assert [a.last for a in _buckets(store, "ml.queue.depth", 10).values()] == [7.0]


def test_retention_forgets_old_intervals_and_old_replays_stay_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_engine(tmp_path / "db.sqlite")
    now = time.time()
    h = (int(now) // 3600 - 2) * 3600
    for t in (h + 5, h + 15, h + 25):
        ingest(store, _sum_request((t, 1.0)), Limits())
    assert _rows(store, "delta_seen") == 3
    keep = {10: 86400, 60: 7 * 86400, 3600: 90 * 86400}
    assert apply_retention(store, keep, now) == {10: 0, 60: 0, 3600: 0, 0: 0}
    assert _rows(store, "delta_seen") == 3  # still inside the late-point window
    later = h + 25 + LATE_DELTA_WINDOW_S + 60
    apply_retention(store, keep, later)
    assert _rows(store, "delta_seen") == 0
    # Past the window a late point can no longer be told from a replay: it is ignored.
    monkeypatch.setattr(time, "time", lambda: later)
    result = ingest(store, _sum_request((h + 15, 1.0)), Limits())
    assert (result.accepted, result.ignored) == (0, 1)
    assert _totals(store) == [0, 3.0, 3.0]  # (the 10 s buckets have expired meanwhile)
    store.close()


def test_intervals_of_forgotten_series_go_with_them(tmp_path: Path) -> None:
    store = open_engine(tmp_path / "db.sqlite")
    now = time.time()
    ingest(store, _sum_request((now - 30, 1.0)), Limits())
    assert _rows(store, "delta_seen") == 1
    assert apply_retention(store, {10: 1, 60: 1, 3600: 1}, now + 7200)[0] == 1
    assert _rows(store, "delta_seen") == 0
    store.close()


def test_a_store_from_before_interval_records_refuses_older_late_points(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = open_engine(path)
    h = _hour()
    ingest(store, _sum_request((h + 5, 1.0), (h + 25, 4.0)), Limits())
    store.close()
    with sqlite3.connect(path) as conn:  # what an older version left behind
        conn.execute("DROP TABLE delta_seen")
        conn.execute("DELETE FROM meta WHERE key = 'delta_intervals_since'")
    store = open_engine(path)
    assert store.delta_intervals_since() > h + 25
    # Accepted before the upgrade, unrecorded: refused like before, never counted twice.
    assert ingest(store, _sum_request((h + 5, 1.0)), Limits()).ignored == 1
    assert _totals(store) == [5.0, 5.0, 5.0]
    now = time.time()
    ingest(store, _sum_request((now + 20, 2.0)), Limits())
    ingest(store, _sum_request((now + 10, 1.0)), Limits())  # late, after the upgrade
    assert ingest(store, _sum_request((now + 10, 1.0)), Limits()).ignored == 1
    assert _totals(store) == [8.0, 8.0, 8.0]
    store.close()
