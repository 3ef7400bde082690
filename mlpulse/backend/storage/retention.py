"""Retention: drop buckets older than each resolution keeps, and old delta intervals."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from mlpulse.backend.ingest.temporality import LATE_DELTA_WINDOW_S
from mlpulse.backend.storage.base import MetricStore

log = logging.getLogger(__name__)


def apply_retention(
    store: MetricStore,
    keep_seconds: Mapping[int, int],
    now: float | None = None,
    delta_window_s: float = LATE_DELTA_WINDOW_S,
) -> dict[int, int]:
    """Delete, per resolution, buckets that start before now - its retention; return counts.

    Series left without any bucket are forgotten too (key 0 of the result): a producer
    that restarts with a new `service.instance.id` leaves its old series behind, and they
    must not count against the series limit forever. Recorded delta intervals older than
    `delta_window_s` are forgotten as well (logged, not in the result): ingest no longer
    takes late delta points that old, so their records are not needed to refuse replays.
    """
    now = time.time() if now is None else now
    deleted = {res: store.delete_before(res, now - keep) for res, keep in keep_seconds.items()}
    deleted[0] = store.delete_orphan_series()
    intervals = store.delete_delta_intervals_before(now - delta_window_s)
    if intervals:
        log.info("retention forgot %d delta interval(s)", intervals)
    return deleted
