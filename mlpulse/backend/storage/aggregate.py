"""The stored unit: one series' data over one time bucket, and how two of them merge.

An `Aggregate` holds what a 10 s, 1 min or 1 h bucket keeps of a series:

- sums (counters, up-down counters): `sum` is the delta over the bucket, `last` the
  cumulative level when the producer reports cumulative values;
- gauges: `count`, `sum`, `min`, `max` and `last` (by point time);
- histograms: `count`, `sum`, `min`/`max` when known, and either `explicit` buckets or
  base-2 `exponential` buckets;
- a few exemplars (trace and span ids) for any kind.

`merge(a, b)` is associative and commutative (up to which exemplars are kept), so buckets
roll up and series add up in any order. Exponential histograms at different scales merge
by downscaling to the coarser scale; explicit histograms with different bounds merge onto
the union of the bounds, each source bucket counted in the target bucket of its upper
bound (exact when the bounds agree, which they do for one instrument).
"""

from __future__ import annotations

import json
import math
import operator
import struct
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_EXP_BUCKETS = 2048  # a merged exponential histogram wider than this is downscaled


@dataclass(frozen=True, slots=True)
class Exemplar:
    """A sampled measurement with the trace that produced it."""

    value: float
    time_ns: int
    trace_id: str = ""  # lowercase hex, empty when the point had none
    span_id: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as constructor arguments (the head's checkpoints): several times
        # faster than the default state dict of a slotted class, and older pickles
        # (made with the default) still load.
        return Exemplar, (self.value, self.time_ns, self.trace_id, self.span_id)


# The exemplars of an aggregate that has none, shared. Like histogram buckets, exemplar
# lists are never mutated in place (merges build new ones), and most aggregates the head
# and the caches hold have none: an empty list each is 56 bytes, ~5 MiB for B7's 10k
# series (8 or 9 aggregates each: snapshot, base, rollups, open view, pending, cache).
NO_EXEMPLARS: list[Exemplar] = []
# Likewise one empty bucket range, shared: an exponential histogram's negative range is
# empty for most instruments (latencies, sizes), and both are for a bucket with no
# observation (the delta of a quiet series, and its rollups).
NO_COUNTS: list[int] = []


@dataclass(slots=True)
class ExplicitBuckets:
    """Explicit-bucket histogram counts: `counts[i]` counts (bounds[i-1], bounds[i]]."""

    bounds: tuple[float, ...]
    counts: list[int]

    def copy(self) -> ExplicitBuckets:
        return ExplicitBuckets(self.bounds, list(self.counts))

    def __reduce__(self) -> tuple[Any, ...]:
        return ExplicitBuckets, (self.bounds, self.counts)  # see Exemplar.__reduce__


@dataclass(slots=True)
class ExpBuckets:
    """Base-2 exponential histogram: bucket i of scale s covers (b**i, b**(i+1)], b=2**2**-s."""

    scale: int
    zero_count: int = 0
    zero_threshold: float = 0.0
    pos_offset: int = 0
    pos_counts: list[int] = field(default_factory=list)
    neg_offset: int = 0
    neg_counts: list[int] = field(default_factory=list)

    def copy(self) -> ExpBuckets:
        return ExpBuckets(
            self.scale,
            self.zero_count,
            self.zero_threshold,
            self.pos_offset,
            list(self.pos_counts),
            self.neg_offset,
            list(self.neg_counts),
        )

    @property
    def total(self) -> int:
        return self.zero_count + sum(self.pos_counts) + sum(self.neg_counts)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.scale, self.zero_count, self.zero_threshold, self.pos_offset,
                  self.pos_counts, self.neg_offset, self.neg_counts)  # fmt: skip
        return ExpBuckets, fields  # see Exemplar.__reduce__


@dataclass(slots=True)
class Aggregate:
    """One series over one bucket (or over any merge of buckets and series)."""

    count: float = 0.0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    last: float | None = None
    last_ns: int = 0
    explicit: ExplicitBuckets | None = None
    exponential: ExpBuckets | None = None
    exemplars: list[Exemplar] = field(default_factory=list)

    def copy(self) -> Aggregate:
        # Histogram buckets are never mutated in place (merges build new ones), so a
        # copy shares them; only the exemplar list is the copy's own (or NO_EXEMPLARS).
        ex = list(self.exemplars) if self.exemplars else NO_EXEMPLARS
        return Aggregate(
            self.count, self.sum, self.min, self.max, self.last, self.last_ns,
            self.explicit, self.exponential, ex,
        )  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.count, self.sum, self.min, self.max, self.last, self.last_ns,
                  self.explicit, self.exponential, self.exemplars)  # fmt: skip
        return Aggregate, fields  # see Exemplar.__reduce__


# --- exponential buckets -----------------------------------------------------------


def _downscale_range(offset: int, counts: list[int], by: int) -> tuple[int, list[int]]:
    if by <= 0 or not counts:
        return offset, list(counts)
    new_offset = offset >> by
    out: list[int] = [0] * (((offset + len(counts) - 1) >> by) - new_offset + 1)
    for i, c in enumerate(counts):
        if c:
            out[((offset + i) >> by) - new_offset] += c
    return new_offset, out


def downscale(h: ExpBuckets, scale: int) -> ExpBuckets:
    """Return `h` at a coarser (smaller or equal) scale; bucket i maps to i >> (s - scale)."""
    by = h.scale - scale
    if by < 0:
        raise ValueError("cannot upscale an exponential histogram")
    if by == 0:
        return h  # histograms are never mutated in place, so sharing is safe
    po, pc = _downscale_range(h.pos_offset, h.pos_counts, by)
    no, nc = _downscale_range(h.neg_offset, h.neg_counts, by)
    return ExpBuckets(scale, h.zero_count, h.zero_threshold, po, pc, no, nc)


def _add_range(
    ao: int, ac: list[int], bo: int, bc: list[int], sign: int = 1
) -> tuple[int, list[int]]:
    if not bc:
        return ao, ac  # bucket lists are never mutated in place: sharing is safe
    if not ac:
        return bo, [sign * c for c in bc]
    if ao == bo and len(ac) == len(bc):  # the common case: same range
        return ao, list(map(operator.add if sign > 0 else operator.sub, ac, bc))
    lo = min(ao, bo)
    hi = max(ao + len(ac), bo + len(bc))
    out = [0] * (hi - lo)
    out[ao - lo : ao - lo + len(ac)] = ac
    start, end = bo - lo, bo - lo + len(bc)
    # One C-level pass over the overlap (a loop of += per bucket is several times slower).
    out[start:end] = map(operator.add if sign > 0 else operator.sub, out[start:end], bc)
    return lo, out


def _trim(offset: int, counts: list[int]) -> tuple[int, list[int]]:
    # Plain iteration (no indexing, no len() per step): this runs at every bucket close.
    start = 0
    for c in counts:
        if c:
            break
        start += 1
    else:
        return 0, NO_COUNTS
    end = len(counts)
    for c in reversed(counts):
        if c:
            break
        end -= 1
    if start == 0 and end == len(counts):
        return offset, counts
    return offset + start, counts[start:end]


def _fit(h: ExpBuckets) -> ExpBuckets:
    while max(len(h.pos_counts), len(h.neg_counts)) > MAX_EXP_BUCKETS:
        h = downscale(h, h.scale - 1)
    return h


def _merge_scale(hs: list[ExpBuckets]) -> int:
    """The scale to merge at: the coarsest input scale, coarser still if the merged range
    would exceed MAX_EXP_BUCKETS (so far-apart ranges never allocate a huge array)."""
    scale = min(h.scale for h in hs)
    while True:
        widest = 0
        for ranges in ([(h.pos_offset, h.pos_counts, h.scale) for h in hs],
                       [(h.neg_offset, h.neg_counts, h.scale) for h in hs]):  # fmt: skip
            spans = [
                (off >> (sc - scale), (off + len(c) - 1) >> (sc - scale))
                for off, c, sc in ranges
                if c
            ]
            if spans:
                widest = max(widest, max(b for _, b in spans) - min(a for a, _ in spans) + 1)
        if widest <= MAX_EXP_BUCKETS:
            return scale
        scale -= max(1, (widest // MAX_EXP_BUCKETS).bit_length() - 1)


def _same_scale_fits(a: ExpBuckets, b: ExpBuckets) -> bool:
    """The common case (one instrument): same scale and a merged range that fits."""
    if a.scale != b.scale:
        return False
    for ao, ac, bo, bc in ((a.pos_offset, a.pos_counts, b.pos_offset, b.pos_counts),
                           (a.neg_offset, a.neg_counts, b.neg_offset, b.neg_counts)):  # fmt: skip
        if ac and bc and max(ao + len(ac), bo + len(bc)) - min(ao, bo) > MAX_EXP_BUCKETS:
            return False
    return True


def merge_exp(a: ExpBuckets, b: ExpBuckets) -> ExpBuckets:
    """Add two exponential histograms, downscaling to the coarser scale."""
    scale = a.scale if _same_scale_fits(a, b) else _merge_scale([a, b])
    a2, b2 = downscale(a, scale), downscale(b, scale)
    po, pc = _add_range(a2.pos_offset, a2.pos_counts, b2.pos_offset, b2.pos_counts)
    no, nc = _add_range(a2.neg_offset, a2.neg_counts, b2.neg_offset, b2.neg_counts)
    merged = ExpBuckets(
        scale,
        a2.zero_count + b2.zero_count,
        max(a2.zero_threshold, b2.zero_threshold),
        po,
        pc,
        no,
        nc,
    )
    return _fit(merged)


def subtract_exp(cur: ExpBuckets, prev: ExpBuckets) -> ExpBuckets | None:
    """Return cur - prev for cumulative snapshots, or None if that is not a valid histogram."""
    if cur.scale > prev.scale:
        return None  # a cumulative histogram only ever downscales: this is a reset
    p = downscale(prev, cur.scale)
    if cur is p or (
        cur.zero_count == p.zero_count
        and cur.pos_offset == p.pos_offset
        and cur.neg_offset == p.neg_offset
        and cur.pos_counts == p.pos_counts
        and cur.neg_counts == p.neg_counts
    ):
        # Nothing observed since `prev` (a quiet series, most buckets of most series):
        # one C-level list comparison instead of subtracting and trimming every bucket.
        return ExpBuckets(cur.scale, 0, cur.zero_threshold, 0, NO_COUNTS, 0, NO_COUNTS)
    po, pc = _add_range(cur.pos_offset, cur.pos_counts, p.pos_offset, p.pos_counts, -1)
    no, nc = _add_range(cur.neg_offset, cur.neg_counts, p.neg_offset, p.neg_counts, -1)
    zero = cur.zero_count - p.zero_count
    if zero < 0 or (pc and min(pc) < 0) or (nc and min(nc) < 0):
        return None
    po, pc = _trim(po, pc)
    no, nc = _trim(no, nc)
    return ExpBuckets(cur.scale, zero, cur.zero_threshold, po, pc, no, nc)


# --- explicit buckets --------------------------------------------------------------


def _rebin(h: ExplicitBuckets, bounds: tuple[float, ...]) -> list[int]:
    out = [0] * (len(bounds) + 1)
    index = {b: i for i, b in enumerate(bounds)}
    for i, c in enumerate(h.counts):
        out[index[h.bounds[i]] if i < len(h.bounds) else len(bounds)] += c
    return out


def merge_explicit(a: ExplicitBuckets, b: ExplicitBuckets) -> ExplicitBuckets:
    """Add two explicit histograms (onto the union of bounds when they differ)."""
    if a.bounds == b.bounds:
        return ExplicitBuckets(a.bounds, [x + y for x, y in zip(a.counts, b.counts, strict=True)])
    bounds = tuple(sorted(set(a.bounds) | set(b.bounds)))
    return ExplicitBuckets(
        bounds, [x + y for x, y in zip(_rebin(a, bounds), _rebin(b, bounds), strict=True)]
    )


def subtract_explicit(cur: ExplicitBuckets, prev: ExplicitBuckets) -> ExplicitBuckets | None:
    """Return cur - prev for cumulative snapshots, or None on a reset or a bounds change."""
    if cur is prev:  # shared: nothing observed since `prev`
        return ExplicitBuckets(cur.bounds, [0] * len(cur.counts))
    if cur.bounds != prev.bounds:
        return None
    counts = list(map(operator.sub, cur.counts, prev.counts))
    if len(cur.counts) != len(prev.counts) or (counts and min(counts) < 0):
        return None
    return ExplicitBuckets(cur.bounds, counts)


# --- aggregates --------------------------------------------------------------------


def _opt(fn: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(fn(a, b))


def keep_exemplars(exemplars: list[Exemplar], limit: int) -> list[Exemplar]:
    """Keep at most `limit` exemplars: the largest per power of two of value, largest first.

    Spreading over magnitudes keeps a link for the body of a latency distribution as well
    as for its tail, which is what a reader clicks; the largest of each magnitude (the
    latest on a tie) stays, so the slowest request of a bucket never gives way to a faster
    one that came later (in the head, a bucket's exemplars are merged point by point).
    """
    if limit <= 0:
        return []
    if len(exemplars) <= limit:
        return exemplars
    by_magnitude: dict[int, Exemplar] = {}
    for ex in exemplars:
        key = math.frexp(ex.value)[1] if ex.value and math.isfinite(ex.value) else -10_000
        cur = by_magnitude.get(key)
        if cur is None or (ex.value, ex.time_ns) >= (cur.value, cur.time_ns):
            by_magnitude[key] = ex
    kept = sorted(by_magnitude.values(), key=lambda e: e.value, reverse=True)
    return kept[:limit]


def merge(a: Aggregate, b: Aggregate, max_exemplars: int = 4) -> Aggregate:
    """Return the aggregate of `a` and `b` over the union of their buckets or series."""
    if a.exponential is not None and b.exponential is not None:
        exponential: ExpBuckets | None = merge_exp(a.exponential, b.exponential)
    else:
        exponential = a.exponential or b.exponential
    if a.explicit is not None and b.explicit is not None:
        explicit: ExplicitBuckets | None = merge_explicit(a.explicit, b.explicit)
    else:
        explicit = a.explicit or b.explicit
    take_b = b.last is not None and (a.last is None or b.last_ns >= a.last_ns)
    # Positional and inline: this runs at every rollup of every closed bucket.
    amin, bmin, amax, bmax = a.min, b.min, a.max, b.max
    ex = a.exemplars + b.exemplars if a.exemplars or b.exemplars else None  # a new list
    return Aggregate(
        a.count + b.count,
        a.sum + b.sum,
        bmin if amin is None else amin if bmin is None else float(min(amin, bmin)),
        bmax if amax is None else amax if bmax is None else float(max(amax, bmax)),
        b.last if take_b else a.last,
        a.last_ns if a.last_ns >= b.last_ns else b.last_ns,
        explicit,
        exponential,
        keep_exemplars(ex, max_exemplars) if ex else NO_EXEMPLARS,
    )


def _accumulate(ranges: list[tuple[int, list[int]]], shifts: list[int]) -> tuple[int, list[int]]:
    """Add bucket ranges (offset, counts), each downscaled by its shift, with numpy."""
    spans = [
        (off >> by, (off + len(c) - 1) >> by, off, c, by)
        for (off, c), by in zip(ranges, shifts, strict=True)
        if c
    ]
    if not spans:
        return 0, []
    lo = min(sp[0] for sp in spans)
    acc = np.zeros(max(sp[1] for sp in spans) - lo + 1, dtype=np.int64)
    for first, _, off, counts, by in spans:
        if by == 0:
            acc[first - lo : first - lo + len(counts)] += counts
        else:
            idx = (np.arange(off, off + len(counts), dtype=np.int64) >> by) - lo
            np.add.at(acc, idx, counts)
    summed: list[int] = acc.tolist()
    return lo, summed


def _merge_exp_many(hs: list[ExpBuckets]) -> ExpBuckets:
    scale = _merge_scale(hs)
    shifts = [h.scale - scale for h in hs]
    po, pc = _accumulate([(h.pos_offset, h.pos_counts) for h in hs], shifts)
    no, nc = _accumulate([(h.neg_offset, h.neg_counts) for h in hs], shifts)
    merged = ExpBuckets(
        scale,
        sum(h.zero_count for h in hs),
        max(h.zero_threshold for h in hs),
        po,
        pc,
        no,
        nc,
    )
    return _fit(merged)


def merge_all(aggs: list[Aggregate], max_exemplars: int = 4) -> Aggregate:
    """Merge any number of aggregates (an empty list gives an empty aggregate).

    Same result as folding `merge`, but histogram buckets are added in one numpy pass,
    which is what makes merging thousands of buckets into a chart's steps fast.
    """
    if len(aggs) <= 4:  # a few (the head's rollup parts): folding beats numpy's set-up
        out = Aggregate()
        for agg in aggs:
            out = merge(out, agg, max_exemplars)
        return out
    out = Aggregate()
    mins = [a.min for a in aggs if a.min is not None]
    maxs = [a.max for a in aggs if a.max is not None]
    out.count = sum(a.count for a in aggs)
    out.sum = sum(a.sum for a in aggs)
    out.min = min(mins) if mins else None
    out.max = max(maxs) if maxs else None
    for a in aggs:
        if a.last is not None and (out.last is None or a.last_ns >= out.last_ns):
            out.last, out.last_ns = a.last, a.last_ns
    out.last_ns = max(a.last_ns for a in aggs)
    exps = [a.exponential for a in aggs if a.exponential is not None]
    if exps:
        out.exponential = exps[0] if len(exps) == 1 else _merge_exp_many(exps)
    explicits = [a.explicit for a in aggs if a.explicit is not None]
    if explicits:
        bounds = explicits[0].bounds
        if all(e.bounds == bounds for e in explicits):
            total = np.asarray([e.counts for e in explicits], dtype=np.int64).sum(axis=0)
            counts: list[int] = [int(c) for c in total]
            out.explicit = ExplicitBuckets(bounds, counts)
        else:
            folded = explicits[0]
            for e in explicits[1:]:
                folded = merge_explicit(folded, e)
            out.explicit = folded
    exemplars = [e for a in aggs for e in a.exemplars]
    out.exemplars = keep_exemplars(exemplars, max_exemplars)
    return out


# --- serialization (one column each) --------------------------------------------------
#
# Histograms are stored as compact binary (little-endian): "e" + header + counts for
# exponential ones, "x" + bounds (float64) + counts for explicit ones. The counts are in
# the narrowest unsigned type that holds them all (a typecode byte says which: a 10 s
# bucket's counts mostly fit a byte), so a row of 160 buckets is ~200 bytes instead of
# 1.3 KB: it stays inside its B-tree page (no overflow pages) and the checkpoint writes
# a fraction of the bytes. Decoding is a memory copy either way.
# Older rows are still read: "E"/"X" (int64 counts) and JSON text of the first builds.

_EXP_HEADER = struct.Struct("<iqdiiii")
_EXPLICIT_HEADER = struct.Struct("<i")
_COUNT_TYPES = ("B", "H", "I")  # unsigned 8/16/32 bit; anything else: "q" (int64)
_ITEMSIZE = {"B": 1, "H": 2, "I": 4, "q": 8}
assert all(array(t).itemsize == n for t, n in _ITEMSIZE.items())


def _packed_counts(*lists: list[int]) -> tuple[bytes, list[bytearray | array[int]]]:
    """The typecode byte and each list packed with the narrowest type holding them all."""
    try:
        # Most counts fit a byte; bytearray(list) packs them several times faster than
        # array("B", list).
        return b"B", [bytearray(c) for c in lists]
    except ValueError:  # a count outside 0..255
        pass
    for code in _COUNT_TYPES[1:]:
        try:
            return code.encode(), [array(code, c) for c in lists]
        except OverflowError:  # a count too large (or negative) for this type
            continue
    return b"q", [array("q", c) for c in lists]


def dump_hist(agg: Aggregate) -> bytearray | None:
    """Serialize the histogram part of an aggregate (a bytearray: SQLite binds it without
    the adapter lookup of bytes, see sqlite.py)."""
    if agg.exponential is not None:
        h = agg.exponential
        code, (pos, neg) = _packed_counts(h.pos_counts, h.neg_counts)
        header = _EXP_HEADER.pack(
            h.scale,
            h.zero_count,
            h.zero_threshold,
            h.pos_offset,
            len(h.pos_counts),
            h.neg_offset,
            len(h.neg_counts),
        )
        return bytearray().join((b"e", header, code, pos, neg))
    if agg.explicit is not None:
        e = agg.explicit
        code, (counts,) = _packed_counts(e.counts)
        return bytearray().join(
            (b"x", _EXPLICIT_HEADER.pack(len(e.bounds)), array("d", e.bounds), code, counts)
        )
    return None


def _ints(data: bytes, start: int, n: int, code: str = "q") -> list[int]:
    out = array(code)
    out.frombytes(data[start : start + _ITEMSIZE[code] * n])
    return out.tolist()


def load_hist(data: bytes | str | None) -> tuple[ExplicitBuckets | None, ExpBuckets | None]:
    """Parse what `dump_hist` wrote (and the older formats)."""
    if not data:
        return None, None
    if isinstance(data, str):
        d = json.loads(data)
        if "s" in d:
            return None, ExpBuckets(d["s"], d["z"], d["zt"], d["po"], d["pc"], d["no"], d["nc"])
        return ExplicitBuckets(tuple(d["b"]), d["c"]), None
    tag = data[:1]
    if tag in (b"E", b"e"):
        scale, zero, zt, po, npos, no, nneg = _EXP_HEADER.unpack_from(data, 1)
        start = 1 + _EXP_HEADER.size
        code = "q"
        if tag == b"e":
            code = chr(data[start])
            start += 1
        pos = _ints(data, start, npos, code)
        neg = _ints(data, start + _ITEMSIZE[code] * npos, nneg, code)
        return None, ExpBuckets(scale, zero, zt, po, pos, no, neg)
    (nb,) = _EXPLICIT_HEADER.unpack_from(data, 1)
    start = 1 + _EXPLICIT_HEADER.size
    bounds = array("d")
    bounds.frombytes(data[start : start + 8 * nb])
    start += 8 * nb
    code = "q"
    if tag == b"x":
        code = chr(data[start])
        start += 1
    return ExplicitBuckets(tuple(bounds), _ints(data, start, nb + 1, code)), None


def dump_exemplars(exemplars: list[Exemplar]) -> str | None:
    """Serialize exemplars."""
    if not exemplars:
        return None
    return json.dumps(
        [[e.value, e.time_ns, e.trace_id, e.span_id] for e in exemplars], separators=(",", ":")
    )


def load_exemplars(text: str | None) -> list[Exemplar]:
    """Parse what `dump_exemplars` wrote."""
    if not text:
        return []
    return [Exemplar(float(v), int(t), str(tr), str(sp)) for v, t, tr, sp in json.loads(text)]
