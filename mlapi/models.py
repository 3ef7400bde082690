"""The two models under observation, their synthetic training data and their versions.

The data simulates a market-scan service: a scan runs `filter_count` filters and
`indicator_count` indicators over `symbol_count` symbols and `lookback_days` of bars at
a timeframe. The *result* model predicts how many symbols pass; the *duration* model
predicts how long the scan takes in seconds. Both targets carry multiplicative noise.

Both models are tree ensembles trained on log1p(target); the spread of the trees'
predictions is the model's own uncertainty, mapped to a confidence in [0, 1].
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score

ModelName = Literal["result", "duration"]
MODEL_NAMES: tuple[ModelName, ...] = ("result", "duration")

#: Bar length of each timeframe, in minutes.
TIMEFRAME_MINUTES: dict[str, int] = {
    "1m": 1,
    "5m": 5,
    "15m": 15,
    "1h": 60,
    "4h": 240,
    "1d": 1440,
    "1w": 10080,
}
FEATURE_NAMES = (
    "symbol_count",
    "lookback_days",
    "filter_count",
    "indicator_count",
    "timeframe_minutes_log",
    "market_hours",
)
_TRADING_MINUTES_PER_DAY = 390
_MAX_BARS = 50_000
# Tree spread (std of log1p predictions) at which confidence falls to 1/e.
_CONFIDENCE_SCALE = 0.35


@dataclass(frozen=True, slots=True)
class ScanFeatures:
    """The inputs of a scan, as the models see them."""

    symbol_count: int
    lookback_days: int
    filter_count: int
    indicator_count: int
    timeframe: str
    market_hours: bool

    def vector(self) -> tuple[float, ...]:
        """Return the numeric feature vector, in FEATURE_NAMES order."""
        return (
            float(self.symbol_count),
            float(self.lookback_days),
            float(self.filter_count),
            float(self.indicator_count),
            math.log(TIMEFRAME_MINUTES[self.timeframe]),
            1.0 if self.market_hours else 0.0,
        )


def expected_result_count(f: ScanFeatures) -> float:
    """Noise-free number of symbols passing the scan's filters."""
    pass_rate = 0.6 * math.exp(-0.28 * f.filter_count)
    pass_rate *= 1.0 + 0.03 * f.indicator_count
    pass_rate *= 1.0 + 0.05 * math.log10(f.lookback_days)
    pass_rate *= 1.15 if f.market_hours else 1.0
    return f.symbol_count * min(pass_rate, 1.0)


def expected_duration_s(f: ScanFeatures) -> float:
    """Noise-free scan duration in seconds."""
    minutes = TIMEFRAME_MINUTES[f.timeframe]
    bars_per_day = _TRADING_MINUTES_PER_DAY / minutes if minutes < 1440 else 1440 / minutes
    bars = min(f.lookback_days * bars_per_day, _MAX_BARS)
    work = f.symbol_count * bars * (1.0 + 0.25 * f.indicator_count + 0.05 * f.filter_count)
    duration = 0.05 + 4e-8 * work
    return duration * (1.25 if f.market_hours else 1.0)


def simulate_actual(model: ModelName, features: ScanFeatures, rng: np.random.Generator) -> float:
    """Draw a realistic ground-truth value for a scan (what the loadgen reports back)."""
    if model == "result":
        return float(round(expected_result_count(features) * rng.lognormal(0.0, 0.25)))
    return float(expected_duration_s(features) * rng.lognormal(0.0, 0.2))


def random_features(rng: np.random.Generator) -> ScanFeatures:
    """Draw a scan from the request distribution the models are trained on."""
    timeframes = tuple(TIMEFRAME_MINUTES)
    return ScanFeatures(
        symbol_count=round(math.exp(rng.uniform(0.0, math.log(5000)))),
        lookback_days=round(math.exp(rng.uniform(0.0, math.log(3650)))),
        filter_count=int(rng.integers(0, 16)),
        indicator_count=int(rng.integers(0, 21)),
        timeframe=timeframes[int(rng.integers(0, len(timeframes)))],
        market_hours=bool(rng.random() < 0.4),
    )


def make_dataset(
    model: ModelName, n_samples: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return a deterministic (X, y) of `n_samples` synthetic scans for `model`."""
    rng = np.random.default_rng(seed)
    rows = []
    targets = []
    for _ in range(n_samples):
        features = random_features(rng)
        rows.append(features.vector())
        targets.append(simulate_actual(model, features, rng))
    return np.asarray(rows, dtype=np.float64), np.asarray(targets, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer: the value in the target's unit and its confidence in [0, 1]."""

    value: float
    confidence: float


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    """How much data and how many trees a training run uses."""

    n_samples: int = 3000
    n_estimators: int = 40
    holdout_share: float = 0.2
    seed: int = 42


class ModelVersion:
    """One trained version of a model, with its holdout baseline."""

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
        # The low-level trees predict a single row without sklearn's per-call checks.
        self._trees = [tree.tree_ for tree in estimator.estimators_]

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
    x, y = make_dataset(name, settings.n_samples, seed)
    n_holdout = max(int(len(y) * settings.holdout_share), 1)
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
    return ModelVersion(
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
