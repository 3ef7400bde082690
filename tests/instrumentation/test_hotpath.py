"""The hot path: series keyed by attributes, bounded buffers and series, no lost values."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from mlpulse_instrumentation._hotpath import FOLD_THRESHOLD, MAX_SERIES, HotPath


class Capture:
    """A destination that keeps what the hot path hands it."""

    def __init__(self) -> None:
        self.values: dict[tuple[tuple[str, Any], ...], list[float]] = {}
        self.lock = threading.Lock()

    def deliver(self, histogram: Any, series: Any, values: list[float], traced: list[Any]) -> None:
        with self.lock:
            self.values.setdefault(series.key, []).extend(values + [t[0] for t in traced])

    def count(self) -> int:
        return sum(len(v) for v in self.values.values())


def _hot_path() -> tuple[HotPath, Any, Capture]:
    hot_path = HotPath(exemplars=False)
    histogram = hot_path.histogram("h", "s", "")
    capture = Capture()
    hot_path.add_destination(capture)
    return hot_path, histogram, capture


def test_equal_attributes_share_one_series_whatever_their_order() -> None:
    hot_path, histogram, capture = _hot_path()
    histogram.bind({"a": 1, "b": "x"}).record(1.0)
    histogram.bind({"b": "x", "a": 1}).record(2.0)
    hot_path.flush()
    assert list(capture.values.values()) == [[1.0, 2.0]]


def test_a_full_buffer_is_drained_without_a_collection() -> None:
    _, histogram, capture = _hot_path()
    handle = histogram.bind({"k": "v"})
    for _ in range(FOLD_THRESHOLD + 1):
        handle.record(1.0)
    assert capture.count() == FOLD_THRESHOLD + 1


def test_series_beyond_the_cardinality_limit_go_to_one_overflow_series() -> None:
    hot_path, histogram, capture = _hot_path()
    for i in range(MAX_SERIES + 10):
        histogram.bind({"i": i}).record(float(i))
    hot_path.flush()
    assert len(capture.values) == MAX_SERIES + 1
    assert len(capture.values[(("otel.metric.overflow", True),)]) == 10


def test_concurrent_recording_and_collection_lose_nothing() -> None:
    hot_path, histogram, capture = _hot_path()
    stop = threading.Event()

    def collector() -> None:
        while not stop.is_set():
            hot_path.flush()

    def writer() -> None:
        handle = histogram.bind({"k": "v"})
        for i in range(20_000):
            handle.record(0.001 * (1 + i % 97))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    reader = threading.Thread(target=collector)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()
    hot_path.flush()
    hot_path.flush()  # a value appended to a retired buffer is picked up by the next drain
    assert capture.count() == 80_000


def test_a_row_records_each_column_into_its_series_and_skips_none() -> None:
    hot_path, histogram, capture = _hot_path()
    total = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "")
    a, b = histogram.bind({"k": "a"}), histogram.bind({"k": "b"})
    count = total.bind({"k": "n"})
    row = hot_path.row([count, a, b, None])
    for i in range(5):
        row.record((1, float(i), None if i % 2 else 10.0 * i, 99.0))
    hot_path.flush()
    assert capture.values == {
        (("k", "a"),): [0.0, 1.0, 2.0, 3.0, 4.0],
        (("k", "b"),): [0.0, 20.0, 40.0],
    }
    assert count.series.total == 5


def test_rows_past_the_threshold_are_drained_without_a_collection() -> None:
    hot_path, histogram, capture = _hot_path()
    row = hot_path.row([histogram.bind({"k": "v"})])
    for _ in range(FOLD_THRESHOLD + 1):
        row.record((1.0,))
    assert capture.count() == FOLD_THRESHOLD + 1


def test_concurrent_rows_and_collection_lose_nothing() -> None:
    hot_path, histogram, capture = _hot_path()
    total = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "")
    count = total.bind({"k": "n"})
    row = hot_path.row([count, histogram.bind({"k": "v"})])
    stop = threading.Event()

    def collector() -> None:
        while not stop.is_set():
            hot_path.flush()

    def writer() -> None:
        for i in range(20_000):
            row.record((1, 0.001 * (1 + i % 97)))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    reader = threading.Thread(target=collector)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()
    hot_path.flush()
    hot_path.flush()
    assert capture.count() == 80_000
    assert count.series.total == 80_000


def test_a_row_of_the_wrong_width_is_refused_and_changes_nothing() -> None:
    hot_path, histogram, capture = _hot_path()
    row = hot_path.row([histogram.bind({"k": "a"}), histogram.bind({"k": "b"})])
    row.record((1.0, 2.0))
    with pytest.raises(ValueError, match="row of 1 values for 2 handles"):
        row.record((3.0,))
    row.record((4.0, 5.0))
    hot_path.flush()
    assert capture.values == {(("k", "a"),): [1.0, 4.0], (("k", "b"),): [2.0, 5.0]}


def test_a_counted_row_adds_one_per_row_to_its_count() -> None:
    hot_path, histogram, capture = _hot_path()
    total = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "")
    count = total.bind({"k": "n"})
    row = hot_path.row([histogram.bind({"k": "a"})], count=count)
    for i in range(3):
        row.record((float(i),))
    hot_path.flush()
    row.record((7.0,))
    hot_path.flush()
    assert count.series.total == 4
    assert capture.values == {(("k", "a"),): [0.0, 1.0, 2.0, 7.0]}


def test_a_counted_row_without_columns_is_refused() -> None:
    hot_path, _histogram, _capture = _hot_path()
    total = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "")
    with pytest.raises(ValueError, match="at least one column"):
        hot_path.row([], count=total.bind({"k": "n"}))


def test_a_counted_row_counts_rows_taken_under_a_sampled_span_too() -> None:
    from opentelemetry.context import attach, detach
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        set_span_in_context,
    )

    hot_path = HotPath(exemplars=True)
    histogram = hot_path.histogram("h", "s", "")
    capture = Capture()
    hot_path.add_destination(capture)
    count = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "").bind({"k": "n"})
    row = hot_path.row([histogram.bind({"k": "a"})], count=count)
    row.record((1.0,))
    sampled = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = attach(set_span_in_context(NonRecordingSpan(sampled)))
    try:
        row.record((2.0,))
        row.record((3.0,))
    finally:
        detach(token)
    hot_path.flush()
    assert count.series.total == 3
    assert sorted(capture.values[(("k", "a"),)]) == [1.0, 2.0, 3.0]


def test_a_lone_none_in_a_column_records_nothing() -> None:
    # A column of one value is never compared by the sort that finds None: checked apart.
    hot_path, histogram, capture = _hot_path()
    total = hot_path.sum(MeterProvider().get_meter("test"), "s", "1", "")
    amount = total.bind({"k": "n"})
    row = hot_path.row([histogram.bind({"k": "a"}), amount, histogram.bind({"k": "b"})])
    row.record((None, None, 2.0))
    hot_path.flush()
    assert capture.values == {(("k", "b"),): [2.0]}
    assert amount.series.total == 0
    assert not amount.series.seen
