"""The "rejected points by reason" self-metric: refused OTLP points, counted by code.

Each export gets a fresh tally that `flatten` fills with its refusals by reason code
(`mlpulse.backend.ingest.points.REASON_CODES`); once the export is stored, `settle` adds the
tally to the backend's running totals, counting whatever the request refused beyond
flatten's checks (at storage: the series limit) as `series_limit`:

    tally = rejections_of(app).tally()
    result = ingest(store, request, Limits.from_settings(settings, tally))
    rejections_of(app).settle(tally, result.rejected)

`GET /ingest/rejections` reads the totals. The codes are a fixed set, never derived
from client data, so the metric's cardinality is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI

from mlpulse.backend.ingest.points import REASON_CODES

_CREATE = threading.Lock()


class RejectionCounter:
    """Refused points by reason code since the backend started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.since = time.time()

    def tally(self) -> Counter[str]:
        """Return a fresh per-request tally for `Limits.from_settings`."""
        return Counter()

    def settle(self, tally: Counter[str], rejected: int) -> None:
        """Add one request's tally; refusals flatten did not count are the series limit's."""
        extra = rejected - sum(tally.values())
        with self._lock:
            self._counts.update(tally)
            if extra > 0:
                self._counts["series_limit"] += extra

    def snapshot(self) -> dict[str, Any]:
        """Every reason code with its count (zeros included), the total and since when."""
        with self._lock:
            counts = {code: self._counts.get(code, 0) for code in REASON_CODES}
        return {"since": self.since, "total": sum(counts.values()), "by_reason": counts}


def rejections_of(app: FastAPI) -> RejectionCounter:
    """Return the app's counter, created on first use."""
    counter: RejectionCounter | None = getattr(app.state, "rejections", None)
    if counter is None:
        with _CREATE:
            counter = getattr(app.state, "rejections", None)
            if counter is None:
                counter = app.state.rejections = RejectionCounter()
    return counter
