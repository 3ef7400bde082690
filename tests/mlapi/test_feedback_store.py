"""FeedbackStore: unknown and expired ids, refused duplicates, the memory bound."""

from __future__ import annotations

import pytest

from mlpulse.mlapi.feedback import (
    FeedbackAlreadyReceived,
    FeedbackStore,
    PendingPrediction,
    UnknownPrediction,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _pending(value: float = 10.0) -> PendingPrediction:
    return PendingPrediction("result", "v1", value, created_at=0.0)


def test_resolve_returns_the_prediction_once() -> None:
    store = FeedbackStore(max_pending=10, ttl_s=60)
    store.add("a", _pending(12.5))
    assert store.resolve("a") == _pending(12.5)
    with pytest.raises(FeedbackAlreadyReceived):
        store.resolve("a")
    stats = store.stats()
    assert (stats.received, stats.duplicates, stats.pending, stats.answered) == (1, 1, 0, 1)


def test_unknown_id_is_refused() -> None:
    store = FeedbackStore(max_pending=10, ttl_s=60)
    with pytest.raises(UnknownPrediction):
        store.resolve("never-issued")
    assert store.stats().unknown == 1


def test_ids_expire_after_the_ttl() -> None:
    clock = FakeClock()
    store = FeedbackStore(max_pending=10, ttl_s=60, clock=clock)
    store.add("a", _pending())
    clock.now += 60
    with pytest.raises(UnknownPrediction):
        store.resolve("a")
    assert store.stats().expired == 1
    assert len(store) == 0


def test_the_oldest_ids_are_dropped_beyond_the_bound() -> None:
    store = FeedbackStore(max_pending=3, ttl_s=60)
    for prediction_id in ("a", "b", "c", "d", "e"):
        store.add(prediction_id, _pending())
    assert len(store) == 3
    for dropped in ("a", "b"):
        with pytest.raises(UnknownPrediction):
            store.resolve(dropped)
    assert [store.resolve(k).predicted for k in ("c", "d", "e")] == [10.0] * 3
    stats = store.stats()
    assert (stats.evicted, stats.received, stats.answered, stats.pending) == (2, 3, 3, 0)


def test_answered_ids_count_toward_the_bound_and_leave_with_it() -> None:
    store = FeedbackStore(max_pending=2, ttl_s=60)
    store.add("a", _pending())
    store.resolve("a")
    store.add("b", _pending())
    store.add("c", _pending())  # evicts the answered "a"
    stats = store.stats()
    assert (stats.answered, stats.pending, stats.evicted) == (0, 2, 1)
    with pytest.raises(UnknownPrediction):
        store.resolve("a")
