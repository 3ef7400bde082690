"""One consistent, read-once view of the store for a computation of many signals.

`/metrics/current` and `/metrics/summary` evaluate about 28 signals over one window, and
several read the same metric (six read `http.server.request.duration`, four the model
error sums). `ReadOnce(store)` remembers each window total it reads for the life of one
computation, so each is read and merged once (and every number of the snapshot comes from
the same read); the live pusher's newest steps of every charted signal likewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from mlpulse.backend.storage.aggregate import Aggregate
from mlpulse.backend.storage.base import MetricStore


class ReadOnce:
    """A `MetricStore` wrapper that reads each window total once."""

    def __init__(self, store: MetricStore) -> None:
        self._store = store
        self._totals: dict[tuple[Any, ...], dict[int, Aggregate]] = {}
        self._windows: dict[tuple[Any, ...], dict[tuple[int, int], Aggregate]] = {}

    def window_totals(
        self,
        series_ids: Sequence[int],
        start: float,
        end: float,
        *,
        histograms: bool,
        align: int = 10,
    ) -> dict[int, Aggregate]:
        """Like `MetricStore.window_totals`, remembered for this view."""
        key = (tuple(series_ids), start, end, align)
        for with_hist in (True, histograms):  # a total with histograms serves both
            got = self._totals.get((*key, with_hist))
            if got is not None:
                return got
        got = self._store.window_totals(series_ids, start, end, histograms=histograms, align=align)
        self._totals[(*key, histograms)] = got
        return got

    def windows(
        self,
        series_ids: Sequence[int],
        resolution: int,
        start: float,
        end: float,
        step: int,
        origin: int,
        *,
        histograms: bool,
    ) -> dict[tuple[int, int], Aggregate]:
        """Like `MetricStore.windows`, remembered for this view."""
        key = ("w", tuple(series_ids), resolution, start, end, step, origin)
        for with_hist in (True, histograms):
            got = self._windows.get((*key, with_hist))
            if got is not None:
                return got
        got = self._store.windows(
            series_ids, resolution, start, end, step, origin, histograms=histograms
        )
        self._windows[(*key, histograms)] = got
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def read_once(store: MetricStore) -> MetricStore:
    """Return a view of `store` for one computation (see `ReadOnce`)."""
    return cast(MetricStore, ReadOnce(store))
