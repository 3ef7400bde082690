"""The hot-path histograms and sums agree with the OpenTelemetry SDK's own aggregation."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from otel_reading import collect, point

from mlpulse_instrumentation._aggregate import ExplicitState, ExponentialState

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
    state = ExponentialState(0)
    step = max(len(values) // batches, 1)
    for start in range(0, len(values), step):
        # folding in several batches must not matter
        state.fold(sorted(values[start : start + step]), ())
    return state.point(ATTRS, 0)


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
    # predict them (a price change, say), so the buffered path keeps them.
    state = ExponentialState(0)
    state.fold(sorted([-8.0, -8.0, -1.0, 0.0, 4.0]), ())
    data_point = state.point(ATTRS, 0)
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
    state = ExplicitState(0, boundaries=bounds)
    state.fold(sorted(values), ())
    ours = state.point(ATTRS, 0)
    sdk = _sdk_points(values, ExplicitBucketHistogramAggregation(boundaries=bounds))
    assert list(ours.bucket_counts) == list(sdk.bucket_counts)  # type: ignore[attr-defined]
    assert ours.count == len(values)
    assert ours.sum == pytest.approx(sdk.sum, rel=1e-12)  # type: ignore[attr-defined]
    assert (ours.min, ours.max) == (0.0, 1.0)
