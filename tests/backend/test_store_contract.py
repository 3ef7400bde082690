"""The store contract, run against both stores: embedded SQLite and shared PostgreSQL.

Everything goes through what the app uses: `ingest()` for writes (the real OTLP decode
path, same decisions for both) and the `MetricStore` read interface. PostgreSQL runs as
a real throwaway server (`postgres_cluster`, tests/backend/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_testing import metric_request

from mlpulse.backend.config import BackendSettings
from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest, open_store
from mlpulse.backend.ingest.points import flatten
from mlpulse.backend.query.histograms import quantile
from mlpulse.backend.storage.aggregate import merge_all
from mlpulse.backend.storage.engine import Engine
from mlpulse.backend.storage.postgres import PostgresEngine

Store = Engine | PostgresEngine
Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test; a second call opens it again (a restart, a replica)."""
    if request.param == "sqlite":
        settings = BackendSettings(data_dir=tmp_path, storage_url=f"sqlite:///{tmp_path}/m.db")
    else:
        url = request.getfixturevalue("postgres_url")
        settings = BackendSettings(data_dir=tmp_path, storage_url=url)
    opened: list[Store] = []

    def open_() -> Store:
        store = open_store(settings, Limits())
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def _counter(value: float, t: float, start: float, *, instance: str = "i-1") -> Any:
    return metric_request(
        "ml.model.predictions", temporality=2, instance=instance,
        points=[{"value": value, "time_s": t, "start_s": start, "attributes": {"model": "m"}}],
    )  # fmt: skip


def _total(store: Store, metric: str, start: float, end: float) -> float:
    ids = [s.id for s in store.series(metric)]
    return sum(a.sum for _, _, a in store.read(ids, 10, start, end))


def test_cumulative_deltas_replays_and_restarts_are_exact(opener: Opener) -> None:
    store = opener()
    now = time.time()
    start = now - 60  # started after the store: the first point counts in full
    values = [5, 12, 12, 30]
    for i, v in enumerate(values):
        assert ingest(store, _counter(v, now - 40 + 10 * i, start), Limits()).accepted == 1
    replay = ingest(store, _counter(12, now - 30, start), Limits())
    assert (replay.accepted, replay.ignored) == (0, 1)
    # A restart: a new start time, counting from zero again.
    ingest(store, _counter(4, now, now - 1), Limits())
    assert _total(store, "ml.model.predictions", now - 3600, now + 60) == 30 + 4


def test_a_second_instance_reads_what_the_first_wrote(opener: Opener) -> None:
    first = opener()
    now = time.time()
    ingest(first, _counter(7, now - 20, now - 30), Limits())
    first.close()
    again = opener()  # a restart (SQLite) or another replica (PostgreSQL)
    ingest(again, _counter(10, now - 10, now - 30), Limits())
    assert _total(again, "ml.model.predictions", now - 3600, now + 60) == 10
    again.close()


def test_delta_histograms_late_points_count_once(opener: Opener) -> None:
    store = opener()
    now = time.time()

    def hist(t: float, n: int) -> Any:
        return metric_request(
            "http.server.request.duration", kind="exp", unit="s",
            points=[{"time_s": t, "start_s": t - 10, "hist": {
                "scale": 2, "count": n, "sum": 0.1 * n, "zero_count": 0,
                "positive": {"offset": -10, "bucket_counts": [n]}}}],
        )  # fmt: skip

    for t, n in ((now - 20, 3), (now - 10, 4)):
        assert ingest(store, hist(t, n), Limits()).accepted == 1
    late = ingest(store, hist(now - 600, 5), Limits())  # older, never seen: new data
    again = ingest(store, hist(now - 600, 5), Limits())  # the same interval: a replay
    assert (late.accepted, again.accepted, again.ignored) == (1, 0, 1)
    ids = [s.id for s in store.series("http.server.request.duration")]
    for res in (10, 60, 3600):
        merged = merge_all([a for _, _, a in store.read(ids, res, now - 7200, now + 60)])
        assert merged.count == 12
        assert merged.exponential is not None and merged.exponential.total == 12


def test_gauges_keep_the_last_reading_and_ignore_replays(opener: Opener) -> None:
    store = opener()
    now = time.time()

    def gauge(v: float, t: float) -> Any:
        return metric_request(
            "system.memory.usage", kind="gauge", points=[{"value": v, "time_s": t}]
        )

    for v, t in ((100, now - 4), (300, now - 2)):
        ingest(store, gauge(v, t), Limits())
    assert ingest(store, gauge(300, now - 2), Limits()).ignored == 1
    ids = [s.id for s in store.series("system.memory.usage")]
    totals = store.window_totals(ids, now - 60, now + 10, histograms=False)
    agg = totals[ids[0]]
    assert (agg.count, agg.last, agg.max, agg.min) == (2, 300, 300, 100)


def test_windows_and_planned_totals_equal_the_buckets(opener: Opener) -> None:
    store = opener()
    hour = (int(time.time()) // 3600 - 2) * 3600
    limits = Limits(max_age_ns=4 * 3600 * 10**9)
    for i in range(120):  # one delta point every 30 s for an hour, values 1..120
        req = metric_request(
            "ml.model.predictions", points=[{"value": i + 1, "time_s": hour + 30 * i + 1}]
        )
        ingest(store, req, limits)
    ids = [s.id for s in store.series("ml.model.predictions")]
    buckets = {ts: a.sum for _, ts, a in store.read(ids, 10, hour, hour + 3600)}
    assert sum(buckets.values()) == sum(range(1, 121))
    windows = store.windows(ids, 10, hour, hour + 3600, 300, hour, histograms=False)
    for (_, w), agg in windows.items():
        assert agg.sum == sum(v for ts, v in buckets.items() if w <= ts < w + 300)
    # 13:00:05 to 14:00:00 planned over 10 s, 1 min and 1 h rows: the same total.
    totals = store.window_totals(ids, hour + 5, hour + 3600, histograms=False)
    assert totals[ids[0]].sum == sum(range(1, 121))
    assert store.first_bucket(ids, 60, hour, hour + 3600) == hour


def test_series_filters_metrics_and_limits(opener: Opener) -> None:
    store = opener()
    now = time.time()
    for instance in ("a", "b", "c"):
        ingest(store, _counter(1, now - 5, now - 10, instance=instance), Limits())
    assert [s.instance for s in store.series("ml.model.predictions", {"instance": "b"})] == ["b"]
    assert {m.name: m.series for m in store.metrics()} == {"ml.model.predictions": 3}
    over = ingest(store, _counter(1, now - 5, now - 10, instance="d"), Limits(max_series=3))
    assert (over.accepted, over.rejected) == (0, 1)


def test_percentiles_survive_the_round_trip(opener: Opener) -> None:
    store = opener()
    now = time.time()
    counts = [1, 5, 20, 50, 20, 3, 1]
    req = metric_request(
        "http.server.request.duration", kind="exp", unit="s",
        points=[{"time_s": now - 5, "start_s": now - 15, "hist": {
            "scale": 3, "count": sum(counts), "sum": 12.5, "zero_count": 0,
            "positive": {"offset": -20, "bucket_counts": counts}}}],
    )  # fmt: skip
    ingest(store, req, Limits())
    ids = [s.id for s in store.series("http.server.request.duration")]
    agg = store.window_totals(ids, now - 60, now + 10, histograms=True)[ids[0]]
    sent = flatten(req, Limits(), int(now * 1e9)).samples[0].value  # what was exported
    assert agg.exponential == sent.exponential
    for q in (0.5, 0.95, 0.99):
        assert quantile(agg, q) == quantile(sent, q)


def test_retention_removes_old_buckets_and_orphan_series(opener: Opener) -> None:
    store = opener()
    now = time.time()
    old_ok = Limits(max_age_ns=30 * 86400 * 10**9)
    ingest(
        store,
        metric_request("old.metric", points=[{"value": 1, "time_s": now - 10 * 86400}]),
        old_ok,
    )
    ingest(store, metric_request("new.metric", points=[{"value": 1, "time_s": now - 60}]), old_ok)
    for res in (10, 60, 3600):
        store.delete_before(res, now - 86400)
    assert _total(store, "old.metric", now - 30 * 86400, now) == 0
    assert _total(store, "new.metric", now - 3600, now) == 1
    assert store.delete_orphan_series() == 1
    assert [m.name for m in store.metrics()] == ["new.metric"]
    assert store.ping()


def test_replicas_alternating_on_one_cumulative_series_stay_exact(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = BackendSettings(data_dir=tmp_path, storage_url=postgres_url)
    replicas = [open_store(settings, Limits()) for _ in range(3)]
    try:
        now = time.time()
        start = now - 120
        values = [3, 8, 8, 15, 21, 21, 40, 41, 55]
        for i, v in enumerate(values):  # consecutive exports land on different replicas
            ingest(replicas[i % 3], _counter(v, now - 100 + 10 * i, start), Limits())
        for i, v in enumerate(values):  # every export replayed, through another replica
            assert (
                ingest(
                    replicas[(i + 1) % 3], _counter(v, now - 100 + 10 * i, start), Limits()
                ).accepted
                == 0
            )
        for replica in replicas:
            assert _total(replica, "ml.model.predictions", now - 3600, now + 60) == 55
    finally:
        for replica in replicas:
            replica.close()
