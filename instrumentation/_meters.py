"""Every instrument mlpulse emits, defined in one place (names per docs/contracts.md).

Histograms and sums are updated on the request path through `_aggregate` (about a
microsecond each); the SDK sees them at collection time only: sums through observable
counters, histograms merged into each reader's collection. Gauges are SDK instruments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, ObservableGauge, Observation
from opentelemetry.metrics import _Gauge as Gauge  # the synchronous gauge, still "_" in the API

from instrumentation._aggregate import ExplicitHistogram, ExponentialHistogram, SumTable

Callback = Callable[[CallbackOptions], Iterable[Observation]]

# Metric names: the contract with the backend. Change docs/contracts.md first.
HTTP_SERVER_REQUEST_DURATION = "http.server.request.duration"
MODEL_PREDICTIONS = "ml.model.predictions"
MODEL_INFERENCE_DURATION = "ml.model.inference.duration"
MODEL_PREDICTION_CONFIDENCE = "ml.model.prediction.confidence"
MODEL_PREDICTION_VALUE = "ml.model.prediction.value"
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
CACHE_RESULT = "ml.cache.result"
FILESYSTEM_MOUNTPOINT = "system.filesystem.mountpoint"

# One instrument carries both models, so a model's target unit cannot be the instrument
# unit; values, errors and actuals are in "the target's unit", written as "1".
_TARGET_UNIT = "1"

#: Confidence buckets: 0.05 steps on [0, 1] (20 buckets).
CONFIDENCE_BOUNDARIES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(1, 20))


@dataclass(frozen=True, slots=True)
class Meters:
    """The instruments of mlpulse's HTTP, model and cache telemetry (see `init_meters`)."""

    http_duration: ExponentialHistogram
    inference_duration: ExponentialHistogram
    prediction_value: ExponentialHistogram
    confidence: ExplicitHistogram
    predictions: SumTable
    feedback: SumTable
    error_absolute: SumTable
    error_squared: SumTable
    actual: SumTable
    actual_squared: SumTable
    cache_lookups: SumTable
    baseline_mae: Gauge
    baseline_r2: Gauge
    cache_entries: ObservableGauge
    cache_size: ObservableGauge

    @property
    def histograms(self) -> tuple[ExponentialHistogram | ExplicitHistogram, ...]:
        """The histograms, which the setup merges into each reader's collection."""
        return (
            self.http_duration,
            self.inference_duration,
            self.prediction_value,
            self.confidence,
        )


def init_meters(
    meter: Meter,
    *,
    cache_entries_callback: Callback,
    cache_size_callback: Callback,
    max_size: int = 160,
    max_scale: int = 20,
) -> Meters:
    """Create every HTTP, model and cache instrument; sums are observed through `meter`."""

    def exponential(name: str, unit: str, description: str) -> ExponentialHistogram:
        return ExponentialHistogram(name, unit, description, max_size=max_size, max_scale=max_scale)

    def counter(name: str, unit: str, description: str, *, monotonic: bool = True) -> SumTable:
        table = SumTable()
        if monotonic:
            meter.create_observable_counter(name, [table.observe], unit, description)
        else:
            meter.create_observable_up_down_counter(name, [table.observe], unit, description)
        return table

    return Meters(
        http_duration=exponential(
            HTTP_SERVER_REQUEST_DURATION, "s", "Duration of HTTP server requests."
        ),
        inference_duration=exponential(
            MODEL_INFERENCE_DURATION, "s", "Model compute time per prediction (cache misses only)."
        ),
        prediction_value=exponential(
            MODEL_PREDICTION_VALUE, _TARGET_UNIT, "Predicted values, in the target's unit."
        ),
        confidence=ExplicitHistogram(
            MODEL_PREDICTION_CONFIDENCE,
            "1",
            "Confidence of each prediction, on [0, 1].",
            boundaries=CONFIDENCE_BOUNDARIES,
        ),
        predictions=counter(
            MODEL_PREDICTIONS, "{prediction}", "Predictions served, cached ones included."
        ),
        feedback=counter(
            MODEL_FEEDBACK, "{feedback}", "Ground-truth values received (n of the error sums)."
        ),
        error_absolute=counter(
            MODEL_ERROR_ABSOLUTE, _TARGET_UNIT, "Sum of absolute errors |actual - predicted|."
        ),
        error_squared=counter(
            MODEL_ERROR_SQUARED, _TARGET_UNIT, "Sum of squared errors (actual - predicted)^2."
        ),
        actual=counter(
            MODEL_ACTUAL, _TARGET_UNIT, "Sum of actual values (may be negative).", monotonic=False
        ),
        actual_squared=counter(MODEL_ACTUAL_SQUARED, _TARGET_UNIT, "Sum of squared actual values."),
        cache_lookups=counter(
            CACHE_LOOKUPS, "{lookup}", "Prediction cache lookups by result (hit or miss)."
        ),
        baseline_mae=meter.create_gauge(
            MODEL_BASELINE_MAE, _TARGET_UNIT, "Holdout MAE of the model version at training."
        ),
        baseline_r2=meter.create_gauge(
            MODEL_BASELINE_R2, "1", "Holdout R² of the model version at training."
        ),
        cache_entries=meter.create_observable_gauge(
            CACHE_ENTRIES, [cache_entries_callback], "{entry}", "Entries in the cache."
        ),
        cache_size=meter.create_observable_gauge(
            CACHE_SIZE, [cache_size_callback], "By", "Estimated size of the cache in bytes."
        ),
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


def init_system_meters(meter: Meter, callbacks: SystemCallbacks) -> Sequence[ObservableGauge]:
    """Create the process and host gauges on `meter`."""
    return (
        meter.create_observable_gauge(
            PROCESS_CPU_UTILIZATION,
            [callbacks.process_cpu],
            "1",
            "CPU used by this process since the last collection, as a share of all cores.",
        ),
        meter.create_observable_gauge(
            PROCESS_MEMORY_USAGE, [callbacks.process_memory], "By", "Resident set size."
        ),
        meter.create_observable_gauge(
            PROCESS_UPTIME, [callbacks.process_uptime], "s", "Time since the process started."
        ),
        meter.create_observable_gauge(
            SYSTEM_CPU_UTILIZATION,
            [callbacks.system_cpu],
            "1",
            "Host CPU busy share since the last collection.",
        ),
        meter.create_observable_gauge(
            SYSTEM_MEMORY_UTILIZATION,
            [callbacks.system_memory],
            "1",
            "Host memory in use, as a share of the total.",
        ),
        meter.create_observable_gauge(
            SYSTEM_FILESYSTEM_UTILIZATION,
            [callbacks.filesystem],
            "1",
            "Filesystem space in use, as a share of the total, per mountpoint.",
        ),
    )
