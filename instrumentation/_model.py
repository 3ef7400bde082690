"""Model telemetry: predictions, ground truth as additive error statistics, baselines."""

from __future__ import annotations

from collections.abc import Mapping

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

    __slots__ = ("_meters", "_model_attrs", "_prediction_attrs")

    def __init__(self, meters: Meters) -> None:
        self._meters = meters
        self._model_attrs: dict[tuple[str, str], _Attributes] = {}
        self._prediction_attrs: dict[tuple[str, str, bool], _Attributes] = {}

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
        meters = self._meters
        attrs = self._model_attributes(model, version)
        meters.predictions.add(1, self._prediction_attributes(model, version, cache_hit))
        if not cache_hit:
            meters.inference_duration.record(duration_s, attrs)
        meters.confidence.record(confidence, attrs)
        meters.prediction_value.record(value, attrs)

    def record_feedback(self, model: str, version: str, *, predicted: float, actual: float) -> None:
        """Record the ground truth of one earlier prediction."""
        meters = self._meters
        attrs = self._model_attributes(model, version)
        error = actual - predicted
        meters.feedback.add(1, attrs)
        meters.error_absolute.add(abs(error), attrs)
        meters.error_squared.add(error * error, attrs)
        meters.actual.add(actual, attrs)
        meters.actual_squared.add(actual * actual, attrs)

    def set_baseline(self, model: str, version: str, *, mae: float, r2: float) -> None:
        """Publish a model version's holdout MAE and R² (once per version)."""
        attrs = self._model_attributes(model, version)
        self._meters.baseline_mae.set(mae, attrs)
        self._meters.baseline_r2.set(r2, attrs)

    def _model_attributes(self, model: str, version: str) -> _Attributes:
        key = (model, version)
        attrs = self._model_attrs.get(key)
        if attrs is None:
            attrs = {MODEL_NAME: model, MODEL_VERSION: version}
            if len(self._model_attrs) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._model_attrs[key] = attrs
        return attrs

    def _prediction_attributes(self, model: str, version: str, cache_hit: bool) -> _Attributes:
        key = (model, version, cache_hit)
        attrs = self._prediction_attrs.get(key)
        if attrs is None:
            attrs = {MODEL_NAME: model, MODEL_VERSION: version, PREDICTION_CACHE_HIT: cache_hit}
            if len(self._prediction_attrs) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._prediction_attrs[key] = attrs
        return attrs
