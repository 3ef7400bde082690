"""Buckets and steps: align times to resolutions; merge buckets into the steps of a query.

Every point lands in its 10 s, 1 min and 1 h bucket (the head, `storage/head.py`), so the
coarse resolutions are exact rollups of the fine one. `regroup` merges buckets into the
steps a chart asks for.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlpulse.backend.storage.aggregate import Aggregate, merge_all


def bucket_start(time_s: float, resolution: int) -> int:
    """Return the start (epoch seconds) of the bucket of `resolution` holding `time_s`."""
    return int(time_s // resolution) * resolution


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
    return {k: v[0] if len(v) == 1 else merge_all(v, max_exemplars) for k, v in groups.items()}
