"""Model telemetry: predictions, ground truth as additive error statistics, baselines."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from instrumentation._aggregate import FOLD_THRESHOLD
from instrumentation._meters import (
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTION_CACHE_HIT,
    Meters,
)

_Attributes = Mapping[str, str | bool]

# Attribute dicts are cached per (model, version[, cache hit]); versions only grow on
# retrain, but a runaway caller must not grow the cache without bound.
_MAX_CACHED_ATTRIBUTE_SETS = 1024

# Per (model, version, cache hit): the raw buffers of predictions, inference duration,
# confidence and value, appended to directly on the hot path.
_Buffers = tuple[deque[float], deque[float], deque[float], deque[float]]


class ModelTelemetry:
    """Records what a model does, labelled by model name and version.

    Get it from `Telemetry.models` after `instrument_app`. Record each prediction when it
    is served, each ground-truth value when it arrives, and each model version's holdout
    metrics once after training::

        models = telemetry.models
        models.set_baseline("result", "v1", mae=12.5, r2=0.91)
        models.record_prediction("result", "v1", value=140.0, confidence=0.82,
                                 duration_s=0.0004, cache_hit=False)
        models.record_feedback("result", "v1", predicted=140.0, actual=131.0)

    Errors are recorded as additive sums (n, Σ|e|, Σe², Σy, Σy²), so MAE, RMSE and R²
    are exact over any window and any number of instances.
    """

    __slots__ = ("_buffers", "_meters", "_model_attrs", "_prediction_attrs")

    def __init__(self, meters: Meters) -> None:
        self._meters = meters
        self._model_attrs: dict[tuple[str, str], _Attributes] = {}
        self._prediction_attrs: dict[tuple[str, str, bool], _Attributes] = {}
        self._buffers: dict[tuple[str, str, bool], _Buffers] = {}

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
        """Record one served prediction; the compute duration counts on cache misses only."""
        buffers = self._buffers.get((model, version, cache_hit))
        if buffers is not None:
            # Hot path (no exemplars to sample): four appends, folded at collection.
            buffers[0].append(1)
            if not cache_hit:
                buffers[1].append(duration_s)
            buffers[2].append(confidence)
            value_buffer = buffers[3]
            value_buffer.append(value)
            if len(value_buffer) > FOLD_THRESHOLD:
                self._fold_pending()
            return
        meters = self._meters
        key = (model, version)
        attrs = self._model_attributes(key)
        prediction_key = (model, version, cache_hit)
        meters.predictions.add(1, prediction_key, self._prediction_attributes(prediction_key))
        if not cache_hit:
            meters.inference_duration.record(duration_s, key, attrs)
        meters.confidence.record(confidence, key, attrs)
        meters.prediction_value.record(value, key, attrs)
        if (
            not meters.prediction_value.exemplars_enabled
            and len(self._buffers) < _MAX_CACHED_ATTRIBUTE_SETS
        ):
            self._buffers[prediction_key] = (
                meters.predictions.buffer(
                    prediction_key, self._prediction_attributes(prediction_key)
                ),
                meters.inference_duration.buffer(key, attrs),
                meters.confidence.buffer(key, attrs),
                meters.prediction_value.buffer(key, attrs),
            )

    def record_feedback(self, model: str, version: str, *, predicted: float, actual: float) -> None:
        """Record the ground truth of one earlier prediction."""
        meters = self._meters
        key = (model, version)
        attrs = self._model_attributes(key)
        error = actual - predicted
        meters.feedback.add(1, key, attrs)
        meters.error_absolute.add(abs(error), key, attrs)
        meters.error_squared.add(error * error, key, attrs)
        meters.actual.add(actual, key, attrs)
        meters.actual_squared.add(actual * actual, key, attrs)

    def set_baseline(self, model: str, version: str, *, mae: float, r2: float) -> None:
        """Publish a model version's holdout MAE and R² (once per version)."""
        attrs = self._model_attributes((model, version))
        self._meters.baseline_mae.set(mae, attrs)
        self._meters.baseline_r2.set(r2, attrs)

    def _fold_pending(self) -> None:
        meters = self._meters
        meters.predictions.fold_pending()
        meters.inference_duration.fold_pending()
        meters.confidence.fold_pending()
        meters.prediction_value.fold_pending()

    def _model_attributes(self, key: tuple[str, str]) -> _Attributes:
        attrs = self._model_attrs.get(key)
        if attrs is None:
            attrs = {MODEL_NAME: key[0], MODEL_VERSION: key[1]}
            if len(self._model_attrs) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._model_attrs[key] = attrs
        return attrs

    def _prediction_attributes(self, key: tuple[str, str, bool]) -> _Attributes:
        attrs = self._prediction_attrs.get(key)
        if attrs is None:
            attrs = {MODEL_NAME: key[0], MODEL_VERSION: key[1], PREDICTION_CACHE_HIT: key[2]}
            if len(self._prediction_attrs) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._prediction_attrs[key] = attrs
        return attrs
