"""Synthetic but realistic traffic for the dashboard tests, sent with the real OTel SDK.

`Traffic` records what an instrumented mlapi would (requests, predictions, ground truth,
cache lookups, system gauges) with the instruments of `instrumentation._meters`, and
exports through the SDK's OTLP/HTTP exporter to the backend's `/v1/metrics`.

The SDK stamps points with `time.time_ns()`; `Traffic` points that clock at its own
`now`, so one test can send 30 minutes of history in a few seconds (each `tick()` is one
export interval) and then continue at wall-clock time for live updates.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal import (
    _view_instrument_match,
    instrument,
    metric_reader_storage,
)
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from instrumentation import _meters as m

XSS = "<img src=x onerror=alert(1)>"
"""An attribute value that must show up as text, never as markup."""

MODELS = {
    # name: (version, baseline MAE, baseline R², typical target, error scale)
    "result": ("3", 4.2, 0.87, 60.0, 4.4),
    "duration": ("2", 0.35, 0.91, 3.0, 0.41),
}
ROUTES = ("/predict/results", "/predict/duration", "/feedback", "/health")


@contextmanager
def sdk_clock(clock: Traffic) -> Iterator[None]:
    """Make the SDK's timestamps come from `clock.now` (seconds)."""
    modules = (instrument, metric_reader_storage, _view_instrument_match)
    saved = [mod.time_ns for mod in modules]  # type: ignore[attr-defined]
    fake = lambda: int(clock.now * 1e9)  # noqa: E731
    try:
        for mod in modules:
            mod.time_ns = fake  # type: ignore[attr-defined]
        yield
    finally:
        for mod, original in zip(modules, saved, strict=True):
            mod.time_ns = original  # type: ignore[attr-defined]


@dataclass
class Traffic:
    """A simulated instrumented ML API exporting to `backend_url`."""

    backend_url: str
    service: str = "mlapi"
    extra_model: str | None = None
    extra_route: str | None = None
    seed: int = 7
    now: float = field(default_factory=time.time)
    started: float = 0.0
    rng: random.Random = field(init=False)
    cache_entries: int = 0
    ticks: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.started = self.now
        exporter = OTLPMetricExporter(endpoint=f"{self.backend_url}/v1/metrics", timeout=10)
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create(
            {
                "service.name": self.service,
                "service.version": "1.4.0",
                "service.instance.id": "i-1",
                "deployment.environment.name": "test",
            }
        )
        self.provider = MeterProvider(
            metric_readers=[self.reader], resource=resource, views=m.metric_views()
        )
        meter = self.provider.get_meter("mlpulse.test")
        self.meters = m.init_meters(
            meter,
            cache_entries_callback=self._cache_entries,
            cache_size_callback=self._cache_size,
        )
        m.init_system_meters(
            meter,
            m.SystemCallbacks(
                process_cpu=self._gauge(lambda: 0.08 + 0.04 * self.rng.random()),
                process_memory=self._gauge(lambda: 182e6 + 4e6 * self.rng.random()),
                process_uptime=self._gauge(lambda: self.now - self.started + 5400),
                system_cpu=self._gauge(lambda: 0.23 + 0.05 * self.rng.random()),
                system_memory=self._gauge(lambda: 0.41),
                filesystem=lambda _o: [
                    Observation(0.37, {m.FILESYSTEM_MOUNTPOINT: "/"}),
                ],
            ),
        )
        self.tracer = TracerProvider().get_tracer("mlpulse.test")

    # -- observable callbacks ------------------------------------------------------------

    def _gauge(self, fn: Any) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(fn())]

        return callback

    def _cache_entries(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.cache_entries)]

    def _cache_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.cache_entries * 420)]

    # -- traffic ---------------------------------------------------------------------------

    def request(self, route: str, seconds: float, status: int = 200) -> None:
        """Record one HTTP request inside a sampled span, so its bucket gets an exemplar."""
        attrs: dict[str, Any] = {
            m.HTTP_REQUEST_METHOD: "GET" if route == "/health" else "POST",
            m.HTTP_ROUTE: route,
            m.HTTP_RESPONSE_STATUS_CODE: status,
        }
        if status >= 500:
            attrs[m.ERROR_TYPE] = str(status)
        with self.tracer.start_as_current_span(f"POST {route}"):
            self.meters.http_duration.record(seconds, attrs)

    def prediction(self, model: str, *, cache_hit: bool, feedback: bool) -> None:
        """Record one prediction, its cache lookup and maybe its ground truth."""
        version, base_mae, _r2, typical, err_scale = MODELS.get(model, ("1", 1.0, 0.5, 10.0, 1.0))
        attrs = {m.MODEL_NAME: model, m.MODEL_VERSION: version}
        self.meters.predictions.add(1, {**attrs, m.PREDICTION_CACHE_HIT: cache_hit})
        self.meters.cache_lookups.add(
            1, {m.CACHE_RESULT: "hit" if cache_hit else "miss", m.MODEL_NAME: model}
        )
        if not cache_hit:
            self.cache_entries += 1
            self.meters.inference_duration.record(self.rng.lognormvariate(-4.6, 0.4), attrs)
        self.meters.confidence.record(min(1.0, max(0.0, self.rng.gauss(0.82, 0.08))), attrs)
        predicted = max(0.0, self.rng.gauss(typical, typical * 0.3))
        self.meters.prediction_value.record(predicted, attrs)
        if feedback:
            error = self.rng.gauss(0, err_scale * 1.25)
            actual = predicted + error
            self.meters.feedback.add(1, attrs)
            self.meters.error_absolute.add(abs(error), attrs)
            self.meters.error_squared.add(error * error, attrs)
            self.meters.actual.add(actual, attrs)
            self.meters.actual_squared.add(actual * actual, attrs)
        self.meters.baseline_mae.set(base_mae, attrs)
        self.meters.baseline_r2.set(MODELS.get(model, (0, 0, 0.5))[2], attrs)

    def interval(self, seconds: float = 5.0) -> None:
        """Generate one export interval of traffic ending at `now`."""
        phase = (self.now - self.started) / 600.0
        per_min = 110 + 35 * math.sin(phase) + self.rng.uniform(-8, 8)
        n = max(1, round(per_min * seconds / 60))
        slow = 1.0 + 0.35 * max(0.0, math.sin(phase * 1.7))
        for _ in range(n):
            model = "result" if self.rng.random() < 0.6 else "duration"
            route = f"/predict/{'results' if model == 'result' else 'duration'}"
            failed = self.rng.random() < 0.012 + 0.01 * max(0.0, math.sin(phase * 2.3))
            latency = self.rng.lognormvariate(math.log(0.085 * slow), 0.55)
            self.request(route, latency, 500 if failed else 200)
            if not failed:
                hit = self.rng.random() < 0.72
                self.prediction(model, cache_hit=hit, feedback=self.rng.random() < 0.35)
        self.request("/health", self.rng.uniform(0.0008, 0.002))
        if self.extra_model:
            self.prediction(self.extra_model, cache_hit=False, feedback=True)
        self.ticks += 1
        if self.extra_route and self.ticks % 6 == 1:
            # Slow, so its exemplar is among the slowest and its route shows in the page.
            self.request(self.extra_route, 2.5)

    def tick(self, seconds: float = 5.0, *, at: float | None = None) -> None:
        """Advance the clock by one export interval (or to `at`), generate traffic, export."""
        self.now = at if at is not None else self.now + seconds
        with sdk_clock(self):
            self.interval(seconds)
            assert self.provider.force_flush(10_000), "export failed"

    def backfill(self, minutes: float, seconds: float = 5.0) -> None:
        """Send `minutes` of history ending now (fast: the SDK clock is simulated)."""
        self.now = time.time() - minutes * 60
        self.started = self.now
        while self.now + seconds <= time.time():
            self.tick(seconds)

    def shutdown(self) -> None:
        self.provider.shutdown()
