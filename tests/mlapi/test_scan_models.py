"""Scan models: deterministic training, holdout baselines, a confidence that varies."""

from __future__ import annotations

import numpy as np
import pytest

from mlpulse.mlapi.models import (
    MODEL_NAMES,
    ModelRegistry,
    ScanFeatures,
    TrainingSettings,
    make_dataset,
    random_features,
    simulate_actual,
    train_version,
)

SMALL = TrainingSettings(n_samples=480, n_estimators=12, holdout_samples=120, seed=7)


def _sample_scans(n: int, seed: int = 3) -> list[ScanFeatures]:
    rng = np.random.default_rng(seed)
    return [random_features(rng) for _ in range(n)]


def test_the_dataset_is_deterministic_for_a_seed() -> None:
    x1, y1 = make_dataset("duration", 200, seed=11)
    x2, y2 = make_dataset("duration", 200, seed=11)
    x3, _ = make_dataset("duration", 200, seed=12)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (200, 6)
    assert (y1 > 0).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_is_deterministic(name: str) -> None:
    a = train_version(name, 1, SMALL)  # type: ignore[arg-type]
    b = train_version(name, 1, SMALL)  # type: ignore[arg-type]
    assert (a.baseline_mae, a.baseline_r2) == (b.baseline_mae, b.baseline_r2)
    for scan in _sample_scans(20):
        assert a.predict(scan) == b.predict(scan)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_baseline_is_the_holdout_mae_and_r2(name: str) -> None:
    version = train_version(name, 1, SMALL)  # type: ignore[arg-type]
    x, y = make_dataset(name, SMALL.n_samples + SMALL.holdout_samples, version.seed)  # type: ignore[arg-type]
    x_test, y_test = x[-version.n_holdout :], y[-version.n_holdout :]
    predicted = np.maximum(np.expm1(version.estimator.predict(x_test)), 0.0)
    assert version.n_holdout == 120
    assert version.baseline_mae == pytest.approx(np.mean(np.abs(y_test - predicted)), rel=1e-12)
    ss_res = np.sum((y_test - predicted) ** 2)
    ss_tot = np.sum((y_test - y_test.mean()) ** 2)
    assert version.baseline_r2 == pytest.approx(1 - ss_res / ss_tot, rel=1e-12)
    assert version.baseline_mae > 0.0
    assert 0.0 < version.baseline_r2 < 1.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_prediction_matches_the_ensemble_and_confidence_varies_in_0_1(name: str) -> None:
    version = train_version(name, 1, SMALL)  # type: ignore[arg-type]
    scans = _sample_scans(200)
    predictions = [version.predict(scan) for scan in scans]
    expected = np.expm1(version.estimator.predict(np.asarray([s.vector() for s in scans])))
    values = np.asarray([p.value for p in predictions])
    assert values == pytest.approx(np.maximum(expected, 0.0), rel=1e-5)
    confidences = np.asarray([p.confidence for p in predictions])
    assert ((confidences >= 0.0) & (confidences <= 1.0)).all()
    assert confidences.std() > 0.05
    assert len(set(confidences.round(6))) > 100


def test_registry_versions_grow_on_retrain_and_keep_history() -> None:
    registry = ModelRegistry(SMALL)
    assert not registry.ready
    registry.train()
    assert registry.ready
    first = registry.current("result")
    (retrained,) = registry.train(["result"])
    assert (first.version, retrained.version) == ("v1", "v2")
    assert registry.current("result") is retrained
    assert registry.current("duration").version == "v1"
    assert [v.version for v in registry.history("result")] == ["v1", "v2"]
    assert retrained.seed != first.seed


def test_simulated_actuals_follow_the_seeded_rng() -> None:
    scan = ScanFeatures(1000, 365, 2, 5, "1d", False)
    draws = [simulate_actual("result", scan, np.random.default_rng(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert draws[0] == float(round(draws[0]))  # a count
    assert simulate_actual("duration", scan, np.random.default_rng(5)) > 0.05
