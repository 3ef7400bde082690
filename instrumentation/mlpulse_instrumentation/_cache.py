"""Cache telemetry: lookups by result, and entries/bytes read at collection time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from mlpulse_instrumentation._hotpath import BufferedSum, SumHandle
from mlpulse_instrumentation._meters import (
    CACHE_ENTRIES,
    CACHE_RESULT,
    CACHE_SIZE,
    CACHE_STALE_ENTRIES,
    MODEL_NAME,
)

_log = logging.getLogger(__name__)

#: Returns (entries, size in bytes) of one cache.
SizeSource = Callable[[], tuple[int, int]]
#: Returns, per model, the entries cached by a model version that no longer serves.
StaleSource = Callable[[], Mapping[str, int]]

_MAX_BOUND_MODELS = 256


class BoundCache:
    """The lookup recorder of one model's cache; get it with `CacheTelemetry.bind`."""

    __slots__ = ("_hit", "_miss", "model")

    def __init__(self, lookups: BufferedSum, model: str) -> None:
        self.model = model
        self._hit: SumHandle = lookups.bind({CACHE_RESULT: "hit", MODEL_NAME: model})
        self._miss: SumHandle = lookups.bind({CACHE_RESULT: "miss", MODEL_NAME: model})

    def record_lookup(self, *, hit: bool) -> None:
        """Count one lookup as a hit or a miss."""
        (self._hit if hit else self._miss).add(1)


class CacheTelemetry:
    """Records prediction-cache lookups and reports the cache's size.

    Count every lookup with `record_lookup` (or a recorder from `bind`); hand the cache's
    size to `track` once and it is read at each metric collection, costing nothing per
    request::

        telemetry.cache.track(lambda: (len(cache), cache.size_bytes))
        telemetry.cache.record_lookup("result", hit=True)
    """

    __slots__ = ("_bound", "_lock", "_lookups", "_sources", "_stale")

    def __init__(self, meter: Meter, lookups: BufferedSum) -> None:
        self._lookups = lookups
        self._sources: list[SizeSource] = []
        self._stale: list[StaleSource] = []
        self._lock = threading.Lock()
        self._bound: dict[str, BoundCache] = {}
        meter.create_observable_gauge(
            CACHE_ENTRIES, [self._observe_entries], "{entry}", "Entries in the cache."
        )
        meter.create_observable_gauge(
            CACHE_SIZE, [self._observe_size], "By", "Estimated size of the cache in bytes."
        )
        meter.create_observable_gauge(
            CACHE_STALE_ENTRIES,
            [self._observe_stale],
            "{entry}",
            "Entries cached by a model version that no longer serves (never hit again).",
        )

    def bind(self, model: str) -> BoundCache:
        """The lookup recorder of `model`'s cache (the same object for the same model)."""
        bound = self._bound.get(model)
        if bound is None:
            bound = BoundCache(self._lookups, model)
            with self._lock:
                if len(self._bound) < _MAX_BOUND_MODELS:
                    bound = self._bound.setdefault(model, bound)
        return bound

    def record_lookup(self, model: str, *, hit: bool) -> None:
        """Count one lookup of `model`'s cache as a hit or a miss."""
        self.bind(model).record_lookup(hit=hit)

    def track(self, source: SizeSource) -> None:
        """Report `source()` = (entries, bytes) as the cache gauges from now on."""
        with self._lock:
            self._sources.append(source)

    def track_stale(self, source: StaleSource) -> None:
        """Report `source()` = {model: stale entries} as ``ml.cache.stale_entries``."""
        with self._lock:
            self._stale.append(source)

    def untrack(self, source: SizeSource) -> None:
        """Stop reporting a source given to `track`."""
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def _totals(self) -> tuple[int, int] | None:
        with self._lock:
            sources = list(self._sources)
        if not sources:
            return None
        entries = size = 0
        for source in sources:
            try:
                source_entries, source_size = source()
            except Exception:  # a broken callback must not break the whole collection
                _log.exception("cache size source failed")
                continue
            entries += source_entries
            size += source_size
        return entries, size

    def _observe_entries(self, _options: CallbackOptions) -> Iterable[Observation]:
        totals = self._totals()
        return () if totals is None else (Observation(totals[0]),)

    def _observe_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        totals = self._totals()
        return () if totals is None else (Observation(totals[1]),)

    def _observe_stale(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sources = list(self._stale)
        per_model: dict[str, int] = {}
        for source in sources:
            try:
                counts = source()
            except Exception:  # a broken callback must not break the whole collection
                _log.exception("stale cache source failed")
                continue
            for model, n in counts.items():
                per_model[model] = per_model.get(model, 0) + n
        return [Observation(n, {MODEL_NAME: model}) for model, n in sorted(per_model.items())]
