"""Cache telemetry: lookups by result, and entries/bytes read at collection time."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from instrumentation._aggregate import FOLD_THRESHOLD, SumTable
from instrumentation._meters import CACHE_RESULT, MODEL_NAME

_log = logging.getLogger(__name__)

#: Returns (entries, size in bytes) of one cache.
SizeSource = Callable[[], tuple[int, int]]

_MAX_CACHED_ATTRIBUTE_SETS = 256


class CacheTelemetry:
    """Records prediction-cache lookups and reports the cache's size.

    Count every lookup with `record_lookup`; hand the cache's size to `track` once and
    it is read at each metric collection, costing nothing per request::

        telemetry.cache.track(lambda: (len(cache), cache.size_bytes))
        telemetry.cache.record_lookup("result", hit=True)
    """

    __slots__ = ("_buffers", "_lock", "_lookups", "_sources")

    def __init__(self) -> None:
        self._lookups: SumTable | None = None
        self._sources: list[SizeSource] = []
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, bool], deque[float]] = {}

    def bind(self, lookups: SumTable) -> None:
        """Attach the lookup counter (done by instrument_app)."""
        self._lookups = lookups

    def record_lookup(self, model: str, *, hit: bool) -> None:
        """Count one lookup of `model`'s cache as a hit or a miss."""
        buffer = self._buffers.get((model, hit))
        if buffer is None:
            if self._lookups is None:
                return
            key = (model, hit)
            attrs = {CACHE_RESULT: "hit" if hit else "miss", MODEL_NAME: model}
            if len(self._buffers) >= _MAX_CACHED_ATTRIBUTE_SETS:
                self._lookups.add(1, key, attrs)
                return
            buffer = self._buffers[key] = self._lookups.buffer(key, attrs)
        buffer.append(1)
        if len(buffer) > FOLD_THRESHOLD and self._lookups is not None:
            self._lookups.fold_pending()

    def track(self, source: SizeSource) -> None:
        """Report `source()` = (entries, bytes) as the cache gauges from now on."""
        with self._lock:
            self._sources.append(source)

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

    def observe_entries(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Gauge callback: entries in the tracked caches."""
        totals = self._totals()
        return () if totals is None else (Observation(totals[0]),)

    def observe_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Gauge callback: bytes in the tracked caches."""
        totals = self._totals()
        return () if totals is None else (Observation(totals[1]),)
