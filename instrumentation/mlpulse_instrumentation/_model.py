"""Model telemetry: predictions, ground truth as additive error statistics, baselines,
reference distributions for drift, label delay."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry.metrics import CallbackOptions, Observation

from mlpulse_instrumentation._hotpath import HistogramHandle, RowHandle, SumHandle
from mlpulse_instrumentation._meters import (
    FEATURE_NAME,
    MAX_WINDOWED_LAG_S,
    MODEL_NAME,
    MODEL_REFERENCE_SAMPLES,
    MODEL_VERSION,
    PREDICTION_CACHE_HIT,
    PREDICTION_WINDOW,
    Meters,
    prediction_window,
)

# Bound recorders are kept per (model, version); versions only grow on retrain, but a
# runaway caller must not grow the table without bound (beyond it, binds are not kept).
_MAX_BOUND_VERSIONS = 1024
#: Numeric features recorded per model version (more names are ignored): bounded labels.
MAX_FEATURES = 32
#: Distinct sets of feature names per version recorded with one append each (a service
#: sends the same names every time; beyond this, values are recorded one by one).
_MAX_ROW_LAYOUTS = 8
#: How often each version's reference distributions are recorded again. A reference is
#: a histogram that only grows by whole copies, and the backend reads it as proportions
#: over the hour before a window, so re-recording keeps it visible to a backend that
#: joined later or lost it, without changing its shape.
REFERENCE_REPUBLISH_S = 600.0
#: Versions per model whose references keep being re-published (the newest ones).
MAX_REFERENCE_VERSIONS = 4


class References:
    """The reference distributions (training holdout) of model versions.

    `publish` keeps them and records them at once; they are recorded again every
    `REFERENCE_REPUBLISH_S` from the collection thread (the ``ml.model.reference.samples``
    gauge's callback, which also reports how many holdout rows each reference has).
    """

    def __init__(self, meters: Meters, clock: Callable[[], float] = time.monotonic) -> None:
        self._meters = meters
        self._clock = clock
        self._lock = threading.Lock()
        # (model, version) -> (predictions, confidences, features, last recorded at)
        self._items: dict[
            tuple[str, str],
            tuple[list[float], list[float], dict[str, list[float]], float | None],
        ] = {}
        meters.meter.create_observable_gauge(
            MODEL_REFERENCE_SAMPLES,
            [self._observe],
            "{sample}",
            "Holdout rows behind each model version's reference distributions.",
        )

    def publish(
        self,
        model: str,
        version: str,
        predictions: Sequence[float],
        confidences: Sequence[float],
        features: Mapping[str, Sequence[float]],
    ) -> None:
        """Keep a version's reference distributions; they go out at the next collection."""
        kept = {
            name: [float(v) for v in values if math.isfinite(v)]
            for name, values in list(features.items())[:MAX_FEATURES]
        }
        with self._lock:
            self._items[(model, version)] = (
                [float(v) for v in predictions if math.isfinite(v)],
                [float(v) for v in confidences if math.isfinite(v)],
                kept,
                None,
            )
            mine = [key for key in self._items if key[0] == model]
            for old in mine[:-MAX_REFERENCE_VERSIONS]:
                del self._items[old]
        # Outside any span: a retrain requested over HTTP must not make the holdout's
        # values exemplar candidates of the admin request's trace.
        token = otel_context.attach(otel_context.Context())
        try:
            self.record_due()
        finally:
            otel_context.detach(token)

    def record_due(self) -> int:
        """Record every reference not recorded in the last `REFERENCE_REPUBLISH_S`."""
        now = self._clock()
        with self._lock:
            due = [
                (key, item)
                for key, item in self._items.items()
                if item[3] is None or now - item[3] >= REFERENCE_REPUBLISH_S
            ]
            for key, item in due:
                self._items[key] = (*item[:3], now)
        m = self._meters
        for (model, version), (predictions, confidences, features, _) in due:
            attrs = {MODEL_NAME: model, MODEL_VERSION: version}
            _record_all(m.reference_prediction_value.bind(attrs).record, predictions)
            _record_all(m.reference_confidence.bind(attrs).record, confidences)
            for name, values in features.items():
                handle = m.reference_feature_value.bind({**attrs, FEATURE_NAME: name})
                _record_all(handle.record, values)
        return len(due)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        self.record_due()
        with self._lock:
            return [
                Observation(len(item[0]), {MODEL_NAME: model, MODEL_VERSION: version})
                for (model, version), item in self._items.items()
            ]


def _record_all(record: Callable[[float], None], values: Iterable[float]) -> None:
    for value in values:
        record(value)


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
        "_by_split",
        "_confidence",
        "_duration",
        "_feature_handles",
        "_feature_layouts",
        "_feedback",
        "_hits",
        "_lag",
        "_meters",
        "_misses",
        "_references",
        "_rows",
        "_squared",
        "_value",
        "model",
        "version",
    )

    def __init__(
        self, meters: Meters, model: str, version: str, references: References | None = None
    ) -> None:
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
        self._lag: HistogramHandle = meters.feedback_lag.bind(attrs)
        self._feature_handles: dict[str, HistogramHandle] = {}
        # One row per prediction, keyed by the feature names (None: no features): a
        # cache hit's (confidence, value, *features) counted as a hit, a miss's
        # (inference duration, confidence, value, *features) counted as a miss. Two
        # layouts rather than one with None in the columns a hit lacks: shorter rows,
        # and no None to filter out at collection.
        self._rows: dict[tuple[str, ...] | None, tuple[RowHandle, RowHandle]] = {}
        self._feature_layouts: dict[tuple[str, ...], BoundFeatures] = {}
        self._references = references
        # The error sums split by cache hit and prediction window, bound on first use
        # (see record_feedback; at most 3 x PREDICTION_WINDOW_CYCLE keys).
        self._by_split: dict[tuple[bool | None, int | None], tuple[SumHandle, ...]] = {}

    def record_prediction(
        self,
        *,
        value: float,
        confidence: float,
        duration_s: float,
        cache_hit: bool,
        features: Mapping[str, float] | None = None,
    ) -> None:
        """Record one served prediction; the compute duration counts on cache misses only.

        `features` (name -> numeric value) feed input-drift histograms, one per feature
        name (at most `MAX_FEATURES` names per version).
        """
        names = tuple(features) if features else None
        rows = self._rows.get(names)
        if rows is None:
            rows = self._row(names)
            if rows is None:  # too many layouts: value by value
                self._record_slowly(value, confidence, duration_s, cache_hit, features or {})
                return
        if cache_hit:
            fixed: tuple[float, ...] = (confidence, value)
            row = rows[0]
        else:
            fixed = (duration_s, confidence, value)
            row = rows[1]
        row.record((*fixed, *features.values()) if features else fixed)

    def with_features(self, names: Sequence[str]) -> BoundFeatures:
        """A recorder for predictions whose features come as values in `names`' order
        (a model's input vector), without building a name -> value mapping per
        prediction; the same object for the same names."""
        key = tuple(names)
        layout = self._feature_layouts.get(key)
        if layout is None:
            if len(set(key)) != len(key):
                raise ValueError(f"feature names repeat: {key!r}")
            # None: the version has too many layouts; values then go one by one.
            layout = BoundFeatures(self, key, self._rows.get(key) or self._row(key))
            if len(self._feature_layouts) < _MAX_ROW_LAYOUTS:
                self._feature_layouts[key] = layout
        return layout

    def _row(self, names: tuple[str, ...] | None) -> tuple[RowHandle, RowHandle] | None:
        """The (cache hit, cache miss) rows of a feature layout; None past the limit."""
        if len(self._rows) >= _MAX_ROW_LAYOUTS:
            return None
        features = [self._feature(name) for name in names or ()]
        hot_path = self._meters.hot_path
        rows = self._rows[names] = (
            hot_path.row([self._confidence, self._value, *features], count=self._hits),
            hot_path.row(
                [self._duration, self._confidence, self._value, *features], count=self._misses
            ),
        )
        return rows

    def _feature(self, name: str) -> HistogramHandle | None:
        handles = self._feature_handles
        handle = handles.get(name)
        if handle is None and len(handles) < MAX_FEATURES:
            handle = handles[name] = self._meters.feature_value.bind(
                {MODEL_NAME: self.model, MODEL_VERSION: self.version, FEATURE_NAME: name}
            )
        return handle

    def _record_slowly(
        self,
        value: float,
        confidence: float,
        duration_s: float,
        cache_hit: bool,
        features: Mapping[str, float],
    ) -> None:
        if cache_hit:
            self._hits.add(1)
        else:
            self._misses.add(1)
            self._duration.record(duration_s)
        self._confidence.record(confidence)
        self._value.record(value)
        for name, feature in features.items():
            handle = self._feature(name)
            if handle is not None:
                handle.record(feature)

    def record_feedback(
        self,
        *,
        predicted: float,
        actual: float,
        lag_s: float | None = None,
        cache_hit: bool | None = None,
        predicted_at: float | None = None,
    ) -> None:
        """Record the ground truth of one earlier prediction of this version.

        `lag_s` is the time since the prediction was served (label delay); with
        `cache_hit`, the error sums carry ``ml.prediction.cache_hit`` (MAE of cached and
        computed answers apart); with `predicted_at` (epoch s), n, Σ|e| and Σe² carry
        ``ml.prediction.window`` (MAE by prediction window) when the label came within
        `MAX_WINDOWED_LAG_S`.
        """
        error = actual - predicted
        window: int | None = None
        if predicted_at is not None and 0 <= time.time() - predicted_at < MAX_WINDOWED_LAG_S:
            window = prediction_window(predicted_at)
        sums = (
            (self._feedback, self._absolute, self._squared, self._actual, self._actual_squared)
            if cache_hit is None and window is None
            else self._split_sums(cache_hit, window)
        )
        feedback, absolute, squared, actual_sum, actual_squared = sums
        feedback.add(1)
        absolute.add(abs(error))
        squared.add(error * error)
        actual_sum.add(actual)
        actual_squared.add(actual * actual)
        if lag_s is not None and math.isfinite(lag_s) and lag_s >= 0:
            self._lag.record(lag_s)

    def _split_sums(self, cache_hit: bool | None, window: int | None) -> tuple[SumHandle, ...]:
        key = (cache_hit, window)
        sums = self._by_split.get(key)
        if sums is None:
            m = self._meters
            attrs: dict[str, str | bool | int] = {MODEL_NAME: self.model,
                                                  MODEL_VERSION: self.version}  # fmt: skip
            if cache_hit is not None:
                attrs[PREDICTION_CACHE_HIT] = cache_hit
            # The window goes on n, Σ|e| and Σe² only (the MAE and its interval): the
            # actuals' sums need no more series than the cache split.
            windowed = {**attrs, PREDICTION_WINDOW: window} if window is not None else attrs
            sums = self._by_split[key] = (
                m.feedback.bind(windowed),
                m.error_absolute.bind(windowed),
                m.error_squared.bind(windowed),
                m.actual.bind(attrs),
                m.actual_squared.bind(attrs),
            )
        return sums

    def publish_reference(
        self,
        *,
        predictions: Sequence[float],
        confidences: Sequence[float],
        features: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Publish this version's reference distributions (its training holdout's
        predictions, confidences and numeric features), once after training."""
        if self._references is None:
            raise RuntimeError("this recorder was built without a references registry")
        self._references.publish(self.model, self.version, predictions, confidences, features or {})

    def set_baseline(self, *, mae: float, r2: float) -> None:
        """Publish this version's holdout MAE and R² (once, after training)."""
        self._meters.baselines.set(
            {MODEL_NAME: self.model, MODEL_VERSION: self.version}, mae=mae, r2=r2
        )


class BoundFeatures:
    """The recorder of one model version for one feature layout; get it with
    `BoundModel.with_features` and keep it::

        recorder = telemetry.models.bind("result", "v1").with_features(("area", "rooms"))
        recorder.record_prediction(value=140.0, confidence=0.82, duration_s=0.0004,
                                   cache_hit=False, features=(84.0, 3.0))
    """

    __slots__ = ("_hit", "_miss", "_model", "_names")

    def __init__(
        self, model: BoundModel, names: tuple[str, ...], rows: tuple[RowHandle, RowHandle] | None
    ) -> None:
        self._model = model
        self._names = names
        # The (cache hit, cache miss) rows; None: too many layouts, value by value.
        self._hit: RowHandle | None = rows[0] if rows is not None else None
        self._miss: RowHandle | None = rows[1] if rows is not None else None

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in the order `record_prediction` takes their values."""
        return self._names

    def record_prediction(
        self,
        *,
        value: float,
        confidence: float,
        duration_s: float,
        cache_hit: bool,
        features: Sequence[float],
    ) -> None:
        """Record one served prediction; `features` are the values in `names`' order."""
        if len(features) != len(self._names):
            raise ValueError(f"{len(features)} feature values for {len(self._names)} names")
        if cache_hit:
            if self._hit is not None:
                self._hit.record((confidence, value, *features))
                return
        elif self._miss is not None:
            self._miss.record((duration_s, confidence, value, *features))
            return
        self._model.record_prediction(
            value=value,
            confidence=confidence,
            duration_s=duration_s,
            cache_hit=cache_hit,
            features=dict(zip(self._names, features, strict=True)),
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

    __slots__ = ("_bound", "_lock", "_meters", "references")

    def __init__(self, meters: Meters) -> None:
        self._meters = meters
        self._bound: dict[tuple[str, str], BoundModel] = {}
        self._lock = threading.Lock()
        self.references = References(meters)

    def bind(self, model: str, version: str) -> BoundModel:
        """The recorder of `model` at `version` (the same object for the same pair)."""
        bound = self._bound.get((model, version))
        if bound is not None:
            return bound
        with self._lock:
            bound = self._bound.get((model, version))
            if bound is None:
                bound = BoundModel(self._meters, model, version, self.references)
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
        features: Mapping[str, float] | None = None,
    ) -> None:
        """Record one served prediction (see `BoundModel.record_prediction`)."""
        self.bind(model, version).record_prediction(
            value=value,
            confidence=confidence,
            duration_s=duration_s,
            cache_hit=cache_hit,
            features=features,
        )

    def record_feedback(
        self,
        model: str,
        version: str,
        *,
        predicted: float,
        actual: float,
        lag_s: float | None = None,
        cache_hit: bool | None = None,
        predicted_at: float | None = None,
    ) -> None:
        """Record the ground truth of one earlier prediction (see `BoundModel`)."""
        self.bind(model, version).record_feedback(
            predicted=predicted,
            actual=actual,
            lag_s=lag_s,
            cache_hit=cache_hit,
            predicted_at=predicted_at,
        )

    def publish_reference(
        self,
        model: str,
        version: str,
        *,
        predictions: Sequence[float],
        confidences: Sequence[float],
        features: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Publish a model version's reference distributions (see `BoundModel`)."""
        self.bind(model, version).publish_reference(
            predictions=predictions, confidences=confidences, features=features
        )

    def set_baseline(self, model: str, version: str, *, mae: float, r2: float) -> None:
        """Publish a model version's holdout MAE and R² (once per version)."""
        self.bind(model, version).set_baseline(mae=mae, r2=r2)
