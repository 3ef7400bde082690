"""Histogram merging and percentiles against exact computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpulse.backend.query.histograms import (
    exp_quantile,
    explicit_quantile,
    relative_error,
)
from mlpulse.backend.storage.aggregate import (
    Aggregate,
    Exemplar,
    ExpBuckets,
    ExplicitBuckets,
    downscale,
    dump_hist,
    keep_exemplars,
    load_hist,
    merge,
    merge_all,
    merge_exp,
)


def _exp_from(values: np.ndarray, scale: int) -> ExpBuckets:
    """Bucket values exactly as the spec defines: index = ceil(log_base(v)) - 1."""
    idx = np.ceil(np.log2(values) * 2.0**scale).astype(int) - 1
    lo, hi = int(idx.min()), int(idx.max())
    counts = np.bincount(idx - lo, minlength=hi - lo + 1)
    return ExpBuckets(scale, 0, 0.0, lo, [int(c) for c in counts])


def test_merge_at_different_scales_equals_bucketing_the_union() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(0, 1, 5000), rng.lognormal(1, 0.3, 5000)
    merged = merge_exp(_exp_from(a, 5), _exp_from(b, 2))
    assert merged == _exp_from(np.concatenate([a, b]), 2)
    assert downscale(_exp_from(a, 5), 2) == _exp_from(a, 2)


@pytest.mark.parametrize("scale", [0, 2, 4, 6])
def test_exp_quantile_bounds_and_relative_error(scale: int) -> None:
    rng = np.random.default_rng(scale)
    xs = rng.lognormal(-1, 1.2, 20_000)
    h = _exp_from(xs, scale)
    ordered = np.sort(xs)
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        # The k-th smallest, k = ceil(q n) computed without float noise (0.999 * 20000
        # is 19980.000000000004 in floating point, which numpy's inverted_cdf rounds up).
        exact = float(ordered[max(1, math.ceil(round(q * len(xs), 6))) - 1])
        est = exp_quantile(h, q)
        assert est is not None and est.upper is not None
        assert est.lower < exact <= est.upper * (1 + 1e-12)
        assert abs(est.value - exact) / exact <= relative_error(scale) + 1e-12


def test_exp_quantile_negative_and_zero_buckets() -> None:
    # 2 values in (-4, -2], 1 zero, 1 in (2, 4]: scale 0.
    h = ExpBuckets(0, 1, 0.0, 1, [1], 1, [2])
    low = exp_quantile(h, 0.25)
    assert low is not None and (low.lower, low.upper) == (-4.0, -2.0)
    assert -4 < low.value < -2
    mid = exp_quantile(h, 0.75)
    assert mid is not None and mid.value == 0.0
    top = exp_quantile(h, 1.0)
    assert top is not None and (top.lower, top.upper) == (2.0, 4.0)
    assert top.value == pytest.approx(2 * 2 * 4 / 6)


def test_quantile_clamped_by_min_and_max() -> None:
    h = ExpBuckets(0, 0, 0.0, 0, [10])  # all in (1, 2]
    est = exp_quantile(h, 0.5, mn=1.2, mx=1.3)
    assert est is not None and (est.lower, est.upper) == (1.2, 1.3)
    assert 1.2 <= est.value <= 1.3


def test_explicit_quantile_interpolates_inside_the_bucket() -> None:
    h = ExplicitBuckets((10.0, 20.0, 40.0), [0, 4, 4, 2])
    est = explicit_quantile(h, 0.5)  # 5th of 10: first of the (20, 40] bucket
    assert est is not None and (est.lower, est.upper) == (20.0, 40.0)
    assert est.value == pytest.approx(22.5)
    overflow = explicit_quantile(h, 1.0)
    assert overflow is not None and overflow.upper is None and overflow.lower == 40.0
    assert explicit_quantile(ExplicitBuckets((1.0,), [0, 0]), 0.5) is None


def test_explicit_merge_with_different_bounds_keeps_counts() -> None:
    a = Aggregate(count=3, explicit=ExplicitBuckets((1.0, 2.0), [1, 1, 1]))
    b = Aggregate(count=2, explicit=ExplicitBuckets((2.0, 5.0), [1, 0, 1]))
    m = merge(a, b)
    assert m.explicit == ExplicitBuckets((1.0, 2.0, 5.0), [1, 2, 0, 2])
    assert m.count == 5


def test_merge_keeps_latest_gauge_value_and_min_max() -> None:
    a = Aggregate(count=2, sum=3, min=1, max=2, last=2, last_ns=20)
    b = Aggregate(count=1, sum=5, min=5, max=5, last=5, last_ns=10)
    m = merge(a, b)
    assert (m.count, m.sum, m.min, m.max, m.last, m.last_ns) == (3, 8, 1, 5, 2, 20)
    assert merge(b, a) == m


def test_keep_exemplars_spreads_over_magnitudes() -> None:
    exs = [
        Exemplar(v, i, f"{i:032x}", f"{i:016x}")
        for i, v in enumerate([0.01, 0.011, 0.5, 3.0, 3.1, 40.0])
    ]
    kept = keep_exemplars(exs, 4)
    assert [e.value for e in kept] == [40.0, 3.1, 0.5, 0.011]
    assert math.isclose(relative_error(3), (2 ** (1 / 8) - 1) / (2 ** (1 / 8) + 1))


def test_merge_all_equals_folding_merge() -> None:
    rng = np.random.default_rng(11)
    aggs = []
    for i in range(40):
        xs = rng.lognormal(i % 3, 0.5, 200)
        aggs.append(
            Aggregate(
                count=200, sum=float(xs.sum()), min=float(xs.min()), max=float(xs.max()),
                last=float(i), last_ns=1000 - i, exponential=_exp_from(xs, 2 + i % 4),
                exemplars=[Exemplar(float(xs.max()), i, "ab" * 16, "cd" * 8)],
            )
        )  # fmt: skip
    folded = Aggregate()
    for a in aggs:
        folded = merge(folded, a)
    fast = merge_all(aggs)
    assert fast.exponential == folded.exponential
    assert (fast.count, fast.min, fast.max, fast.last, fast.last_ns) == (
        folded.count, folded.min, folded.max, folded.last, folded.last_ns,
    )  # fmt: skip
    assert fast.sum == pytest.approx(folded.sum)
    assert sorted(e.value for e in fast.exemplars) == sorted(e.value for e in folded.exemplars)
    explicit = [
        Aggregate(count=3, explicit=ExplicitBuckets((1.0, 2.0), [i, 1, 2 - i % 2]))
        for i in range(5)
    ]
    assert merge_all(explicit).explicit == ExplicitBuckets((1.0, 2.0), [10, 5, 8])


def test_binary_histogram_columns_round_trip() -> None:
    exp = Aggregate(exponential=ExpBuckets(-3, 5, 1e-9, -7, [1, 0, 2**40], 3, [4]))
    assert load_hist(dump_hist(exp)) == (None, exp.exponential)
    explicit = Aggregate(explicit=ExplicitBuckets((0.5, 1.5), [1, 2, 3]))
    assert load_hist(dump_hist(explicit)) == (explicit.explicit, None)
    legacy = '{"s":2,"z":0,"zt":0.0,"po":1,"pc":[3],"no":0,"nc":[]}'
    assert load_hist(legacy) == (None, ExpBuckets(2, 0, 0.0, 1, [3], 0, []))


def test_histogram_columns_use_the_narrowest_count_type() -> None:
    """Counts are packed in 1, 2, 4 or 8 bytes (whatever holds them all), both kinds."""
    for top, width in ((255, 1), (256, 2), (2**16, 4), (2**32, 8), (2**53, 8)):
        exp = Aggregate(exponential=ExpBuckets(3, 1, 0.0, 10, [0, top] + [1] * 158, -2, [top]))
        blob = dump_hist(exp)
        assert blob is not None
        assert len(blob) == 1 + 36 + 1 + 161 * width
        assert load_hist(blob) == (None, exp.exponential)
        explicit = Aggregate(explicit=ExplicitBuckets((0.5, 1.5), [top, 0, 3]))
        assert load_hist(dump_hist(explicit)) == (explicit.explicit, None)


def test_int64_histogram_columns_of_older_builds_still_read() -> None:
    """Rows written before the compact counts: "E"/"X" tags with int64 counts."""
    import struct
    from array import array

    head = struct.pack("<iqdiiii", 2, 4, 1e-9, -1, 2, 5, 1)
    old_exp = b"E" + head + array("q", [7, 2**40]).tobytes() + array("q", [3]).tobytes()
    assert load_hist(old_exp) == (None, ExpBuckets(2, 4, 1e-9, -1, [7, 2**40], 5, [3]))
    old_explicit = (
        b"X" + struct.pack("<i", 2) + array("d", [0.5, 1.5]).tobytes()
        + array("q", [1, 0, 9]).tobytes()
    )  # fmt: skip
    assert load_hist(old_explicit) == (ExplicitBuckets((0.5, 1.5), [1, 0, 9]), None)


def test_head_pickles_of_older_builds_still_load() -> None:
    """Head checkpoints pickle aggregates as constructor arguments now; a pickle made with
    the default slotted-class state (what an older build wrote) loads the same."""
    import copyreg
    import pickle

    from mlpulse.backend.storage.aggregate import Exemplar
    from mlpulse.backend.storage.base import PointState

    value = PointState(
        1, 2,
        Aggregate(1.0, 2.0, None, 3.0, None, 5, ExplicitBuckets((1.0,), [1, 2]),
                  ExpBuckets(3, 1, 0.0, -2, [1, 2], 0, []), [Exemplar(1.5, 7, "ab", "cd")]),
    )  # fmt: skip

    def default(obj: object) -> tuple[object, ...]:
        # What object.__reduce_ex__ gives a slotted class without __reduce__.
        state = {name: getattr(obj, name) for name in type(obj).__slots__}
        return copyreg.__newobj__, (type(obj),), (None, state)

    class Old(pickle.Pickler):
        def reducer_override(self, obj: object) -> object:
            if type(obj) in (PointState, Aggregate, ExplicitBuckets, ExpBuckets):
                return default(obj)
            return NotImplemented

    import io

    buf = io.BytesIO()
    Old(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    assert b"cumulative" in buf.getvalue()  # the old form: state by slot name
    assert pickle.loads(buf.getvalue()) == value
    assert pickle.loads(pickle.dumps(value)) == value
