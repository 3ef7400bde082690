"""The two models under observation and their versions.

Both models are tree ensembles trained on log1p(target) over the synthetic scans of
`mlpulse.mlapi.scans`; the spread of the trees' predictions is the model's own uncertainty,
mapped to a confidence in [0, 1].
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score

# The synthetic world lives in mlpulse.mlapi.scans; these names stay importable from here.
from mlpulse.mlapi.scans import FEATURE_NAMES as FEATURE_NAMES
from mlpulse.mlapi.scans import MODEL_NAMES as MODEL_NAMES
from mlpulse.mlapi.scans import TIMEFRAME_MINUTES as TIMEFRAME_MINUTES
from mlpulse.mlapi.scans import ModelName as ModelName
from mlpulse.mlapi.scans import ScanFeatures as ScanFeatures
from mlpulse.mlapi.scans import expected_duration_s as expected_duration_s
from mlpulse.mlapi.scans import expected_result_count as expected_result_count
from mlpulse.mlapi.scans import make_dataset as make_dataset
from mlpulse.mlapi.scans import random_features as random_features
from mlpulse.mlapi.scans import simulate_actual as simulate_actual

# Tree spread (std of log1p predictions) at which confidence falls to 1/e.
_CONFIDENCE_SCALE = 0.35


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer: the value in the target's unit and its confidence in [0, 1]."""

    value: float
    confidence: float


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    """How much data and how many trees a training run uses."""

    n_samples: int = 3000  # training rows
    n_estimators: int = 40
    holdout_samples: int = 10_000  # rows the baseline MAE and R² are measured on
    seed: int = 42


@dataclass(frozen=True, slots=True)
class ReferenceData:
    """What a version's training holdout looks like: the reference for drift.

    The holdout's predictions and confidences as the version serves them, and each
    numeric input feature (FEATURE_NAMES order), one list per feature.
    """

    predictions: list[float]
    confidences: list[float]
    features: dict[str, list[float]]


class ModelVersion:
    """One trained version of a model, with its holdout baseline and reference data."""

    def __init__(
        self,
        *,
        name: ModelName,
        version: str,
        estimator: RandomForestRegressor | ExtraTreesRegressor,
        baseline_mae: float,
        baseline_r2: float,
        n_train: int,
        n_holdout: int,
        seed: int,
        training_seconds: float,
        trained_at: float,
        reference: ReferenceData | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.estimator = estimator
        self.baseline_mae = baseline_mae
        self.baseline_r2 = baseline_r2
        self.n_train = n_train
        self.n_holdout = n_holdout
        self.seed = seed
        self.training_seconds = training_seconds
        self.trained_at = trained_at
        self.reference = reference
        # The low-level trees predict a single row without sklearn's per-call checks.
        self._trees = [tree.tree_ for tree in estimator.estimators_]

    def predict_many(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predict rows of feature vectors: (values, confidences), as `predict` would."""
        rows = np.asarray(x, dtype=np.float32)
        per_tree = np.stack([tree.predict(rows)[:, 0] for tree in self._trees]).astype(np.float64)
        values = np.maximum(np.expm1(per_tree.mean(axis=0)), 0.0)
        confidences = np.clip(np.exp(-per_tree.std(axis=0) / _CONFIDENCE_SCALE), 0.0, 1.0)
        return values, confidences

    def predict(self, features: ScanFeatures) -> Prediction:
        """Predict one scan; confidence falls as the trees disagree."""
        row = np.asarray([features.vector()], dtype=np.float32)
        per_tree = np.fromiter(
            (tree.predict(row)[0, 0] for tree in self._trees),
            dtype=np.float64,
            count=len(self._trees),
        )
        log_value = float(per_tree.mean())
        spread = float(per_tree.std())
        value = max(math.expm1(log_value), 0.0)
        confidence = math.exp(-spread / _CONFIDENCE_SCALE)
        return Prediction(value=value, confidence=min(max(confidence, 0.0), 1.0))

    def describe(self) -> dict[str, object]:
        """Return the version's facts for diagnostics."""
        return {
            "name": self.name,
            "version": self.version,
            "algorithm": type(self.estimator).__name__,
            "n_estimators": len(self._trees),
            "baseline_mae": self.baseline_mae,
            "baseline_r2": self.baseline_r2,
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "seed": self.seed,
            "training_seconds": round(self.training_seconds, 4),
            "trained_at": self.trained_at,
        }


def train_version(name: ModelName, version_number: int, settings: TrainingSettings) -> ModelVersion:
    """Train version `v<version_number>` of a model; deterministic for given settings."""
    started = time.perf_counter()
    # Each version sees a fresh draw of data, as if retrained on newer traffic.
    seed = settings.seed * 1000 + version_number * 10 + MODEL_NAMES.index(name)
    # The targets are heavy-tailed (a few huge scans dominate |error|), so the baseline
    # is measured on a large holdout: on a few hundred scans it would be off by ±25 % by
    # chance, and the MAE-degradation alert would compare live error against noise.
    x, y = make_dataset(name, settings.n_samples + settings.holdout_samples, seed)
    n_holdout = settings.holdout_samples
    x_train, y_train = x[:-n_holdout], y[:-n_holdout]
    x_test, y_test = x[-n_holdout:], y[-n_holdout:]
    estimator: RandomForestRegressor | ExtraTreesRegressor
    if name == "result":
        estimator = RandomForestRegressor(
            n_estimators=settings.n_estimators, min_samples_leaf=3, random_state=seed, n_jobs=1
        )
    else:
        estimator = ExtraTreesRegressor(
            n_estimators=settings.n_estimators, min_samples_leaf=3, random_state=seed, n_jobs=1
        )
    estimator.fit(x_train, np.log1p(y_train))
    predicted = np.maximum(np.expm1(estimator.predict(x_test)), 0.0)
    version = ModelVersion(
        name=name,
        version=f"v{version_number}",
        estimator=estimator,
        baseline_mae=float(mean_absolute_error(y_test, predicted)),
        baseline_r2=float(r2_score(y_test, predicted)),
        n_train=len(y_train),
        n_holdout=n_holdout,
        seed=seed,
        training_seconds=time.perf_counter() - started,
        trained_at=time.time(),
    )
    # The reference is what the serving path would answer on the holdout (same trees,
    # same float32 rows), so live traffic from the training distribution matches it.
    values, confidences = version.predict_many(x_test)
    version.reference = ReferenceData(
        predictions=values.tolist(),
        confidences=confidences.tolist(),
        features={feature: x_test[:, i].tolist() for i, feature in enumerate(FEATURE_NAMES)},
    )
    version.training_seconds = time.perf_counter() - started
    return version


class ModelRegistry:
    """The current version of each model and the history of versions.

    Training happens in the caller's thread (run it off the event loop); the new
    version replaces the current one atomically once trained.
    """

    def __init__(self, settings: TrainingSettings | None = None) -> None:
        self.settings = settings or TrainingSettings()
        self._current: dict[ModelName, ModelVersion] = {}
        self._history: dict[ModelName, list[ModelVersion]] = {name: [] for name in MODEL_NAMES}
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()

    def train(self, names: Sequence[ModelName] = MODEL_NAMES) -> list[ModelVersion]:
        """Train the next version of each named model and make it current."""
        trained = []
        with self._train_lock:  # one training at a time keeps version numbers dense
            for name in names:
                number = len(self._history[name]) + 1
                version = train_version(name, number, self.settings)
                with self._lock:
                    self._history[name].append(version)
                    self._current[name] = version
                trained.append(version)
        return trained

    @property
    def ready(self) -> bool:
        """Whether every model has a trained version."""
        return all(name in self._current for name in MODEL_NAMES)

    def current(self, name: ModelName) -> ModelVersion:
        """Return the serving version of `name` (KeyError before the first training)."""
        return self._current[name]

    def history(self, name: ModelName) -> list[ModelVersion]:
        """Return every version of `name`, oldest first."""
        with self._lock:
            return list(self._history[name])
