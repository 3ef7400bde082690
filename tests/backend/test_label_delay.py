"""Label delay and honest MAE alerts through the real SDK and `/v1/metrics`: coverage and
lag percentiles exact, the MAE interval equal to Student's t formula on the raw errors,
and the MAE rule waiting for readiness."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_testing import Backend, meter_provider
from opentelemetry.sdk.metrics import MeterProvider
from scipy import stats

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import load_yaml
from mlpulse.backend.alerts.service import signal_source
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.query.signals import evaluate

V1 = {"ml.model.name": "result", "ml.model.version": "v1"}


def _send(
    provider: MeterProvider,
    *,
    predictions: int,
    errors: np.ndarray,
    actuals: np.ndarray,
    lags: np.ndarray,
    baseline: float,
) -> None:
    meter = provider.get_meter("mlapi")
    meter.create_counter("ml.model.predictions").add(
        predictions, {**V1, "ml.prediction.cache_hit": False}
    )
    fb = meter.create_counter("ml.model.feedback")
    ea = meter.create_counter("ml.model.error.absolute")
    es = meter.create_counter("ml.model.error.squared")
    ya = meter.create_up_down_counter("ml.model.actual")
    ys = meter.create_counter("ml.model.actual.squared")
    lag = meter.create_histogram("ml.model.feedback.lag", unit="s")
    for e, y, dt in zip(errors.tolist(), actuals.tolist(), lags.tolist(), strict=True):
        fb.add(1, V1)
        ea.add(abs(e), V1)
        es.add(e * e, V1)
        ya.add(y, V1)
        ys.add(y * y, V1)
        lag.record(dt, V1)
    meter.create_gauge("ml.model.baseline.mae").set(baseline, V1)
    assert provider.force_flush()


def test_coverage_lag_and_mae_interval_are_exact(backend: Backend) -> None:
    rng = np.random.default_rng(21)
    n = 180
    errors = rng.normal(0.0, 12.0, n) * rng.lognormal(0, 0.6, n)
    actuals = rng.uniform(50, 150, n)
    lags = rng.uniform(2.0, 600.0, n)
    provider = meter_provider(backend.url)
    _send(provider, predictions=750, errors=errors, actuals=actuals, lags=lags, baseline=8.0)
    provider.shutdown()

    store = backend.app.state.store
    now = time.time()
    (coverage,) = evaluate(store, "label_coverage_percent", now - 60, now + 1)
    assert coverage.value == pytest.approx(n / 750 * 100, rel=1e-12)
    assert coverage.samples == 750

    (lag95,) = evaluate(store, "label_lag_p95_s", now - 60, now + 1)
    exact = float(np.percentile(lags, 95, method="inverted_cdf"))
    assert lag95.lower is not None and lag95.upper is not None
    assert lag95.lower * (1 - 1e-9) <= exact <= lag95.upper * (1 + 1e-9)
    assert lag95.samples == n

    # The 95 % interval of the MAE: mean |e| ± t(0.975, n-1) · sd(|e|) / sqrt(n).
    abs_e = np.abs(errors)
    half = stats.t.ppf(0.975, n - 1) * abs_e.std(ddof=1) / np.sqrt(n)
    (mae,) = evaluate(store, "model_mae", now - 60, now + 1)
    assert mae.value == pytest.approx(abs_e.mean(), rel=1e-9)
    assert mae.lower == pytest.approx(abs_e.mean() - half, rel=1e-9)
    assert mae.upper == pytest.approx(abs_e.mean() + half, rel=1e-9)
    (lower,) = evaluate(store, "mae_degradation_lower_percent", now - 60, now + 1)
    assert lower.value == pytest.approx((abs_e.mean() - half - 8.0) / 8.0 * 100, rel=1e-9)

    # The page gets the interval with the snapshot and with the history.
    snap = backend.get("/metrics/current", window="1m")["model_metrics"]["result"]
    assert snap["mae_interval"]["lower"] == pytest.approx(abs_e.mean() - half, rel=1e-9)
    assert snap["label_coverage_percent"] == pytest.approx(n / 750 * 100, rel=1e-12)
    assert snap["label_lag_p95_s"] == pytest.approx(lag95.value, rel=1e-12)
    doc = backend.get("/metrics/history", metric="model_mae", **{"from": "now-2m"}, step="2m")
    bounds = [b for b in doc["series"][0]["bounds"] if b[1] is not None]
    assert bounds[0][1:] == [
        pytest.approx(abs_e.mean() - half, rel=1e-9),
        pytest.approx(abs_e.mean() + half, rel=1e-9),
    ]


RULES = """
channels: [{name: console, type: console}]
rules:
  - name: model_mae_degradation
    signal: mae_degradation_lower_percent
    comparison: ">"
    threshold: 20
    clear_threshold: 10
    window: 5m
    for: 0s
    min_samples: %(min_samples)s
    min_coverage_percent: %(coverage)s
    group_by: model
    channels: [console]
"""


def _engine(backend: Backend, tmp_path: Path, **params: Any) -> AlertEngine:
    engine = AlertEngine(AlertStore(tmp_path / "alerts.db"), signal_source(backend.app.state.store))
    engine.set_config(load_yaml(RULES % params))
    return engine


def _state(engine: AlertEngine) -> str | None:
    engine.evaluate_once()
    states = [i.state.value for i in engine.instances() if i.rule == "model_mae_degradation"]
    return states[0] if states else None


def test_mae_alert_waits_for_coverage_and_fires_only_beyond_noise(
    backend: Backend, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    provider = meter_provider(backend.url)
    # Three labels with a huge error: +400 % at face value, but not ready (3 < 30).
    few = np.array([40.0, -35.0, 45.0])
    _send(
        provider, predictions=20, errors=few, actuals=np.full(3, 100.0), lags=np.ones(3),
        baseline=8.0,
    )  # fmt: skip
    store = backend.app.state.store
    now = time.time()
    (deg,) = evaluate(store, "mae_degradation_percent", now - 60, now + 1)
    assert deg.value is not None and deg.value > 300
    engine = _engine(backend, tmp_path, min_samples=30, coverage=10)
    assert _state(engine) in (None, "inactive")

    # 200 noisy labels whose MAE is 30 % above baseline but whose interval still reaches
    # below baseline x 1.2: the point value breaches 20 %, the lower bound does not.
    noisy = rng.choice([-1.0, 1.0], 200) * rng.exponential(10.4, 200) * rng.lognormal(0, 1, 200)
    noisy *= 10.4 / np.abs(noisy).mean()
    _send(
        provider, predictions=400, errors=noisy, actuals=np.full(200, 100.0),
        lags=np.ones(200), baseline=8.0,
    )  # fmt: skip
    now = time.time()
    (deg,) = evaluate(store, "mae_degradation_percent", now - 60, now + 1)
    (low,) = evaluate(store, "mae_degradation_lower_percent", now - 60, now + 1)
    assert deg.value is not None and deg.value > 20
    assert low.value is not None and low.value < 20
    assert _state(engine) in (None, "inactive")

    # A real degradation (MAE x 2, tight errors): the lower bound clears baseline x 1.2.
    tight = rng.choice([-1.0, 1.0], 400) * rng.uniform(14.0, 18.0, 400)
    _send(
        provider, predictions=600, errors=tight, actuals=np.full(400, 100.0),
        lags=np.ones(400), baseline=8.0,
    )  # fmt: skip
    now = time.time()
    (low,) = evaluate(store, "mae_degradation_lower_percent", now - 60, now + 1)
    assert low.value is not None and low.value > 20
    assert _state(engine) == "firing"

    # The same data with a coverage requirement it does not meet (603/1020 = 59 %).
    strict = _engine(backend, tmp_path / "strict", min_samples=30, coverage=80)
    assert _state(strict) in (None, "inactive")
    provider.shutdown()
