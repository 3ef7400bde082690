"""The hot-path histograms and sums agree with the OpenTelemetry SDK's own aggregation."""

from __future__ import annotations

import random
import threading

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from otel_reading import collect, point

from instrumentation._aggregate import (
    FOLD_THRESHOLD,
    MAX_SERIES,
    ExplicitHistogram,
    ExponentialHistogram,
    SumTable,
)

KEY = ("k",)
ATTRS = {"k": "v"}


def _sdk_points(values: list[float], aggregation: object) -> object:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="h", aggregation=aggregation)],  # type: ignore[arg-type]
    )
    histogram = provider.get_meter("t").create_histogram("h")
    for value in values:
        histogram.record(value, ATTRS)
    result = point(collect(reader), "h", ATTRS)
    provider.shutdown()
    return result


def _ours(values: list[float], batches: int = 1) -> object:
    histogram = ExponentialHistogram("h", "s", "")
    step = max(len(values) // batches, 1)
    metric = None
    for start in range(0, len(values), step):
        for value in values[start : start + step]:
            histogram.record(value, KEY, ATTRS)
        metric = histogram.collect(0)  # folding in several batches must not matter
    assert metric is not None
    (data_point,) = metric.data.data_points
    return data_point


@pytest.mark.parametrize(
    ("label", "values"),
    [
        ("latencies", [random.Random(1).lognormvariate(-5, 1.5) for _ in range(3000)]),
        ("counts with zeros", [float(random.Random(2).randint(0, 5000)) for _ in range(1000)]),
        ("powers of two", [2.0**k for k in range(-12, 30)] * 3),
        ("one value", [0.0123]),
        ("wide range", [10.0**e for e in range(-9, 9)]),
    ],
)
@pytest.mark.parametrize("batches", [1, 7])
def test_exponential_histogram_matches_the_sdk(
    label: str, values: list[float], batches: int
) -> None:
    ours = _ours(values, batches)
    sdk = _sdk_points(values, ExponentialBucketHistogramAggregation(max_size=160, max_scale=20))
    assert ours.scale == sdk.scale, label  # type: ignore[attr-defined]
    assert ours.count == sdk.count  # type: ignore[attr-defined]
    assert ours.zero_count == sdk.zero_count  # type: ignore[attr-defined]
    assert ours.sum == pytest.approx(sdk.sum, rel=1e-12)  # type: ignore[attr-defined]
    assert (ours.min, ours.max) == (sdk.min, sdk.max)  # type: ignore[attr-defined]
    for sign in ("positive", "negative"):
        mine, theirs = getattr(ours, sign), getattr(sdk, sign)
        mine_counts = list(mine.bucket_counts)
        theirs_counts = list(theirs.bucket_counts)
        # The SDK may report leading/trailing empty buckets; compare the populated span.
        if theirs_counts and any(theirs_counts):
            first = next(i for i, c in enumerate(theirs_counts) if c)
            last = max(i for i, c in enumerate(theirs_counts) if c)
            assert mine.offset == theirs.offset + first, (label, sign)
            assert mine_counts == theirs_counts[first : last + 1], (label, sign)
        else:
            assert not any(mine_counts)


def test_negative_values_go_to_negative_buckets_by_magnitude() -> None:
    # The SDK's Histogram refuses negative values; OTLP carries them, and a model may
    # predict them (a price change, say), so they are kept.
    histogram = ExponentialHistogram("h", "1", "")
    for value in (-8.0, -8.0, -1.0, 0.0, 4.0):
        histogram.record(value, KEY, ATTRS)
    metric = histogram.collect(0)
    assert metric is not None
    (data_point,) = metric.data.data_points
    assert (data_point.count, data_point.zero_count, data_point.sum) == (5, 1, -13.0)
    assert (data_point.min, data_point.max) == (-8.0, 4.0)
    assert sum(data_point.negative.bucket_counts) == 3
    assert sum(data_point.positive.bucket_counts) == 1
    # 1 and 8 are exact powers of two: buckets -1 and 3*2^scale - 1.
    scale = data_point.scale
    assert data_point.negative.offset == -1
    assert data_point.negative.bucket_counts[-1] == 2
    assert data_point.negative.offset + len(data_point.negative.bucket_counts) - 1 == (
        3 * 2**scale - 1
    )


def test_explicit_histogram_matches_the_sdk() -> None:
    rng = random.Random(4)
    values = [rng.random() for _ in range(2000)] + [0.05, 0.5, 0.95, 1.0, 0.0]
    bounds = tuple(round(0.05 * i, 2) for i in range(1, 20))
    ours_histogram = ExplicitHistogram("h", "1", "", boundaries=bounds)
    for value in values:
        ours_histogram.record(value, KEY, ATTRS)
    metric = ours_histogram.collect(0)
    assert metric is not None
    (ours,) = metric.data.data_points
    sdk = _sdk_points(values, ExplicitBucketHistogramAggregation(boundaries=bounds))
    assert list(ours.bucket_counts) == list(sdk.bucket_counts)  # type: ignore[attr-defined]
    assert ours.count == len(values)
    assert ours.sum == pytest.approx(sdk.sum, rel=1e-12)  # type: ignore[attr-defined]
    assert (ours.min, ours.max) == (0.0, 1.0)


def test_a_full_buffer_is_folded_without_a_collection() -> None:
    histogram = ExponentialHistogram("h", "s", "")
    for _ in range(FOLD_THRESHOLD + 1):
        histogram.record(1.0, KEY, ATTRS)
    assert len(histogram.buffer(KEY, ATTRS)) == 0
    histogram.record(2.0, KEY, ATTRS)
    metric = histogram.collect(0)
    assert metric is not None
    assert metric.data.data_points[0].count == FOLD_THRESHOLD + 2


def test_series_beyond_the_cardinality_limit_go_to_one_overflow_series() -> None:
    table = SumTable()
    for i in range(MAX_SERIES + 10):
        table.add(1, (i,), {"i": i})
    observations = list(table.observe(None))  # type: ignore[arg-type]
    assert len(observations) == MAX_SERIES + 1
    overflow = [o for o in observations if o.attributes == {"otel.metric.overflow": True}]
    assert [o.value for o in overflow] == [10]


def test_concurrent_recording_and_collection_lose_nothing() -> None:
    histogram = ExponentialHistogram("h", "s", "")
    sums = SumTable()
    stop = threading.Event()
    collected: list[int] = []

    def collector() -> None:
        while not stop.is_set():
            metric = histogram.collect(0)
            if metric is not None:
                collected.append(metric.data.data_points[0].count)
            list(sums.observe(None))  # type: ignore[arg-type]

    def writer() -> None:
        for i in range(20_000):
            histogram.record(0.001 * (1 + i % 97), KEY, ATTRS)
            sums.add(1, KEY, ATTRS)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    reader = threading.Thread(target=collector)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()
    metric = histogram.collect(0)
    assert metric is not None
    assert metric.data.data_points[0].count == 80_000
    assert sum(metric.data.data_points[0].positive.bucket_counts) == 80_000
    (observation,) = sums.observe(None)  # type: ignore[arg-type]
    assert observation.value == 80_000
    assert collected == sorted(collected)  # cumulative: never goes back
