"""Retention: drop buckets older than each resolution keeps."""

from __future__ import annotations

import time
from collections.abc import Mapping

from backend.storage.base import MetricStore


def apply_retention(
    store: MetricStore, keep_seconds: Mapping[int, int], now: float | None = None
) -> dict[int, int]:
    """Delete, per resolution, buckets that start before now - its retention; return counts.

    Series left without any bucket are forgotten too (key 0 of the result): a producer
    that restarts with a new `service.instance.id` leaves its old series behind, and they
    must not count against the series limit forever.
    """
    now = time.time() if now is None else now
    deleted = {res: store.delete_before(res, now - keep) for res, keep in keep_seconds.items()}
    deleted[0] = store.delete_orphan_series()
    return deleted
