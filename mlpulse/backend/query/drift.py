"""Distribution drift without labels: PSI and Jensen-Shannon between live and reference.

Both sides are stored histograms of the same instrument kind, so they share their bins:

- base-2 exponential histograms (predicted values, input features) are brought to one
  common scale, at most `DRIFT_SCALE` (bucket i covers (2^i, 2^(i+1)] at scale 0): a
  histogram at any finer scale downscales to it exactly, so any window and any merge of
  instances gives the same bins;
- explicit histograms (confidence) use their bucket bounds, which are the same for the
  live instrument and the reference (one boundary list, `CONFIDENCE_BOUNDARIES`).

The reference a model version publishes (its training holdout) is used as proportions,
so how many copies of it landed in the store (re-publications, several instances) does
not matter. When a window holds predictions of several versions, the expected
distribution is the mixture of their references weighted by each version's share of
the window's predictions.

PSI = Σ (p_i - q_i) · ln(p_i / q_i) over the union of bins, p the live and q the
reference proportions; an empty bin's proportion is taken as `EPSILON` inside the
logarithm only, so every term is finite and ≥ 0 (a value outside the reference's range
lands in a bin the reference never saw and counts as drift). The usual reading: < 0.1
stable, 0.1-0.25 moderate, > 0.25 significant. The Jensen-Shannon distance is
`scipy.spatial.distance.jensenshannon(p, q, base=2)`, on [0, 1], with no epsilon; it is
computed here from `scipy.special.rel_entr` as scipy does, because importing
`scipy.spatial` costs the backend ~12 MiB more resident memory than `scipy.special`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from mlpulse.backend.storage.aggregate import Aggregate, ExpBuckets, downscale

#: The finest exponential scale drift is measured at: bins of a factor of 2. Coarse on
#: purpose: with a few hundred predictions per window, finer bins make PSI mostly
#: sampling noise (its bias grows with the number of occupied bins over the sample size).
DRIFT_SCALE = 0
#: The proportion an empty bin counts as inside PSI's logarithm.
EPSILON = 1e-4

BinKey = tuple[str, float]


@dataclass(frozen=True, slots=True)
class Drift:
    """PSI and JS distance of a live histogram against its reference, and the sizes."""

    psi: float
    js: float
    live_count: float
    reference_count: float


def _exp_scale(aggs: Iterable[Aggregate]) -> int:
    scales = [a.exponential.scale for a in aggs if a.exponential is not None]
    return min([DRIFT_SCALE, *scales])


def histogram_bins(agg: Aggregate, scale: int) -> dict[BinKey, float]:
    """Counts per bin of one histogram aggregate (exponential ones at `scale`)."""
    out: dict[BinKey, float] = {}
    if agg.exponential is not None:
        h: ExpBuckets = downscale(agg.exponential, scale)
        if h.zero_count:
            out[("zero", 0.0)] = float(h.zero_count)
        for i, c in enumerate(h.pos_counts):
            if c:
                out[("pos", float(h.pos_offset + i))] = float(c)
        for i, c in enumerate(h.neg_counts):
            if c:
                out[("neg", float(h.neg_offset + i))] = float(c)
    elif agg.explicit is not None:
        bounds = (*agg.explicit.bounds, float("inf"))
        for upper, c in zip(bounds, agg.explicit.counts, strict=False):
            if c:
                out[("le", upper)] = out.get(("le", upper), 0.0) + float(c)
    return out


def _add(into: dict[BinKey, float], bins: Mapping[BinKey, float], weight: float = 1.0) -> None:
    for key, c in bins.items():
        into[key] = into.get(key, 0.0) + c * weight


def psi(observed: np.ndarray, expected: np.ndarray) -> float:
    """PSI between two count (or proportion) vectors over the same bins."""
    p = observed / observed.sum()
    q = expected / expected.sum()
    return float(np.sum((p - q) * np.log(np.maximum(p, EPSILON) / np.maximum(q, EPSILON))))


def js_distance(observed: np.ndarray, expected: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, on [0, 1]) between two count vectors."""
    p = observed / observed.sum()
    q = expected / expected.sum()
    m = (p + q) / 2.0
    from scipy.special import rel_entr  # on first use: ~26 MiB resident (see signals.py)

    divergence = float(np.sum(rel_entr(p, m) + rel_entr(q, m))) / 2.0 / np.log(2.0)
    return float(np.sqrt(max(divergence, 0.0)))


def drift(
    live: Mapping[str, list[Aggregate]], reference: Mapping[str, list[Aggregate]]
) -> Drift | None:
    """Drift of live histograms against references, both keyed by model version.

    Versions with live data but no reference are left out; None when none is left.
    """
    versions = [v for v, aggs in live.items() if aggs and reference.get(v)]
    every = [a for v in versions for a in (*live[v], *reference[v])]
    scale = _exp_scale(every)
    observed: dict[BinKey, float] = {}
    expected: dict[BinKey, float] = {}
    live_total = reference_total = 0.0
    for version in versions:
        seen: dict[BinKey, float] = {}
        for agg in live[version]:
            _add(seen, histogram_bins(agg, scale))
        ref: dict[BinKey, float] = {}
        for agg in reference[version]:
            _add(ref, histogram_bins(agg, scale))
        n, m = sum(seen.values()), sum(ref.values())
        if n <= 0 or m <= 0:
            continue
        _add(observed, seen)
        _add(expected, ref, n / m)  # the reference's shape at this version's volume
        live_total += n
        reference_total += m
    if live_total <= 0:
        return None
    keys = sorted(set(observed) | set(expected))
    obs = np.array([observed.get(k, 0.0) for k in keys])
    exp = np.array([expected.get(k, 0.0) for k in keys])
    return Drift(psi(obs, exp), js_distance(obs, exp), live_total, reference_total)
