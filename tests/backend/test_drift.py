"""Prediction and input drift through the real SDK and `/v1/metrics`: PSI and
Jensen-Shannon against a numpy/scipy computation on the same bins."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from backend_testing import Backend, meter_provider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from scipy.spatial.distance import jensenshannon

from mlpulse.backend.query import drift
from mlpulse.backend.query.signals import evaluate

EPS = 1e-4
CONFIDENCE_BOUNDS = [round(0.05 * i, 2) for i in range(1, 20)]


def _exp_bins(values: np.ndarray, scale: int = 0) -> dict[tuple[str, float], float]:
    """Raw samples into base-2 exponential bins (i covers (2^(i/2^s), 2^((i+1)/2^s)])."""
    out: dict[tuple[str, float], float] = {}
    for v in values.tolist():
        if v == 0:
            key = ("zero", 0.0)
        else:
            key = ("pos" if v > 0 else "neg", float(math.ceil(math.log2(abs(v)) * 2**scale) - 1))
        out[key] = out.get(key, 0.0) + 1
    return out


def _reference_psi_js(live: dict[Any, float], expected: dict[Any, float]) -> tuple[float, float]:
    keys = sorted(set(live) | set(expected))
    p = np.array([live.get(k, 0.0) for k in keys])
    q = np.array([expected.get(k, 0.0) for k in keys])
    p, q = p / p.sum(), q / q.sum()
    psi = float(np.sum((p - q) * np.log(np.maximum(p, EPS) / np.maximum(q, EPS))))
    return psi, float(jensenshannon(p, q, base=2))


def _provider(backend: Backend, instance: str) -> MeterProvider:
    return meter_provider(backend.url, instance=instance)


def _record(provider: MeterProvider, name: str, values: np.ndarray, attrs: dict[str, Any]) -> None:
    h = provider.get_meter("mlapi").create_histogram(name, unit="1")
    for v in values.tolist():
        h.record(v, attrs)


V1 = {"ml.model.name": "result", "ml.model.version": "v1"}


def test_prediction_psi_and_js_equal_numpy_scipy_over_two_instances_and_windows(
    backend: Backend,
) -> None:
    rng = np.random.default_rng(11)
    reference = rng.lognormal(4.0, 0.8, 10_000)
    live_a1 = rng.lognormal(4.2, 0.8, 700)  # instance a, first export
    live_a2 = rng.lognormal(4.2, 0.8, 500)  # instance a, second export (a later window)
    live_b = rng.lognormal(4.4, 0.9, 900)  # instance b
    a, b = _provider(backend, "a"), _provider(backend, "b")
    _record(a, "ml.model.reference.prediction.value", reference, V1)
    _record(a, "ml.model.prediction.value", live_a1, V1)
    assert a.force_flush()
    _record(b, "ml.model.prediction.value", live_b, V1)
    assert b.force_flush()
    time.sleep(1.1)  # the second export lands in a later bucket
    _record(a, "ml.model.prediction.value", live_a2, V1)
    assert a.force_flush()
    a.shutdown()
    b.shutdown()

    live = np.concatenate([live_a1, live_a2, live_b])
    want_psi, want_js = _reference_psi_js(_exp_bins(live), _exp_bins(reference))
    assert want_psi > 0.05  # a real shift, not a trivial zero

    store = backend.app.state.store
    now = time.time()
    (psi,) = evaluate(store, "prediction_psi", now - 120, now + 1)
    (js,) = evaluate(store, "prediction_js", now - 120, now + 1)
    assert psi.labels == {"model": "result"}
    assert psi.samples == len(live)
    assert psi.value == pytest.approx(want_psi, rel=1e-9)
    assert js.value == pytest.approx(want_js, rel=1e-9)

    # The same number over HTTP, where steps of a range merge 10 s buckets.
    doc = backend.get("/metrics/history", metric="prediction_psi", **{"from": "now-2m"}, step="2m")
    values = [v for _, v in doc["series"][0]["points"] if v is not None]
    assert values == [pytest.approx(want_psi, rel=1e-9)]


def test_a_window_with_two_versions_compares_with_the_mixture_of_their_references(
    backend: Backend,
) -> None:
    rng = np.random.default_rng(5)
    ref1, ref2 = rng.lognormal(3.0, 0.5, 5000), rng.lognormal(5.0, 0.5, 8000)
    live1, live2 = rng.lognormal(3.0, 0.5, 300), rng.lognormal(5.0, 0.5, 900)
    v2 = {**V1, "ml.model.version": "v2"}
    p = _provider(backend, "a")
    _record(p, "ml.model.reference.prediction.value", ref1, V1)
    _record(p, "ml.model.reference.prediction.value", ref2, v2)
    _record(p, "ml.model.prediction.value", live1, V1)
    _record(p, "ml.model.prediction.value", live2, v2)
    assert p.force_flush()
    p.shutdown()

    expected: dict[Any, float] = {}
    for ref, n in ((ref1, len(live1)), (ref2, len(live2))):
        for k, c in _exp_bins(ref).items():
            expected[k] = expected.get(k, 0.0) + c / len(ref) * n
    want_psi, want_js = _reference_psi_js(_exp_bins(np.concatenate([live1, live2])), expected)
    now = time.time()
    store = backend.app.state.store
    (psi,) = evaluate(store, "prediction_psi", now - 60, now + 1)
    assert psi.value == pytest.approx(want_psi, rel=1e-9)
    assert psi.value < 0.05  # each version matches its own reference
    # Per version, each against its own reference.
    by_version = evaluate(store, "prediction_psi", now - 60, now + 1, ["model", "version"])
    assert [v.labels["version"] for v in by_version] == ["v1", "v2"]
    for value, live, ref in zip(by_version, (live1, live2), (ref1, ref2), strict=True):
        assert value.value == pytest.approx(
            _reference_psi_js(_exp_bins(live), _exp_bins(ref))[0], rel=1e-9
        )
    (js,) = evaluate(store, "prediction_js", now - 60, now + 1)
    assert js.value == pytest.approx(want_js, rel=1e-9)


def test_confidence_psi_uses_the_shared_explicit_bounds(backend: Backend) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    views = [
        View(
            instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(CONFIDENCE_BOUNDS)
        )
        for name in ("ml.model.prediction.confidence", "ml.model.reference.prediction.confidence")
    ]
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{backend.url}/v1/metrics"), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "a"}),
        views=views,
    )
    rng = np.random.default_rng(2)
    ref, live = rng.beta(8, 2, 4000), rng.beta(5, 3, 600)
    _record(provider, "ml.model.reference.prediction.confidence", ref, V1)
    _record(provider, "ml.model.prediction.confidence", live, V1)
    assert provider.force_flush()
    provider.shutdown()

    edges = np.array([-np.inf, *CONFIDENCE_BOUNDS, np.inf])

    def counts(x: np.ndarray) -> dict[int, float]:
        idx = np.searchsorted(edges, x, side="left") - 1  # (lo, hi] buckets
        return {int(i): float(c) for i, c in zip(*np.unique(idx, return_counts=True), strict=True)}

    want, _ = _reference_psi_js(counts(live), counts(ref))
    now = time.time()
    (psi,) = evaluate(backend.app.state.store, "confidence_psi", now - 60, now + 1)
    assert psi.value == pytest.approx(want, rel=1e-9)
    assert psi.value > 0.25


def test_features_outside_the_reference_range_count_as_drift_per_feature(
    backend: Backend,
) -> None:
    rng = np.random.default_rng(3)
    p = _provider(backend, "a")
    name = "ml.model.feature.value"
    ref_name = "ml.model.reference.feature.value"
    ref_symbols = rng.uniform(100, 1000, 5000)
    ref_filters = rng.integers(1, 9, 5000).astype(float)
    live_symbols = rng.uniform(100, 1000, 400)
    live_filters = np.concatenate([rng.integers(1, 9, 300), np.full(100, 40.0)])  # 40: unseen
    for feature, ref, live in (
        ("symbol_count", ref_symbols, live_symbols),
        ("filter_count", ref_filters, live_filters),
    ):
        attrs = {**V1, "ml.feature.name": feature}
        _record(p, ref_name, ref, attrs)
        _record(p, name, live, attrs)
    assert p.force_flush()
    p.shutdown()

    now = time.time()
    values = evaluate(backend.app.state.store, "feature_psi", now - 60, now + 1)
    got = {v.labels["feature"]: v.value for v in values}
    assert got["filter_count"] == pytest.approx(
        _reference_psi_js(_exp_bins(live_filters), _exp_bins(ref_filters))[0], rel=1e-9
    )
    assert got["symbol_count"] == pytest.approx(
        _reference_psi_js(_exp_bins(live_symbols), _exp_bins(ref_symbols))[0], rel=1e-9
    )
    assert got["filter_count"] > 0.25 > 0.1 > got["symbol_count"]
    # The ranked list the dashboard shows: which features moved, largest PSI first.
    ranked = backend.get("/metrics/current", window="1m")["model_metrics"]["result"]
    assert [f["feature"] for f in ranked["feature_drift"]] == ["filter_count", "symbol_count"]
    assert ranked["feature_drift"][0]["psi"] == pytest.approx(got["filter_count"], rel=1e-9)
    assert ranked["feature_drift"][0]["samples"] == 400


def test_drift_maths_epsilon_and_identical_distributions() -> None:
    same = np.array([10.0, 20.0, 70.0])
    assert drift.psi(same, same * 3) == 0.0
    assert drift.js_distance(same, same * 3) == pytest.approx(0.0, abs=1e-12)
    # A bin the reference never saw contributes (p - 0) * ln(p / EPSILON).
    got = drift.psi(np.array([50.0, 50.0]), np.array([100.0, 0.0]))
    want = (0.5 - 1.0) * math.log(0.5 / 1.0) + 0.5 * math.log(0.5 / drift.EPSILON)
    assert got == pytest.approx(want, rel=1e-12)
