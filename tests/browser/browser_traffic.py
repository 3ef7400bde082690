"""Synthetic but realistic traffic for the dashboard tests, sent with the real OTel SDK.

`Traffic` records what an instrumented mlapi would (requests, predictions, ground truth,
cache lookups, system gauges) with plain SDK instruments named as in docs/contracts.md,
and exports through the SDK's OTLP/HTTP exporter to the backend's `/v1/metrics`.

The SDK stamps points with `time.time_ns()`; `Traffic` points that clock at its own
`now`, so one test can send 30 minutes of history in a few seconds (each `tick()` is one
export interval) and then continue at wall-clock time for live updates.
"""

from __future__ import annotations

import math
import random
import threading
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
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

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
    instance: str = "i-1"
    rate_scale: float = 1.0  # requests per minute relative to mlapi's ~110
    route_prefix: str = ""  # a second service's routes differ: "/v2" + "/predict/results"
    memory_bytes: float = 182e6
    uptime_offset: float = 5400.0  # how long the process ran before the history starts
    extra_model: str | None = None
    extra_route: str | None = None
    seed: int = 7
    now: float = field(default_factory=time.time)
    started: float = 0.0
    rng: random.Random = field(init=False)
    cache_entries: int = 0
    ticks: int = 0
    versions: dict[str, str] = field(default_factory=dict)  # a retrain: {"result": "4"}

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.started = self.now
        exporter = OTLPMetricExporter(endpoint=f"{self.backend_url}/v1/metrics", timeout=10)
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create(
            {
                "service.name": self.service,
                "service.version": "1.4.0",
                "service.instance.id": self.instance,
                "deployment.environment.name": "test",
            }
        )
        # Latency and value histograms are base-2 exponential, confidence explicit (contract).
        exponential = ExponentialBucketHistogramAggregation(max_size=160, max_scale=20)
        views = [
            View(instrument_name=name, aggregation=exponential)
            for name in (
                "http.server.request.duration",
                "ml.model.inference.duration",
                "ml.model.prediction.value",
            )
        ]
        views.append(
            View(
                instrument_name="ml.model.prediction.confidence",
                aggregation=ExplicitBucketHistogramAggregation(
                    boundaries=[round(i * 0.05, 2) for i in range(1, 20)]
                ),
            )
        )
        self.provider = MeterProvider(metric_readers=[self.reader], resource=resource, views=views)
        meter = self.provider.get_meter("mlpulse.test")
        self.http_duration = meter.create_histogram("http.server.request.duration", "s")
        self.predictions = meter.create_counter("ml.model.predictions", "{prediction}")
        self.inference = meter.create_histogram("ml.model.inference.duration", "s")
        self.confidence = meter.create_histogram("ml.model.prediction.confidence", "1")
        self.value = meter.create_histogram("ml.model.prediction.value", "1")
        self.feedback = meter.create_counter("ml.model.feedback", "{feedback}")
        self.err_abs = meter.create_counter("ml.model.error.absolute", "1")
        self.err_sq = meter.create_counter("ml.model.error.squared", "1")
        self.actual = meter.create_up_down_counter("ml.model.actual", "1")
        self.actual_sq = meter.create_counter("ml.model.actual.squared", "1")
        self.baseline_mae = meter.create_gauge("ml.model.baseline.mae", "1")
        self.baseline_r2 = meter.create_gauge("ml.model.baseline.r2", "1")
        self.cache_lookups = meter.create_counter("ml.cache.lookups", "{lookup}")
        meter.create_observable_gauge("ml.cache.entries", [self._cache_entries], "{entry}")
        meter.create_observable_gauge("ml.cache.size", [self._cache_size], "By")
        gauges: dict[str, tuple[str, Any]] = {
            "process.cpu.utilization": ("1", lambda: 0.08 + 0.04 * self.rng.random()),
            "process.memory.usage": ("By", lambda: self.memory_bytes + 4e6 * self.rng.random()),
            "process.uptime": ("s", lambda: self.now - self.started + self.uptime_offset),
            "system.cpu.utilization": ("1", lambda: 0.23 + 0.05 * self.rng.random()),
            "system.memory.utilization": ("1", lambda: 0.41),
        }
        for name, (unit, fn) in gauges.items():
            meter.create_observable_gauge(name, [self._gauge(fn)], unit)
        meter.create_observable_gauge(
            "system.filesystem.utilization",
            [lambda _o: [Observation(0.37, {"system.filesystem.mountpoint": "/"})]],
            "1",
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
            "http.request.method": "GET" if route == "/health" else "POST",
            "http.route": route,
            "http.response.status_code": status,
        }
        if status >= 500:
            attrs["error.type"] = str(status)
        with self.tracer.start_as_current_span(f"POST {route}"):
            self.http_duration.record(seconds, attrs)

    def prediction(self, model: str, *, cache_hit: bool, feedback: bool) -> None:
        """Record one prediction, its cache lookup and maybe its ground truth."""
        version, base_mae, _r2, typical, err_scale = MODELS.get(model, ("1", 1.0, 0.5, 10.0, 1.0))
        version = self.versions.get(model, version)
        attrs = {"ml.model.name": model, "ml.model.version": version}
        self.predictions.add(1, {**attrs, "ml.prediction.cache_hit": cache_hit})
        self.cache_lookups.add(
            1, {"ml.cache.result": "hit" if cache_hit else "miss", "ml.model.name": model}
        )
        if not cache_hit:
            self.cache_entries += 1
            self.inference.record(self.rng.lognormvariate(-4.6, 0.4), attrs)
        self.confidence.record(min(1.0, max(0.0, self.rng.gauss(0.82, 0.08))), attrs)
        predicted = max(0.0, self.rng.gauss(typical, typical * 0.3))
        self.value.record(predicted, attrs)
        if feedback:
            error = self.rng.gauss(0, err_scale * 1.25)
            actual = predicted + error
            self.feedback.add(1, attrs)
            self.err_abs.add(abs(error), attrs)
            self.err_sq.add(error * error, attrs)
            self.actual.add(actual, attrs)
            self.actual_sq.add(actual * actual, attrs)
        self.baseline_mae.set(base_mae, attrs)
        self.baseline_r2.set(MODELS.get(model, (0, 0, 0.5))[2], attrs)

    def interval(self, seconds: float = 5.0) -> None:
        """Generate one export interval of traffic ending at `now`."""
        phase = (self.now - self.started) / 600.0
        per_min = (110 + 35 * math.sin(phase) + self.rng.uniform(-8, 8)) * self.rate_scale
        n = max(1, round(per_min * seconds / 60))
        slow = 1.0 + 0.35 * max(0.0, math.sin(phase * 1.7))
        for _ in range(n):
            model = "result" if self.rng.random() < 0.6 else "duration"
            route = f"{self.route_prefix}/predict/{'results' if model == 'result' else 'duration'}"
            failed = self.rng.random() < 0.012 + 0.01 * max(0.0, math.sin(phase * 2.3))
            latency = self.rng.lognormvariate(math.log(0.085 * slow), 0.55)
            self.request(route, latency, 500 if failed else 200)
            if not failed:
                hit = self.rng.random() < 0.72
                self.prediction(model, cache_hit=hit, feedback=self.rng.random() < 0.35)
        self.request(f"{self.route_prefix}/health", self.rng.uniform(0.0008, 0.002))
        if self.extra_model:
            self.prediction(self.extra_model, cache_hit=False, feedback=True)
        self.ticks += 1
        if self.extra_route and self.ticks % 6 == 1:
            # Slow, so its exemplar is among the slowest and its route shows in the page.
            self.request(self.extra_route, 2.5)

    def tick(
        self, seconds: float = 5.0, *, at: float | None = None, new_models: tuple[str, ...] = ()
    ) -> None:
        """Advance the clock by one export interval (or to `at`), generate traffic, export.

        `new_models` also get a prediction with feedback in this interval (a model the
        page has not seen yet proves a live update unambiguously).
        """
        self.now = at if at is not None else self.now + seconds
        with sdk_clock(self):
            self.interval(seconds)
            for name in new_models:
                self.prediction(name, cache_hit=False, feedback=True)
            assert self.provider.force_flush(10_000), "export failed"

    def backfill(self, minutes: float, seconds: float = 5.0) -> None:
        """Send `minutes` of history ending now (fast: the SDK clock is simulated)."""
        self.now = time.time() - minutes * 60
        self.started = self.now
        while self.now + seconds <= time.time():
            self.tick(seconds)

    def shutdown(self) -> None:
        self.provider.shutdown()


class Fleet:
    """Several `Traffic` producers (services x instances) on one clock.

    `backfill` sends their history interleaved, step by step; `start_live()` then exports
    every `interval` seconds of wall-clock time from a thread (the SDK clock patch is
    process-wide, so one thread ticks them all) until `stop_live()`. `kill(member)` stops
    one producer for good, as a killed process would.
    """

    def __init__(self, members: list[Traffic]) -> None:
        self.members = members
        self.killed: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def running(self) -> list[Traffic]:
        return [m for m in self.members if id(m) not in self.killed]

    def backfill(self, minutes: float, seconds: float = 5.0) -> None:
        start = time.time() - minutes * 60
        for m in self.members:
            m.now = m.started = start
        t = start
        while t + seconds <= time.time():
            t += seconds
            for m in self.running():
                m.tick(seconds, at=t)

    def tick(self) -> None:
        """One export of every running producer, at wall-clock now."""
        with self._lock:
            now = time.time()
            for m in self.running():
                m.tick(max(0.1, now - m.now), at=now)

    def kill(self, member: Traffic) -> float:
        """Stop `member` exporting; return when it last exported."""
        with self._lock:
            self.killed.add(id(member))
            return member.now

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def start_live(self, interval: float = 2.0) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                if not self._paused.is_set():
                    self.tick()

        self._thread = threading.Thread(target=run, name="fleet-live", daemon=True)
        self._thread.start()

    def stop_live(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=20)

    def shutdown(self) -> None:
        self.stop_live()
        for m in self.members:
            m.shutdown()
