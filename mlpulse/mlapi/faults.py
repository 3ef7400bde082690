"""Fault scenarios for the demo, switched on at runtime and stopping by themselves.

| scenario       | effect while active                                              |
|----------------|------------------------------------------------------------------|
| latency-spike  | every prediction waits an extra 400-900 ms                       |
| error-burst    | about 30 % of predictions answer 500                             |
| model-drift    | predicted values are multiplied by 1.6, so MAE rises over baseline |
| cache-flush    | the cache is cleared at start and bypassed, so the hit rate falls |
| cpu-burn       | one background thread per core keeps every core busy             |
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

_log = logging.getLogger(__name__)

ScenarioName = Literal["latency-spike", "error-burst", "model-drift", "cache-flush", "cpu-burn"]
SCENARIO_NAMES: tuple[str, ...] = get_args(ScenarioName)

LATENCY_SPIKE_S = (0.4, 0.9)
ERROR_BURST_SHARE = 0.3
DRIFT_FACTOR = 1.6


@dataclass(frozen=True, slots=True)
class ActiveScenario:
    """A running scenario and its time window (monotonic clock)."""

    name: ScenarioName
    started_at: float
    ends_at: float


class FaultInjector:
    """Holds at most one active scenario and answers the questions the routes ask.

    Starting a scenario replaces the active one. Each query first checks the clock, so a
    scenario ends by itself once its duration has passed::

        faults = FaultInjector(on_cache_flush=cache.clear)
        faults.start("model-drift", duration_s=60)
        faults.drift_factor()  # 1.6 for the next minute, then 1.0
    """

    def __init__(
        self,
        *,
        on_cache_flush: Callable[[], object] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._on_cache_flush = on_cache_flush
        self._clock = clock
        self._rng = rng or random.Random()
        self._active: ActiveScenario | None = None
        self._lock = threading.Lock()
        self._burn_stop: threading.Event | None = None

    def start(self, name: ScenarioName, duration_s: float) -> ActiveScenario:
        """Start `name` for `duration_s` seconds, replacing any active scenario."""
        if name not in SCENARIO_NAMES:
            raise ValueError(f"unknown scenario {name!r}")
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        now = self._clock()
        scenario = ActiveScenario(name=name, started_at=now, ends_at=now + duration_s)
        with self._lock:
            self._stop_burn()
            self._active = scenario
            if name == "cpu-burn":
                self._burn_stop = threading.Event()
                for core in range(os.cpu_count() or 1):
                    threading.Thread(
                        target=_burn_cpu,
                        args=(self._burn_stop, duration_s),
                        name=f"mlapi-cpu-burn-{core}",
                        daemon=True,
                    ).start()
        if name == "cache-flush":
            self._on_cache_flush()
        _log.info("scenario %s started for %.0f s", name, duration_s)
        return scenario

    def stop(self) -> ActiveScenario | None:
        """End the active scenario now; return it (None if none was active)."""
        with self._lock:
            scenario = self.active()
            self._active = None
            self._stop_burn()
        if scenario is not None:
            _log.info("scenario %s stopped", scenario.name)
        return scenario

    def active(self) -> ActiveScenario | None:
        """Return the active scenario, or None once it has run its course."""
        scenario = self._active
        if scenario is not None and self._clock() >= scenario.ends_at:
            self._active = None
            return None
        return scenario

    def remaining_s(self) -> float:
        """Seconds left in the active scenario (0 when none)."""
        scenario = self.active()
        return max(scenario.ends_at - self._clock(), 0.0) if scenario else 0.0

    def _is(self, name: ScenarioName) -> bool:
        # Fast path: no scenario, no clock read.
        return (
            self._active is not None
            and (scenario := self.active()) is not None
            and (scenario.name == name)
        )

    def extra_latency_s(self) -> float:
        """Delay to add to a prediction (latency-spike), else 0."""
        return self._rng.uniform(*LATENCY_SPIKE_S) if self._is("latency-spike") else 0.0

    def should_fail(self) -> bool:
        """Whether this prediction must answer 500 (error-burst)."""
        return self._is("error-burst") and self._rng.random() < ERROR_BURST_SHARE

    def drift_factor(self) -> float:
        """Multiplier applied to predicted values (model-drift), else 1."""
        return DRIFT_FACTOR if self._is("model-drift") else 1.0

    def bypass_cache(self) -> bool:
        """Whether predictions must skip the cache (cache-flush)."""
        return self._is("cache-flush")

    def _stop_burn(self) -> None:
        if self._burn_stop is not None:
            self._burn_stop.set()
            self._burn_stop = None


def _burn_cpu(stop: threading.Event, duration_s: float) -> None:
    """Keep one core busy until stopped or `duration_s` has passed.

    Hashing a large buffer releases the GIL, so one such thread per core loads the whole
    host (a pure-Python loop could never pass one core) and the API keeps serving.
    """
    deadline = time.monotonic() + duration_s
    block = b"\x5a" * (1 << 20)
    while not stop.is_set() and time.monotonic() < deadline:
        hashlib.sha256(block).digest()  # about a millisecond: stop checks stay frequent
