"""Every instrument mlpulse emits, defined in one place (names per docs/contracts.md).

Histograms and sums are recorded on the request path through `_hotpath` (a deque append
each); gauges are SDK observable instruments read at collection time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from mlpulse_instrumentation._hotpath import BufferedHistogram, BufferedSum, HotPath

Callback = Callable[[CallbackOptions], Iterable[Observation]]

# Metric names: the contract with the backend. Change docs/contracts.md first.
HTTP_SERVER_REQUEST_DURATION = "http.server.request.duration"
MODEL_PREDICTIONS = "ml.model.predictions"
MODEL_INFERENCE_DURATION = "ml.model.inference.duration"
MODEL_PREDICTION_CONFIDENCE = "ml.model.prediction.confidence"
MODEL_PREDICTION_VALUE = "ml.model.prediction.value"
MODEL_FEATURE_VALUE = "ml.model.feature.value"
MODEL_REFERENCE_PREDICTION_VALUE = "ml.model.reference.prediction.value"
MODEL_REFERENCE_CONFIDENCE = "ml.model.reference.prediction.confidence"
MODEL_REFERENCE_FEATURE_VALUE = "ml.model.reference.feature.value"
MODEL_REFERENCE_SAMPLES = "ml.model.reference.samples"
MODEL_FEEDBACK_LAG = "ml.model.feedback.lag"
MODEL_FEEDBACK = "ml.model.feedback"
MODEL_ERROR_ABSOLUTE = "ml.model.error.absolute"
MODEL_ERROR_SQUARED = "ml.model.error.squared"
MODEL_ACTUAL = "ml.model.actual"
MODEL_ACTUAL_SQUARED = "ml.model.actual.squared"
MODEL_BASELINE_MAE = "ml.model.baseline.mae"
MODEL_BASELINE_R2 = "ml.model.baseline.r2"
CACHE_LOOKUPS = "ml.cache.lookups"
CACHE_ENTRIES = "ml.cache.entries"
CACHE_SIZE = "ml.cache.size"
CACHE_STALE_ENTRIES = "ml.cache.stale_entries"
PROCESS_CPU_UTILIZATION = "process.cpu.utilization"
PROCESS_MEMORY_USAGE = "process.memory.usage"
PROCESS_UPTIME = "process.uptime"
SYSTEM_CPU_UTILIZATION = "system.cpu.utilization"
SYSTEM_MEMORY_UTILIZATION = "system.memory.utilization"
SYSTEM_FILESYSTEM_UTILIZATION = "system.filesystem.utilization"

# Attribute keys.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
MODEL_NAME = "ml.model.name"
MODEL_VERSION = "ml.model.version"
PREDICTION_CACHE_HIT = "ml.prediction.cache_hit"
FEATURE_NAME = "ml.feature.name"
#: The prediction's time window, as an index that cycles (see `prediction_window`).
PREDICTION_WINDOW = "ml.prediction.window"
CACHE_RESULT = "ml.cache.result"
FILESYSTEM_MOUNTPOINT = "system.filesystem.mountpoint"
URL_SCHEME = "url.scheme"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
HTTP_REQUEST_METHOD_ORIGINAL = "http.request.method_original"
URL_PATH = "url.path"
URL_QUERY = "url.query"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
CLIENT_ADDRESS = "client.address"
CLIENT_PORT = "client.port"
USER_AGENT_ORIGINAL = "user_agent.original"
CPU_MODE = "cpu.mode"
MEMORY_STATE = "system.memory.state"

# One instrument carries both models, so a model's target unit cannot be the instrument
# unit; values, errors and actuals are in "the target's unit", written as "1".
_TARGET_UNIT = "1"

#: Predictions are grouped in windows of `PREDICTION_WINDOW_S` by their time; feedback
#: carries its prediction's window as ``(epoch // PREDICTION_WINDOW_S) % PREDICTION_WINDOW_CYCLE``
#: (bounded: at most 16 values). The backend, knowing when the feedback arrived, finds the
#: one window with that index in the cycle before it, exactly, as long as the label came
#: less than `MAX_WINDOWED_LAG_S` after its prediction (later labels go without it).
PREDICTION_WINDOW_S = 300
PREDICTION_WINDOW_CYCLE = 16
#: Two windows of the cycle are kept as slack for the export delay.
MAX_WINDOWED_LAG_S = (PREDICTION_WINDOW_CYCLE - 2) * PREDICTION_WINDOW_S


def prediction_window(predicted_at: float) -> int:
    """The ``ml.prediction.window`` index of a prediction made at `predicted_at` (epoch s)."""
    return int(predicted_at // PREDICTION_WINDOW_S) % PREDICTION_WINDOW_CYCLE


#: Confidence buckets: 0.05 steps on [0, 1] (20 buckets).
CONFIDENCE_BOUNDARIES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(1, 20))


@dataclass(frozen=True, slots=True)
class Meters:
    """The instruments of mlpulse's HTTP, model and cache telemetry (see `init_meters`)."""

    http_duration: BufferedHistogram
    inference_duration: BufferedHistogram
    prediction_value: BufferedHistogram
    confidence: BufferedHistogram
    feature_value: BufferedHistogram
    reference_prediction_value: BufferedHistogram
    reference_confidence: BufferedHistogram
    reference_feature_value: BufferedHistogram
    feedback_lag: BufferedHistogram
    predictions: BufferedSum
    feedback: BufferedSum
    error_absolute: BufferedSum
    error_squared: BufferedSum
    actual: BufferedSum
    actual_squared: BufferedSum
    cache_lookups: BufferedSum
    baselines: Baselines
    meter: Meter
    hot_path: HotPath


class Baselines:
    """The holdout MAE and R² of each model version, reported as two gauges."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._mae: dict[tuple[tuple[str, Any], ...], Observation] = {}
        self._r2: dict[tuple[tuple[str, Any], ...], Observation] = {}
        meter.create_observable_gauge(
            MODEL_BASELINE_MAE,
            [lambda _options: self._observe(self._mae)],
            _TARGET_UNIT,
            "Holdout MAE of the model version at training.",
        )
        meter.create_observable_gauge(
            MODEL_BASELINE_R2,
            [lambda _options: self._observe(self._r2)],
            "1",
            "Holdout R² of the model version at training.",
        )

    def set(self, attributes: Mapping[str, Any], *, mae: float, r2: float) -> None:
        """Publish (or replace) the baseline of the version named by `attributes`."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            self._mae[key] = Observation(mae, dict(attributes))
            self._r2[key] = Observation(r2, dict(attributes))

    def _observe(self, table: dict[tuple[tuple[str, Any], ...], Observation]) -> list[Observation]:
        with self._lock:
            return list(table.values())


def init_meters(meter: Meter, hot_path: HotPath) -> Meters:
    """Create every HTTP, model and cache instrument: histograms and sums on the hot path."""
    hot_path.observe_on(meter)
    return Meters(
        http_duration=hot_path.histogram(
            HTTP_SERVER_REQUEST_DURATION, "s", "Duration of HTTP server requests."
        ),
        inference_duration=hot_path.histogram(
            MODEL_INFERENCE_DURATION, "s", "Model compute time per prediction (cache misses only)."
        ),
        prediction_value=hot_path.histogram(
            MODEL_PREDICTION_VALUE, _TARGET_UNIT, "Predicted values, in the target's unit."
        ),
        confidence=hot_path.histogram(
            MODEL_PREDICTION_CONFIDENCE,
            "1",
            "Confidence of each prediction, on [0, 1].",
            kind="explicit",
            boundaries=CONFIDENCE_BOUNDARIES,
        ),
        feature_value=hot_path.histogram(
            MODEL_FEATURE_VALUE, "1", "Numeric input features of each prediction, per feature."
        ),
        # The references use the same kind and bounds as their live instruments, so the
        # backend compares them bin for bin (PSI, Jensen-Shannon).
        reference_prediction_value=hot_path.histogram(
            MODEL_REFERENCE_PREDICTION_VALUE,
            _TARGET_UNIT,
            "Predicted values on the version's training holdout (reference for drift).",
        ),
        reference_confidence=hot_path.histogram(
            MODEL_REFERENCE_CONFIDENCE,
            "1",
            "Confidence on the version's training holdout (reference for drift).",
            kind="explicit",
            boundaries=CONFIDENCE_BOUNDARIES,
        ),
        reference_feature_value=hot_path.histogram(
            MODEL_REFERENCE_FEATURE_VALUE,
            "1",
            "Numeric input features of the version's training holdout, per feature.",
        ),
        feedback_lag=hot_path.histogram(
            MODEL_FEEDBACK_LAG, "s", "Time from a prediction to its ground truth (label delay)."
        ),
        predictions=hot_path.sum(
            meter, MODEL_PREDICTIONS, "{prediction}", "Predictions served, cached ones included."
        ),
        feedback=hot_path.sum(
            meter,
            MODEL_FEEDBACK,
            "{feedback}",
            "Ground-truth values received (n of the error sums).",
        ),
        error_absolute=hot_path.sum(
            meter,
            MODEL_ERROR_ABSOLUTE,
            _TARGET_UNIT,
            "Sum of absolute errors |actual - predicted|.",
        ),
        error_squared=hot_path.sum(
            meter,
            MODEL_ERROR_SQUARED,
            _TARGET_UNIT,
            "Sum of squared errors (actual - predicted)^2.",
        ),
        actual=hot_path.sum(
            meter,
            MODEL_ACTUAL,
            _TARGET_UNIT,
            "Sum of actual values (may be negative).",
            monotonic=False,
        ),
        actual_squared=hot_path.sum(
            meter, MODEL_ACTUAL_SQUARED, _TARGET_UNIT, "Sum of squared actual values."
        ),
        cache_lookups=hot_path.sum(
            meter, CACHE_LOOKUPS, "{lookup}", "Prediction cache lookups by result (hit or miss)."
        ),
        baselines=Baselines(meter),
        meter=meter,
        hot_path=hot_path,
    )


@dataclass(frozen=True, slots=True)
class SystemCallbacks:
    """The callbacks behind the system gauges (see `_system.SystemSampler`)."""

    process_cpu: Callback
    process_memory: Callback
    process_uptime: Callback
    system_cpu: Callback
    system_memory: Callback
    filesystem: Callback


def init_system_meters(meter: Meter, callbacks: SystemCallbacks) -> None:
    """Create the process and host instruments on `meter` (semantic-convention names)."""
    meter.create_observable_gauge(
        PROCESS_CPU_UTILIZATION,
        [callbacks.process_cpu],
        "1",
        "CPU used by this process since the last collection, as a share of all cores, "
        "per cpu.mode.",
    )
    # An UpDownCounter per the semantic conventions: memory is an amount that goes up
    # and down, and summing it over processes is meaningful.
    meter.create_observable_up_down_counter(
        PROCESS_MEMORY_USAGE, [callbacks.process_memory], "By", "Resident set size."
    )
    meter.create_observable_gauge(
        PROCESS_UPTIME, [callbacks.process_uptime], "s", "Time since the process started."
    )
    meter.create_observable_gauge(
        SYSTEM_CPU_UTILIZATION,
        [callbacks.system_cpu],
        "1",
        "Host CPU time share since the last collection, per cpu.mode (idle included).",
    )
    meter.create_observable_gauge(
        SYSTEM_MEMORY_UTILIZATION,
        [callbacks.system_memory],
        "1",
        "Host memory share per system.memory.state (used = total - available).",
    )
    meter.create_observable_gauge(
        SYSTEM_FILESYSTEM_UTILIZATION,
        [callbacks.filesystem],
        "1",
        "Filesystem space in use, as a share of the total, per mountpoint.",
    )
