"""Model telemetry: predictions, ground truth as additive error statistics, baselines."""

from __future__ import annotations

import threading

from mlpulse_instrumentation._hotpath import HistogramHandle, SumHandle
from mlpulse_instrumentation._meters import (
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTION_CACHE_HIT,
    Meters,
)

# Bound recorders are kept per (model, version); versions only grow on retrain, but a
# runaway caller must not grow the table without bound (beyond it, binds are not kept).
_MAX_BOUND_VERSIONS = 1024


class BoundModel:
    """The recorder of one model version: bind once with `ModelTelemetry.bind`, then
    record each prediction and each ground truth at the cost of a few appends::

        recorder = telemetry.models.bind("result", "v1")
        recorder.record_prediction(value=140.0, confidence=0.82, duration_s=0.0004,
                                   cache_hit=False)
        recorder.record_feedback(predicted=140.0, actual=131.0)
    """

    __slots__ = (
        "_absolute",
        "_actual",
        "_actual_squared",
        "_confidence",
        "_duration",
        "_feedback",
        "_hits",
        "_meters",
        "_misses",
        "_squared",
        "_value",
        "model",
        "version",
    )

    def __init__(self, meters: Meters, model: str, version: str) -> None:
        if not model or not version:
            raise ValueError(f"model and version must be non-empty, got {model!r}, {version!r}")
        self.model = model
        self.version = version
        self._meters = meters
        attrs = {MODEL_NAME: model, MODEL_VERSION: version}
        self._hits: SumHandle = meters.predictions.bind({**attrs, PREDICTION_CACHE_HIT: True})
        self._misses: SumHandle = meters.predictions.bind({**attrs, PREDICTION_CACHE_HIT: False})
        self._duration: HistogramHandle = meters.inference_duration.bind(attrs)
        self._confidence: HistogramHandle = meters.confidence.bind(attrs)
        self._value: HistogramHandle = meters.prediction_value.bind(attrs)
        self._feedback: SumHandle = meters.feedback.bind(attrs)
        self._absolute: SumHandle = meters.error_absolute.bind(attrs)
        self._squared: SumHandle = meters.error_squared.bind(attrs)
        self._actual: SumHandle = meters.actual.bind(attrs)
        self._actual_squared: SumHandle = meters.actual_squared.bind(attrs)

    def record_prediction(
        self, *, value: float, confidence: float, duration_s: float, cache_hit: bool
    ) -> None:
        """Record one served prediction; the compute duration counts on cache misses only."""
        if cache_hit:
            self._hits.add(1)
        else:
            self._misses.add(1)
            self._duration.record(duration_s)
        self._confidence.record(confidence)
        self._value.record(value)

    def record_feedback(self, *, predicted: float, actual: float) -> None:
        """Record the ground truth of one earlier prediction of this version."""
        error = actual - predicted
        self._feedback.add(1)
        self._absolute.add(abs(error))
        self._squared.add(error * error)
        self._actual.add(actual)
        self._actual_squared.add(actual * actual)

    def set_baseline(self, *, mae: float, r2: float) -> None:
        """Publish this version's holdout MAE and R² (once, after training)."""
        self._meters.baselines.set(
            {MODEL_NAME: self.model, MODEL_VERSION: self.version}, mae=mae, r2=r2
        )


class ModelTelemetry:
    """Records what a model does, labelled by model name and version.

    Get it from `Telemetry.models` after `instrument_app`. Bind a recorder per model
    version (`bind`) and keep it, or call the shortcuts below, which bind for you::

        models = telemetry.models
        models.set_baseline("result", "v1", mae=12.5, r2=0.91)
        models.record_prediction("result", "v1", value=140.0, confidence=0.82,
                                 duration_s=0.0004, cache_hit=False)
        models.record_feedback("result", "v1", predicted=140.0, actual=131.0)

    Errors are recorded as additive sums (n, Σ|e|, Σe², Σy, Σy²), so MAE, RMSE and R²
    are exact over any window and any number of instances.
    """

    __slots__ = ("_bound", "_lock", "_meters")

    def __init__(self, meters: Meters) -> None:
        self._meters = meters
        self._bound: dict[tuple[str, str], BoundModel] = {}
        self._lock = threading.Lock()

    def bind(self, model: str, version: str) -> BoundModel:
        """The recorder of `model` at `version` (the same object for the same pair)."""
        bound = self._bound.get((model, version))
        if bound is not None:
            return bound
        with self._lock:
            bound = self._bound.get((model, version))
            if bound is None:
                bound = BoundModel(self._meters, model, version)
                if len(self._bound) < _MAX_BOUND_VERSIONS:
                    self._bound[(model, version)] = bound
        return bound

    def record_prediction(
        self,
        model: str,
        version: str,
        *,
        value: float,
        confidence: float,
        duration_s: float,
        cache_hit: bool,
    ) -> None:
        """Record one served prediction (see `BoundModel.record_prediction`)."""
        self.bind(model, version).record_prediction(
            value=value, confidence=confidence, duration_s=duration_s, cache_hit=cache_hit
        )

    def record_feedback(self, model: str, version: str, *, predicted: float, actual: float) -> None:
        """Record the ground truth of one earlier prediction."""
        self.bind(model, version).record_feedback(predicted=predicted, actual=actual)

    def set_baseline(self, model: str, version: str, *, mae: float, r2: float) -> None:
        """Publish a model version's holdout MAE and R² (once per version)."""
        self.bind(model, version).set_baseline(mae=mae, r2=r2)
