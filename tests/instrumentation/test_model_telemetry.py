"""ModelTelemetry and CacheTelemetry: exact sums, counts, buckets and gauges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from otel_reading import collect, point, points

from mlpulse_instrumentation import Telemetry

RESULT_V1 = {"ml.model.name": "result", "ml.model.version": "v1"}


def test_seven_feedbacks_give_numpys_mae_rmse_and_r2(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    predicted = np.array([120.0, 35.5, 8.0, 410.0, 0.0, 77.25, 19.0])
    actual = np.array([131.0, 30.0, 11.0, 388.5, 2.0, 80.0, 19.0])
    for p, y in zip(predicted, actual, strict=True):
        telemetry.models.record_feedback("result", "v1", predicted=float(p), actual=float(y))

    metrics = collect(reader)
    n = point(metrics, "ml.model.feedback", RESULT_V1).value
    sum_abs = point(metrics, "ml.model.error.absolute", RESULT_V1).value
    sum_sq = point(metrics, "ml.model.error.squared", RESULT_V1).value
    sum_y = point(metrics, "ml.model.actual", RESULT_V1).value
    sum_y2 = point(metrics, "ml.model.actual.squared", RESULT_V1).value

    errors = actual - predicted
    assert n == 7
    assert sum_abs / n == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
    assert math.sqrt(sum_sq / n) == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    r2 = 1 - sum_sq / (sum_y2 - sum_y**2 / n)
    numpy_r2 = 1 - np.sum(errors**2) / np.sum((actual - actual.mean()) ** 2)
    assert r2 == pytest.approx(numpy_r2, rel=1e-9)


def test_negative_actuals_sum_through_the_up_down_counter(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    telemetry.models.record_feedback("result", "v1", predicted=1.0, actual=-4.0)
    telemetry.models.record_feedback("result", "v1", predicted=1.0, actual=1.5)
    metrics = collect(reader)
    assert point(metrics, "ml.model.actual", RESULT_V1).value == -2.5
    assert point(metrics, "ml.model.error.absolute", RESULT_V1).value == 5.5


def test_predictions_are_counted_by_cache_hit_and_misses_time_inference(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    models = telemetry.models
    for duration in (0.001, 0.002, 0.004):
        models.record_prediction(
            "result", "v1", value=10.0, confidence=0.5, duration_s=duration, cache_hit=False
        )
    for _ in range(2):
        models.record_prediction(
            "result", "v1", value=10.0, confidence=0.5, duration_s=0.0, cache_hit=True
        )

    metrics = collect(reader)
    hits = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": True})
    misses = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": False})
    assert (hits.value, misses.value) == (2, 3)
    inference = point(metrics, "ml.model.inference.duration", RESULT_V1)
    assert inference.count == 3
    assert inference.sum == pytest.approx(0.007)
    assert point(metrics, "ml.model.prediction.value", RESULT_V1).count == 5


def test_confidence_histogram_has_buckets_of_005_on_0_to_1(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    for confidence in (0.01, 0.12, 0.5, 0.97, 1.0):
        telemetry.models.record_prediction(
            "duration", "v1", value=1.0, confidence=confidence, duration_s=0.001, cache_hit=False
        )
    metrics = collect(reader)
    hist = point(
        metrics,
        "ml.model.prediction.confidence",
        {"ml.model.name": "duration", "ml.model.version": "v1"},
    )
    assert isinstance(hist, HistogramDataPoint)
    assert list(hist.explicit_bounds) == [round(0.05 * i, 2) for i in range(1, 20)]
    counts = list(hist.bucket_counts)
    assert len(counts) == 20
    assert counts[0] == 1  # 0.01
    assert counts[2] == 1  # 0.12 in (0.10, 0.15]
    assert counts[9] == 1  # 0.5 in (0.45, 0.50]
    assert counts[19] == 2  # 0.97 and 1.0 above 0.95
    assert (hist.min, hist.max, hist.count) == (0.01, 1.0, 5)


def test_value_and_inference_histograms_are_base2_exponential(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    for value in (1.0, 2.0, 4.0, 1000.0):
        telemetry.models.record_prediction(
            "result", "v1", value=value, confidence=0.5, duration_s=value / 1000, cache_hit=False
        )
    metrics = collect(reader)
    # Buckets are upper-inclusive: at scale 4, values 1..1000 need buckets -1..159 (161 >
    # max_size 160, so scale 3), while 0.001..1 need -160..-1 (exactly 160, scale 4).
    for name, scale in (("ml.model.prediction.value", 3), ("ml.model.inference.duration", 4)):
        hist = point(metrics, name, RESULT_V1)
        assert isinstance(hist, ExponentialHistogramDataPoint)
        assert hist.count == 4
        assert hist.scale == scale
    assert point(metrics, "ml.model.prediction.value", RESULT_V1).sum == 1007.0


def test_exponential_histograms_start_at_max_scale_20(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    telemetry.models.record_prediction(
        "result", "v1", value=3.0, confidence=0.5, duration_s=0.003, cache_hit=False
    )
    hist = point(collect(reader), "ml.model.prediction.value", RESULT_V1)
    assert hist.scale == 20


def test_baselines_are_gauges_per_model_version(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    telemetry.models.set_baseline("result", "v1", mae=12.5, r2=0.91)
    telemetry.models.set_baseline("result", "v2", mae=10.25, r2=0.93)
    metrics = collect(reader)
    v2 = {"ml.model.name": "result", "ml.model.version": "v2"}
    assert point(metrics, "ml.model.baseline.mae", RESULT_V1).value == 12.5
    assert point(metrics, "ml.model.baseline.mae", v2).value == 10.25
    assert point(metrics, "ml.model.baseline.r2", v2).value == 0.93


def test_cache_lookups_by_result_and_size_gauges(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    size = [3, 1200]
    telemetry.cache.track(lambda: (size[0], size[1]))
    telemetry.cache.record_lookup("result", hit=True)
    telemetry.cache.record_lookup("result", hit=True)
    telemetry.cache.record_lookup("result", hit=False)
    telemetry.cache.record_lookup("duration", hit=False)

    metrics = collect(reader)
    hit = {"ml.cache.result": "hit", "ml.model.name": "result"}
    miss = {"ml.cache.result": "miss", "ml.model.name": "result"}
    assert point(metrics, "ml.cache.lookups", hit).value == 2
    assert point(metrics, "ml.cache.lookups", miss).value == 1
    assert point(metrics, "ml.cache.entries", {}).value == 3
    assert point(metrics, "ml.cache.size", {}).value == 1200

    size[:] = [0, 0]
    metrics = collect(reader)
    assert point(metrics, "ml.cache.entries", {}).value == 0


def test_cache_gauges_are_absent_until_a_cache_is_tracked(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    metrics = collect(reader)
    assert points(metrics, "ml.cache.entries") == []
    assert points(metrics, "ml.cache.size") == []


def test_instruments_carry_the_contract_units(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    telemetry.models.record_prediction(
        "result", "v1", value=1.0, confidence=0.5, duration_s=0.001, cache_hit=False
    )
    telemetry.models.record_feedback("result", "v1", predicted=1.0, actual=2.0)
    telemetry.cache.record_lookup("result", hit=True)
    telemetry.cache.track(lambda: (1, 10))
    metrics = collect(reader)
    units = {name: metric.unit for name, metric in metrics.items()}
    assert units["ml.model.predictions"] == "{prediction}"
    assert units["ml.model.inference.duration"] == "s"
    assert units["ml.model.prediction.confidence"] == "1"
    assert units["ml.model.feedback"] == "{feedback}"
    assert units["ml.cache.lookups"] == "{lookup}"
    assert units["ml.cache.entries"] == "{entry}"
    assert units["ml.cache.size"] == "By"
    assert all(metric.description for metric in metrics.values())


def test_features_go_to_one_histogram_per_name_with_exact_sums(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    rows = [(3.0, 0.5), (5.0, 1.5), (7.0, 2.5)]
    recorder = telemetry.models.bind("result", "v1")
    for i, (a, b) in enumerate(rows):
        recorder.record_prediction(
            value=1.0, confidence=0.5, duration_s=0.001, cache_hit=i == 0, features={"a": a, "b": b}
        )
    # A different set of names is its own row layout; "a" still lands in the same series.
    recorder.record_prediction(
        value=1.0, confidence=0.5, duration_s=0.001, cache_hit=False, features={"a": 11.0}
    )
    metrics = collect(reader)
    a = point(metrics, "ml.model.feature.value", {**RESULT_V1, "ml.feature.name": "a"})
    b = point(metrics, "ml.model.feature.value", {**RESULT_V1, "ml.feature.name": "b"})
    assert (a.count, a.sum, a.min, a.max) == (4, 26.0, 3.0, 11.0)
    assert (b.count, b.sum) == (3, 4.5)
    hits = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": True})
    misses = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": False})
    assert (hits.value, misses.value) == (1, 3)
    assert point(metrics, "ml.model.inference.duration", RESULT_V1).count == 3


def test_a_feature_vector_records_as_its_mapping_would(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    vectors = [(3.0, 0.5), (5.0, 1.5), (7.0, 2.5)]
    recorder = telemetry.models.bind("result", "v1").with_features(("a", "b"))
    assert telemetry.models.bind("result", "v1").with_features(["a", "b"]) is recorder
    for i, vector in enumerate(vectors):
        recorder.record_prediction(
            value=float(i), confidence=0.5, duration_s=0.001, cache_hit=i == 0, features=vector
        )
    # The mapping path of the same names lands in the same series.
    telemetry.models.bind("result", "v1").record_prediction(
        value=9.0, confidence=0.5, duration_s=0.001, cache_hit=False, features={"b": 4.0, "a": 1.0}
    )
    with pytest.raises(ValueError, match="1 feature values for 2 names"):
        recorder.record_prediction(
            value=1.0, confidence=0.5, duration_s=0.001, cache_hit=False, features=(1.0,)
        )
    with pytest.raises(ValueError, match="repeat"):
        telemetry.models.bind("result", "v1").with_features(("a", "a"))

    metrics = collect(reader)
    a = point(metrics, "ml.model.feature.value", {**RESULT_V1, "ml.feature.name": "a"})
    b = point(metrics, "ml.model.feature.value", {**RESULT_V1, "ml.feature.name": "b"})
    assert (a.count, a.sum, a.min, a.max) == (4, 16.0, 1.0, 7.0)
    assert (b.count, b.sum, b.min, b.max) == (4, 8.5, 0.5, 4.0)
    value = point(metrics, "ml.model.prediction.value", RESULT_V1)
    assert (value.count, value.sum) == (4, 12.0)  # the refused call recorded nothing
    hits = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": True})
    misses = point(metrics, "ml.model.predictions", {**RESULT_V1, "ml.prediction.cache_hit": False})
    assert (hits.value, misses.value) == (1, 3)
    assert point(metrics, "ml.model.inference.duration", RESULT_V1).count == 3
