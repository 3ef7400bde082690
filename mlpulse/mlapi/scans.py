"""The synthetic world of market scans: features, ground truth and the request mix.

A scan runs `filter_count` filters and `indicator_count` indicators over `symbol_count`
symbols and `lookback_days` of bars at a timeframe. The *result* target is how many
symbols pass; the *duration* target is how long the scan takes in seconds. Both carry
multiplicative noise. Pure numpy: the load generator draws requests and ground truth from
here without importing scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ModelName = Literal["result", "duration"]
MODEL_NAMES: tuple[ModelName, ...] = ("result", "duration")

#: Bar length of each timeframe, in minutes.
TIMEFRAME_MINUTES: dict[str, int] = {
    "1m": 1,
    "5m": 5,
    "15m": 15,
    "1h": 60,
    "4h": 240,
    "1d": 1440,
    "1w": 10080,
}
FEATURE_NAMES = (
    "symbol_count",
    "lookback_days",
    "filter_count",
    "indicator_count",
    "timeframe_minutes_log",
    "market_hours",
)
_TRADING_MINUTES_PER_DAY = 390
_MAX_BARS = 50_000


@dataclass(frozen=True, slots=True)
class ScanFeatures:
    """The inputs of a scan, as the models see them."""

    symbol_count: int
    lookback_days: int
    filter_count: int
    indicator_count: int
    timeframe: str
    market_hours: bool

    def vector(self) -> tuple[float, ...]:
        """Return the numeric feature vector, in FEATURE_NAMES order."""
        return (
            float(self.symbol_count),
            float(self.lookback_days),
            float(self.filter_count),
            float(self.indicator_count),
            math.log(TIMEFRAME_MINUTES[self.timeframe]),
            1.0 if self.market_hours else 0.0,
        )


def expected_result_count(f: ScanFeatures) -> float:
    """Noise-free number of symbols passing the scan's filters."""
    pass_rate = 0.6 * math.exp(-0.28 * f.filter_count)
    pass_rate *= 1.0 + 0.03 * f.indicator_count
    pass_rate *= 1.0 + 0.05 * math.log10(f.lookback_days)
    pass_rate *= 1.15 if f.market_hours else 1.0
    return f.symbol_count * min(pass_rate, 1.0)


def expected_duration_s(f: ScanFeatures) -> float:
    """Noise-free scan duration in seconds."""
    minutes = TIMEFRAME_MINUTES[f.timeframe]
    bars_per_day = _TRADING_MINUTES_PER_DAY / minutes if minutes < 1440 else 1440 / minutes
    bars = min(f.lookback_days * bars_per_day, _MAX_BARS)
    work = f.symbol_count * bars * (1.0 + 0.25 * f.indicator_count + 0.05 * f.filter_count)
    duration = 0.05 + 4e-8 * work
    return duration * (1.25 if f.market_hours else 1.0)


def simulate_actual(model: ModelName, features: ScanFeatures, rng: np.random.Generator) -> float:
    """Draw a realistic ground-truth value for a scan (what the loadgen reports back)."""
    if model == "result":
        return float(round(expected_result_count(features) * rng.lognormal(0.0, 0.25)))
    return float(expected_duration_s(features) * rng.lognormal(0.0, 0.2))


#: The request mix: an intraday scanner over a universe of a few hundred symbols. The
#: ranges are narrow on purpose: the targets are multiplicative, so wider ranges make
#: |error| so heavy-tailed that a 15-minute MAE is mostly sampling noise, and a 20 %
#: degradation alert could not tell drift from chance.
_REQUEST_TIMEFRAMES = ("5m", "15m", "1h")


def random_features(rng: np.random.Generator) -> ScanFeatures:
    """Draw a scan from the request distribution the models are trained on."""
    return ScanFeatures(
        symbol_count=round(math.exp(rng.uniform(math.log(100), math.log(1000)))),
        lookback_days=round(math.exp(rng.uniform(math.log(30), math.log(365)))),
        filter_count=int(rng.integers(1, 9)),
        indicator_count=int(rng.integers(1, 13)),
        timeframe=_REQUEST_TIMEFRAMES[int(rng.integers(0, len(_REQUEST_TIMEFRAMES)))],
        market_hours=bool(rng.random() < 0.4),
    )


def representative_scans(n: int, rng: np.random.Generator) -> list[ScanFeatures]:
    """`n` scans from the request distribution whose categorical features (timeframe,
    market hours) have exactly its shares, in an interleaved order.

    A small pool of scans drawn at random can be far off the distribution by chance
    (125 of 300 draws on one timeframe instead of 100): a load generator that repeats
    such a pool would send traffic that drifted from what the models were trained on.
    """
    scans = []
    for i in range(n):
        scan = random_features(rng)
        timeframe = _REQUEST_TIMEFRAMES[i % len(_REQUEST_TIMEFRAMES)]
        market_hours = (i * 2) % 5 < 2  # 2 in 5: the 40 % of random_features
        scans.append(
            ScanFeatures(
                symbol_count=scan.symbol_count,
                lookback_days=scan.lookback_days,
                filter_count=scan.filter_count,
                indicator_count=scan.indicator_count,
                timeframe=timeframe,
                market_hours=market_hours,
            )
        )
    return scans


def make_dataset(
    model: ModelName, n_samples: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return a deterministic (X, y) of `n_samples` synthetic scans for `model`."""
    rng = np.random.default_rng(seed)
    rows = []
    targets = []
    for _ in range(n_samples):
        features = random_features(rng)
        rows.append(features.vector())
        targets.append(simulate_actual(model, features, rng))
    return np.asarray(rows, dtype=np.float64), np.asarray(targets, dtype=np.float64)
