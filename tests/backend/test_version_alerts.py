"""Alerts per model version, through the real SDK and `/v1/metrics`: v1 degrades and
drifts, its MAE and drift alerts fire; a retrain switches to v2, which is judged against
its own baseline and reference (healthy), and v1's alerts resolve once v1 stops serving,
instead of lingering on the labels that still arrive for it (as a per-model alert does)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from backend_testing import Backend, meter_provider
from opentelemetry.sdk.metrics import MeterProvider
from scipy import stats

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import load_yaml
from mlpulse.backend.alerts.service import signal_source
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.query import versions
from mlpulse.backend.query.signals import evaluate

RULES = """
channels: [{name: console, type: console}]
rules:
  - {name: mae_by_version, signal: mae_degradation_lower_percent, comparison: ">",
     threshold: 20, clear_threshold: 10, window: 5m, for: 0s, min_samples: 30,
     group_by: version, channels: [console]}
  - {name: drift_by_version, signal: prediction_psi, comparison: ">", threshold: 0.25,
     clear_threshold: 0.1, window: 5m, for: 0s, min_samples: 100, group_by: version,
     channels: [console]}
  - {name: mae_by_model, signal: mae_degradation_lower_percent, comparison: ">",
     threshold: 20, clear_threshold: 10, window: 5m, for: 0s, min_samples: 30,
     group_by: model, channels: [console]}
"""


def _version(
    provider: MeterProvider,
    version: str,
    *,
    baseline: float,
    reference: np.ndarray,
    live: np.ndarray,
    errors: np.ndarray,
) -> None:
    attrs = {"ml.model.name": "result", "ml.model.version": version}
    meter = provider.get_meter("mlapi")
    meter.create_gauge("ml.model.baseline.mae").set(baseline, attrs)
    ref = meter.create_histogram("ml.model.reference.prediction.value", unit="1")
    value = meter.create_histogram("ml.model.prediction.value", unit="1")
    for x in reference.tolist():
        ref.record(x, attrs)
    for x in live.tolist():
        value.record(x, attrs)
    meter.create_counter("ml.model.predictions").add(
        len(live), {**attrs, "ml.prediction.cache_hit": False}
    )
    fb = meter.create_counter("ml.model.feedback")
    ea = meter.create_counter("ml.model.error.absolute")
    es = meter.create_counter("ml.model.error.squared")
    for e in errors.tolist():
        fb.add(1, attrs)
        ea.add(abs(e), attrs)
        es.add(e * e, attrs)
    assert provider.force_flush()


def _lower_percent(abs_e: np.ndarray, baseline: float) -> float:
    n = len(abs_e)
    half = stats.t.ppf(0.975, n - 1) * abs_e.std(ddof=1) / math.sqrt(n)
    return float((abs_e.mean() - half - baseline) / baseline * 100)


def _states(engine: AlertEngine) -> dict[tuple[str, str], str]:
    return {
        (i.rule, i.labels.get("version", "*")): i.state.value
        for i in engine.instances()
        if i.state.value != "inactive"
    }


def test_a_retrain_resolves_the_old_versions_alerts_and_judges_the_new_one_by_its_own(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    sign = rng.choice([-1.0, 1.0], 200)
    v1_errors = sign * rng.uniform(15.0, 19.0, 200)  # MAE ~17 against a baseline of 8
    v2_errors = sign * rng.uniform(10.0, 14.0, 200)  # MAE ~12: v2's own baseline is 12
    store = backend.app.state.store
    engine = AlertEngine(AlertStore(tmp_path / "alerts.db"), signal_source(store))
    engine.set_config(load_yaml(RULES))

    old = meter_provider(backend.url, instance="v1-pod")
    _version(
        old, "v1", baseline=8.0,
        reference=rng.lognormal(4.0, 0.5, 2000), live=rng.lognormal(4.8, 0.5, 400),
        errors=v1_errors,
    )  # fmt: skip
    old.shutdown()  # the v1 deployment goes away with the retrain
    v1_at = time.time()
    engine.evaluate_once()
    assert _states(engine) == {
        ("mae_by_version", "v1"): "firing",
        ("drift_by_version", "v1"): "firing",
        ("mae_by_model", "*"): "firing",
    }

    # v2 serves from a later 10 s bucket on (so "v1 served nothing since" is decidable).
    time.sleep(max(0.0, (math.floor(v1_at / 10) + 2) * 10 + 0.5 - time.time()))
    new = meter_provider(backend.url, instance="v2-pod")
    _version(
        new, "v2", baseline=12.0,
        reference=rng.lognormal(4.2, 0.5, 2000), live=rng.lognormal(4.2, 0.5, 400),
        errors=v2_errors,
    )  # fmt: skip
    new.shutdown()
    monkeypatch.setattr(versions, "RETIRED_AFTER_S", 5.0)
    now = time.time()
    assert versions.retired_versions(store, now) == {("result", "v1"): "v2"}

    # v2 against its own baseline: healthy; against v1's it would breach.
    by_version = {
        v.labels["version"]: v.value
        for v in evaluate(
            store, "mae_degradation_lower_percent", now - 300, now, ["model", "version"]
        )
    }
    abs2 = np.abs(v2_errors)
    assert by_version["v2"] == pytest.approx(_lower_percent(abs2, 12.0), rel=1e-9)
    assert by_version["v2"] < 10 < 20 < _lower_percent(abs2, 8.0)
    assert by_version["v1"] == pytest.approx(_lower_percent(np.abs(v1_errors), 8.0), rel=1e-9)
    assert by_version["v1"] > 20  # v1's labels are still in the window

    transitions = engine.evaluate_once()
    reasons = {(t.rule, t.labels.get("version")): (t.to_state.value, t.reason) for t in transitions}
    assert reasons[("mae_by_version", "v1")] == ("resolved", "replaced by version v2")
    assert reasons[("drift_by_version", "v1")] == ("resolved", "replaced by version v2")
    # The per-version alerts: v1 resolved, v2 never started; the per-model one lingers
    # on the mixture of the two versions' labels.
    assert _states(engine) == {
        ("mae_by_version", "v1"): "resolved",
        ("drift_by_version", "v1"): "resolved",
        ("mae_by_model", "*"): "firing",
    }
    engine.evaluate_once()  # and a retired version does not start again
    assert _states(engine)[("mae_by_version", "v1")] == "resolved"
    assert [a["labels"] for a in engine.active()] == [{"model": "result"}]
