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

from mlpulse.backend.query.signals import (
    BASELINE_MAE,
    LABEL_KEYS,
    PREDICTIONS,
    choose_resolution,
    evaluate,
)
from mlpulse.backend.storage.base import MetricStore

#: How far before a range the first report of a version is looked for, so a version that
#: was already serving when the range starts is not taken for a new one.
LOOKBACK_S = 86_400.0
FINEST = 10  # s: the finest stored resolution
#: A version that served nothing for this long while a newer one of its model served is
#: retired: it no longer serves, so its alerts resolve (see `retired_versions`).
RETIRED_AFTER_S = 60.0


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


def retired_versions(
    store: MetricStore,
    now: float,
    filters: Mapping[str, str] | None = None,
    idle_s: float | None = None,
) -> dict[tuple[str, str], str]:
    """(model, version) -> the version that replaced it, for every version that served
    no prediction in the last `idle_s` while a version of the same model first seen
    after it did (a retrain switched over). A version still serving somewhere (a rolling
    deploy) is not retired."""
    idle = RETIRED_AFTER_S if idle_s is None else idle_s
    recent = evaluate(store, "prediction_count", now - idle, now, ["model", "version"], filters)
    serving = {(v.labels["model"], v.labels["version"]) for v in recent if (v.value or 0) > 0}
    first = first_seen(store, now - 3600.0, now, filters)
    out: dict[tuple[str, str], str] = {}
    for (model, version), seen in first.items():
        if (model, version) in serving:
            continue
        newer = [
            (t, v) for (m, v), t in first.items()
            if m == model and t > seen and (m, v) in serving
        ]  # fmt: skip
        if newer:
            out[(model, version)] = max(newer)[1]
    return out
