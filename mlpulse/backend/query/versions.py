"""Model versions as the data shows them: when each version first reported, for markers.

A retrain makes mlapi report a new `ml.model.version` (its baseline gauge at once, then
its predictions), so a version change needs no side channel: the first stored bucket of
a version's series is its marker. Charts draw these as annotations::

    for marker in version_markers(store, now - 3600, now):
        print(marker.model, marker.version, marker.first_seen)

`version_markers` is the one function to reuse for version annotations (the dashboard's
model cards, an annotations API).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from mlpulse.backend.query.signals import BASELINE_MAE, LABEL_KEYS, PREDICTIONS, choose_resolution
from mlpulse.backend.storage.base import MetricStore

#: How far before a range the first report of a version is looked for, so a version that
#: was already serving when the range starts is not taken for a new one.
LOOKBACK_S = 86_400.0
FINEST = 10  # s: the finest stored resolution


@dataclass(frozen=True, slots=True)
class VersionMarker:
    """A model version and the start of the first bucket it reported in (epoch s)."""

    model: str
    version: str
    first_seen: float

    def as_dict(self) -> dict[str, str | float]:
        return {"model": self.model, "version": self.version, "time": self.first_seen}


def first_seen(
    store: MetricStore,
    start: float,
    end: float,
    filters: Mapping[str, str] | None = None,
) -> dict[tuple[str, str], float]:
    """(model, version) -> start of the first bucket it reported in, looking back from
    `end` to `start - LOOKBACK_S` (versions with nothing in that span are left out)."""
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    ids: dict[tuple[str, str], list[int]] = defaultdict(list)
    for metric in (BASELINE_MAE, PREDICTIONS):
        for s in store.series(metric, mapped):
            model = s.attributes.get("ml.model.name")
            version = s.attributes.get("ml.model.version")
            if model and version:
                ids[(model, version)].append(s.id)
    lo = start - LOOKBACK_S
    res = choose_resolution(lo, end)
    out: dict[tuple[str, str], float] = {}
    for key, series_ids in ids.items():
        first = store.first_bucket(series_ids, res, lo, end)
        if first is not None and res > FINEST:
            # Narrow the coarse bucket down to the 10 s one (while those are retained).
            first = store.first_bucket(series_ids, FINEST, first, first + res) or first
        if first is not None:
            out[key] = float(first)
    return out


def version_markers(
    store: MetricStore,
    start: float,
    end: float,
    filters: Mapping[str, str] | None = None,
) -> list[VersionMarker]:
    """Versions first seen in [start, end), oldest first: the markers of a chart."""
    res = choose_resolution(start - LOOKBACK_S, end)
    out = [
        VersionMarker(model, version, t)
        for (model, version), t in first_seen(store, start, end, filters).items()
        if start - res < t < end
    ]
    return sorted(out, key=lambda m: (m.first_seen, m.model, m.version))
