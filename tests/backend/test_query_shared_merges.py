"""`shared_merges`: inside the block, p95 and p99 (and p50) of one group merge its
histograms once; the numbers are the same as without it, and nothing outlives the block."""

from __future__ import annotations

import time

from backend_testing import Backend, meter_provider

from mlpulse.backend.query import signals
from mlpulse.backend.query.signals import evaluate, evaluate_range, shared_merges
from mlpulse.backend.query.view import read_once
from mlpulse.backend.storage.aggregate import merge_all


def _traffic(url: str) -> list[float]:
    """Requests on three routes (three series of the duration histogram); their durations."""
    provider = meter_provider(url)
    hist = provider.get_meter("t").create_histogram("http.server.request.duration", unit="s")
    values = []
    for i in range(60):
        v = 0.002 * (1 + i % 17) * (1 + i % 3)
        values.append(v)
        hist.record(v, {"http.route": f"/r{i % 3}", "http.response.status_code": 200})
    assert provider.force_flush()
    provider.shutdown()
    return values


def _latency(store: object, start: float, end: float) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for name in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "avg_latency_ms"):
        out[name] = [
            (v.labels, v.value, v.samples, v.lower, v.upper)
            for v in evaluate(store, name, start, end, ["service"])
        ]  # type: ignore[arg-type]
    return out


def test_shared_merges_give_the_same_numbers_and_end_with_the_block(backend: Backend) -> None:
    values = _traffic(backend.url)
    store = backend.app.state.store
    now = time.time()
    start, end = now - 300, now + 10

    plain = _latency(store, start, end)
    with shared_merges():
        shared = _latency(read_once(store), start, end)
        # One computation: the same rows are merged once, the result then reused.
        assert len(signals._shared.merges) == 1
        with shared_merges():  # nested: the outer block's memo stays in use
            assert len(signals._shared.merges) == 1
        assert signals._shared.merges is not None
    assert signals._shared.merges is None  # nothing kept after the block
    assert shared == plain

    # Sanity: the numbers are the recorded ones (3 series merged into one group).
    ((_, avg, samples, _, _),) = plain["avg_latency_ms"]
    assert samples == len(values)
    assert abs(avg - sum(values) / len(values) * 1000) < 1e-9
    ((_, p99, _, lower, upper),) = plain["p99_latency_ms"]
    assert lower <= p99 <= upper


def test_shared_merges_in_range_evaluation_match_plain_merges(backend: Backend) -> None:
    _traffic(backend.url)
    store = backend.app.state.store
    now = time.time()
    step = 30
    start, end = now - 120, now + 10

    def series(name: str) -> list[object]:
        return [
            (s.labels, [(p.time, p.value, p.samples, p.lower, p.upper) for p in s.points])
            for s in evaluate_range(store, name, start, end, step, ["service"])
        ]

    plain = {n: series(n) for n in ("p95_latency_ms", "p99_latency_ms", "avg_latency_ms")}
    store.cache.clear()  # computed again, not served from the kept results
    with shared_merges():
        shared = {n: series(n) for n in ("p95_latency_ms", "p99_latency_ms", "avg_latency_ms")}
    assert shared == plain
    assert any(v is not None for _, pts in plain["p95_latency_ms"] for _, v, *_ in pts)


def test_merge_memo_keys_on_the_objects_not_their_values() -> None:
    """Two different lists of equal aggregates are merged each on their own (the memo
    never hands one computation's result to other objects)."""
    from mlpulse.backend.storage.aggregate import Aggregate
    from mlpulse.backend.storage.base import SeriesInfo

    info = SeriesInfo(1, "m", "sum", "", True, "svc", "i")
    a = [(info, Aggregate(count=1.0, sum=2.0)), (info, Aggregate(count=3.0, sum=4.0))]
    b = [(info, Aggregate(count=5.0, sum=6.0)), (info, Aggregate(count=7.0, sum=8.0))]
    with shared_merges():
        first = signals._merged(a)
        assert signals._merged(a) is first
        other = signals._merged(b)
    assert other is not first and (other.count, other.sum) == (12.0, 14.0)
    assert (first.count, first.sum) == (merge_all([x for _, x in a]).count, 6.0)
