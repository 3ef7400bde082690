"""MAE by *prediction* window (cohorts) through the real instrumentation, the real SDK
and `/v1/metrics`: labels that arrive now for predictions made 5, 10 and 15 minutes ago
land in the window their prediction was made in, exactly as numpy computes it on the raw
errors, over two instances; the label coverage of a prediction window counts only its
own predictions' labels."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from backend_testing import Backend
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from scipy import stats

from mlpulse.backend.query.signals import (
    PREDICTION_WINDOW_CYCLE,
    PREDICTION_WINDOW_S,
    evaluate,
    evaluate_range,
    prediction_window_start,
)
from mlpulse_instrumentation import Telemetry, instrument_app
from mlpulse_instrumentation import _meters as sent
from mlpulse_instrumentation._meters import MAX_WINDOWED_LAG_S, prediction_window

W = PREDICTION_WINDOW_S


def _telemetry(backend: Backend, instance: str) -> Telemetry:
    exporter = OTLPMetricExporter(endpoint=f"{backend.url}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return instrument_app(
        FastAPI(),
        service_name="mlapi",
        service_instance_id=instance,
        metric_readers=[reader],
        system_metrics=False,
    )


@pytest.fixture
def instances(backend: Backend) -> Iterator[list[Telemetry]]:
    made = [_telemetry(backend, "i-1"), _telemetry(backend, "i-2")]
    yield made
    for t in made:
        t.meter_provider.shutdown()


def _interval(abs_e: np.ndarray) -> tuple[float, float, float]:
    n = len(abs_e)
    half = stats.t.ppf(0.975, n - 1) * abs_e.std(ddof=1) / math.sqrt(n)
    return float(abs_e.mean()), float(abs_e.mean() - half), float(abs_e.mean() + half)


def test_the_contract_constants_agree() -> None:
    assert sent.PREDICTION_WINDOW_S == PREDICTION_WINDOW_S
    assert sent.PREDICTION_WINDOW_CYCLE == PREDICTION_WINDOW_CYCLE
    # Every lag the instrumentation tags decodes to the prediction's own window.
    for predicted in np.linspace(1.7e9, 1.7e9 + 3 * W, 37):
        start = int(predicted // W) * W
        for lag in (0.0, 1.0, W - 0.5, W, 2 * W + 7, MAX_WINDOWED_LAG_S - 1):
            arrived = int((predicted + lag + 5.0) // W) * W  # +5 s: the export's delay
            assert prediction_window_start(prediction_window(predicted), arrived) == start


def test_mae_by_prediction_window_equals_numpy_per_cohort_over_two_instances(
    backend: Backend, instances: list[Telemetry]
) -> None:
    rng = np.random.default_rng(14)
    # This window's predictions are counted when exported: not across a window's end.
    if time.time() % W > W - 30:
        time.sleep(W - time.time() % W + 0.5)
    now = time.time()
    current = int(now // W) * W
    # Predictions made in the three windows before this one and in this one, each cohort
    # with its own error level; every label arrives now, on one of two instances.
    starts = [current - 3 * W, current - 2 * W, current - W]
    cohorts: dict[int, np.ndarray] = {}
    for k, start in enumerate(starts):
        n = 40 + 20 * k
        errors = rng.normal(0, 5.0 * (k + 1), n)
        predicted_at = rng.uniform(start, start + W, n)
        cohorts[start] = np.abs(errors)
        for i, (e, at) in enumerate(zip(errors.tolist(), predicted_at.tolist(), strict=True)):
            instances[i % 2].models.record_feedback(
                "result", "v1", predicted=100.0, actual=100.0 + e, lag_s=now - at,
                cache_hit=bool(i % 3 == 0), predicted_at=at,
            )  # fmt: skip
    # This window: 50 predictions, 20 of them labelled already.
    recent = rng.normal(0, 2.0, 20)
    bound = instances[0].models.bind("result", "v1")
    for _ in range(50):
        bound.record_prediction(value=100.0, confidence=0.9, duration_s=0.001, cache_hit=False)
    for e in recent.tolist():
        bound.record_feedback(predicted=100.0, actual=100.0 + e, predicted_at=time.time())
    cohorts[current] = np.abs(recent)
    # A label too late to carry its window: in the arrival MAE, in no cohort.
    bound.record_feedback(predicted=100.0, actual=180.0, predicted_at=now - MAX_WINDOWED_LAG_S - 60)
    for t in instances:
        assert t.force_flush()

    store = backend.app.state.store
    for start, abs_e in cohorts.items():
        (v,) = evaluate(store, "mae_by_prediction_time", start, start + W)
        mae, lower, upper = _interval(abs_e)
        assert v.samples == len(abs_e)
        assert v.value == pytest.approx(mae, rel=1e-9)
        assert v.lower == pytest.approx(lower, rel=1e-9)
        assert v.upper == pytest.approx(upper, rel=1e-9)

    # The arrival view puts every label (the late one too) in the window they arrived in.
    everything = np.concatenate([*cohorts.values(), [80.0]])
    (arrival,) = evaluate(store, "model_mae", now - 60, time.time() + 1)
    assert arrival.samples == len(everything)
    assert arrival.value == pytest.approx(everything.mean(), rel=1e-9)

    # A range: one point per prediction window, each the cohort's exact MAE.
    (series,) = evaluate_range(store, "mae_by_prediction_time", starts[0], current + W, W)
    got = {p.time: (p.value, p.samples) for p in series.points}
    assert got == {
        s: (pytest.approx(float(a.mean()), rel=1e-9), len(a)) for s, a in cohorts.items()
    }
    # Two windows per step add up exactly (n, sums). Steps sit on the 10-minute grid, so a
    # step holds the cohorts that start in it: two, or one at the range's edges.
    (wide,) = evaluate_range(store, "mae_by_prediction_time", starts[0], current + W, 2 * W)
    assert sum(p.samples for p in wide.points) == sum(len(a) for a in cohorts.values())
    for p in wide.points:
        inside = [a for s, a in cohorts.items() if p.time <= s < p.time + 2 * W]
        merged = np.concatenate(inside)
        assert p.value == pytest.approx(float(merged.mean()), rel=1e-9)
        assert p.samples == len(merged)
    assert max(p.samples for p in wide.points) > max(len(a) for a in cohorts.values())

    # The history route: a step below 5 minutes becomes one window.
    doc = backend.get(
        "/metrics/history", metric="mae_by_prediction_time",
        **{"from": str(starts[0]), "to": str(current + W)}, step="60",
    )  # fmt: skip
    assert doc["step"] == W
    points = dict((t, v) for t, v in doc["series"][0]["points"])
    assert points[starts[1]] == pytest.approx(float(cohorts[starts[1]].mean()), rel=1e-9)
    bounds = {b[0]: b[1:] for b in doc["series"][0]["bounds"]}
    assert bounds[starts[2]][0] == pytest.approx(_interval(cohorts[starts[2]])[1], rel=1e-9)

    # Coverage of this window: its own 20 labels over its 50 predictions; the labels of
    # older predictions that arrived meanwhile do not count here.
    (cov,) = evaluate(store, "label_coverage_by_prediction_time", current, current + W)
    assert cov.value == pytest.approx(20 / 50 * 100, rel=1e-12)
    (arrival_cov,) = evaluate(store, "label_coverage_percent", now - 60, time.time() + 1)
    assert arrival_cov.value == pytest.approx(len(everything) / 50 * 100, rel=1e-12)

    # Split by cache hit as well: the cohorts' hits and misses add up to the cohort.
    split = evaluate(
        store, "mae_by_prediction_time", starts[0], starts[0] + W, ["model", "cache_hit"]
    )
    assert sum(v.samples for v in split) == len(cohorts[starts[0]])
    assert {v.labels["cache_hit"] for v in split} == {"true", "false"}
