"""Predictions waiting for their ground truth, bounded in memory and in time.

Ground truth is bounded too, per model (`ACTUAL_RANGES`): a value outside its model's
range is refused before the prediction counts as answered, so one absurd `actual` (say
1e308) can neither overflow the error sums (Σe², Σy²) nor dilute the MAE.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# The plausible range of each model's target: a result count (a scan covers at most
# 10 000 symbols; noise can exceed the noise-free count) and a scan duration in seconds
# (a week at most). Squares of these stay far below a double's range over any count.
ACTUAL_RANGES: dict[str, tuple[float, float]] = {
    "result": (0.0, 1e6),
    "duration": (0.0, 7 * 86_400.0),
}
MAX_ACTUAL = max(high for _, high in ACTUAL_RANGES.values())  # the schema's bound


class ActualOutOfRange(ValueError):
    """The ground truth lies outside its model's plausible range."""


def check_actual(model_name: str, actual: float) -> None:
    """Raise ActualOutOfRange unless `actual` is finite and within the model's range."""
    low, high = ACTUAL_RANGES.get(model_name, (0.0, MAX_ACTUAL))
    if not (math.isfinite(actual) and low <= actual <= high):
        raise ActualOutOfRange(
            f"actual must be within [{low:g}, {high:g}] for model {model_name!r}"
        )


_EARLIEST_ID_TIME = 1_577_836_800.0  # 2020-01-01: older "times" are not ours


def new_prediction_id(now: float | None = None) -> str:
    """A 32-hex-digit id that starts with its issue time in ms (as UUIDv7 does).

    The time in the id lets feedback for an expired prediction be told apart from an id
    that was never issued, without remembering expired ids.
    """
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms & (2**48 - 1):012x}{secrets.token_hex(10)}"


def prediction_time(prediction_id: str) -> float | None:
    """The issue time (epoch s) of an id made by `new_prediction_id`, else None.

    Ids that are not 32 hex digits, or whose time is before 2020 (never issued by
    `new_prediction_id`), have none.
    """
    if len(prediction_id) != 32:
        return None
    try:
        issued = int(prediction_id[:12], 16) / 1000.0
    except ValueError:
        return None
    return issued if issued >= _EARLIEST_ID_TIME else None


@dataclass(frozen=True, slots=True)
class PendingPrediction:
    """What is needed to score a prediction once its actual value arrives.

    `created_at` is on the store's (monotonic) clock; `predicted_at` is the wall time.
    """

    model_name: str
    model_version: str
    predicted: float
    created_at: float
    predicted_at: float = 0.0
    cache_hit: bool = False


class UnknownPrediction(LookupError):
    """No pending prediction has this id: never issued, expired or evicted."""


class PredictionExpired(LookupError):
    """The prediction is older than the pending window: its feedback cannot be scored."""

    def __init__(self, prediction_id: str, age_s: float, ttl_s: float) -> None:
        super().__init__(prediction_id)
        self.age_s = age_s
        self.ttl_s = ttl_s


class FeedbackAlreadyReceived(LookupError):
    """The prediction was already scored; a second actual is refused."""


@dataclass(frozen=True, slots=True)
class FeedbackStats:
    """Sizes and counters of the store."""

    pending: int
    answered: int
    max_pending: int
    ttl_s: float
    received: int
    duplicates: int
    unknown: int
    evicted: int
    expired: int


class FeedbackStore:
    """Remembers served predictions until their ground truth arrives.

    At most `max_pending` ids are kept (oldest dropped first) for at most `ttl_s`.
    An answered id stays known until it expires, so a second answer is refused rather
    than counted twice::

        store = FeedbackStore(max_pending=10_000, ttl_s=3600)
        store.add("id1", PendingPrediction("result", "v1", 12.0, created_at=0.0))
        store.resolve("id1")  # -> the PendingPrediction; again -> FeedbackAlreadyReceived
    """

    def __init__(
        self, *, max_pending: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_pending <= 0 or ttl_s <= 0:
            raise ValueError("max_pending and ttl_s must be positive")
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self._clock = clock
        # id -> (prediction, expires_at, answered); insertion order = age.
        self._items: OrderedDict[str, tuple[PendingPrediction, float, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self._answered = 0
        self.received = 0
        self.duplicates = 0
        self.unknown = 0
        self.evicted = 0
        self.expired = 0

    def add(self, prediction_id: str, prediction: PendingPrediction) -> None:
        """Remember a served prediction under its id."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            while len(self._items) >= self.max_pending:
                _, (_, _, answered) = self._items.popitem(last=False)
                self._answered -= answered
                self.evicted += 1
            self._items[prediction_id] = (prediction, now + self.ttl_s, False)

    def resolve(self, prediction_id: str, actual: float | None = None) -> PendingPrediction:
        """Mark `prediction_id` answered and return its prediction.

        Raises PredictionExpired (an id whose issue time is older than `ttl_s`),
        UnknownPrediction or FeedbackAlreadyReceived; with `actual`, also
        ActualOutOfRange (and the prediction stays pending, to be answered correctly).
        """
        with self._lock:
            self._expire(self._clock())
            item = self._items.get(prediction_id)
            if item is None:
                self.unknown += 1
                issued = prediction_time(prediction_id)
                age = time.time() - issued if issued is not None else 0.0
                if issued is not None and age > self.ttl_s:
                    raise PredictionExpired(prediction_id, age, self.ttl_s)
                raise UnknownPrediction(prediction_id)
            prediction, expires_at, answered = item
            if answered:
                self.duplicates += 1
                raise FeedbackAlreadyReceived(prediction_id)
            if actual is not None:
                check_actual(prediction.model_name, actual)
            self._items[prediction_id] = (prediction, expires_at, True)
            self._answered += 1
            self.received += 1
            return prediction

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> FeedbackStats:
        """Return a snapshot of sizes and counters."""
        with self._lock:
            self._expire(self._clock())
            return FeedbackStats(
                pending=len(self._items) - self._answered,
                answered=self._answered,
                max_pending=self.max_pending,
                ttl_s=self.ttl_s,
                received=self.received,
                duplicates=self.duplicates,
                unknown=self.unknown,
                evicted=self.evicted,
                expired=self.expired,
            )

    def _expire(self, now: float) -> None:
        # Same TTL for every id, so the oldest entries expire first.
        items = self._items
        while items:
            key, (_, expires_at, answered) = next(iter(items.items()))
            if expires_at > now:
                return
            del items[key]
            self._answered -= answered
            self.expired += 1
