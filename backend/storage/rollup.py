"""Buckets and rollups: align times to resolutions and merge aggregates into them.

Ingest merges each accepted delta into its 10 s, 1 min and 1 h bucket in the same
transaction (`fan_out`), so the coarse resolutions are exact rollups of the fine one
whenever a point arrives, late ones included. The query layer uses `regroup` to merge
stored buckets into the steps a chart asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from backend.storage.aggregate import Aggregate, merge, merge_all
from backend.storage.base import RESOLUTIONS


def bucket_start(time_s: float, resolution: int) -> int:
    """Return the start (epoch seconds) of the bucket of `resolution` holding `time_s`."""
    return int(time_s // resolution) * resolution


def fan_out(
    rows: MutableMapping[tuple[int, int, int], Aggregate],
    series_id: int,
    time_ns: int,
    delta: Aggregate,
    max_exemplars: int,
    resolutions: Iterable[int] = RESOLUTIONS,
) -> None:
    """Merge `delta` into its bucket at every resolution, in `rows`."""
    t = time_ns / 1e9
    for res in resolutions:
        key = (res, series_id, bucket_start(t, res))
        cur = rows.get(key)
        rows[key] = delta.copy() if cur is None else merge(cur, delta, max_exemplars)


def regroup(
    buckets: Iterable[tuple[int, int, Aggregate]],
    step: int,
    origin: int = 0,
    max_exemplars: int = 4,
) -> dict[tuple[int, int], Aggregate]:
    """Merge (series id, bucket start, aggregate) rows into `step`-second windows.

    Windows start at `origin + k * step`; the result maps (series id, window start) to
    the merged aggregate.
    """
    groups: dict[tuple[int, int], list[Aggregate]] = {}
    for sid, ts, agg in buckets:
        groups.setdefault((sid, origin + ((ts - origin) // step) * step), []).append(agg)
    return {key: merge_all(aggs, max_exemplars) for key, aggs in groups.items()}
