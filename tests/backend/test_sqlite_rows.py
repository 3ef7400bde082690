"""What the SQLite checkpoint writes per bucket: the same bytes and NULLs as the reference
encoding (aggregate.dump_hist, None for a missing value), whatever types it binds."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import struct
from array import array
from pathlib import Path
from typing import Any

import pytest

from mlpulse.backend.storage.aggregate import (
    Aggregate,
    Exemplar,
    ExpBuckets,
    ExplicitBuckets,
    dump_exemplars,
    dump_hist,
    merge,
)
from mlpulse.backend.storage.base import SeriesKey
from mlpulse.backend.storage.sqlite import SQLiteStore, _bucket_row

_BOUNDS = (0.005, 0.01, 0.1, 1.0, 10.0)
_EXP = [
    ExpBuckets(4),  # no buckets at all
    ExpBuckets(3, 2, 1e-9, -7, [1, 0, 255, 3]),
    ExpBuckets(-2, 0, 0.0, 10, [1, 2], -3, [0, 4, 1]),
    ExpBuckets(5, 1, 0.0, 0, [256, 1], 2, [3]),  # 16 bit
    ExpBuckets(5, 70_000, 0.0, 0, [1], 0, [65_536]),  # 32 bit
    ExpBuckets(5, 0, 0.0, 0, [2**40, 1]),  # int64
    ExpBuckets(5, 0, 0.0, 0, [3, -1]),  # negative (never written, but encodable)
]
_EXPLICIT = [
    ExplicitBuckets(_BOUNDS, [0, 1, 2, 255, 0, 9]),
    ExplicitBuckets(_BOUNDS, [0, 1, 300, 0, 0, 9]),
    ExplicitBuckets(_BOUNDS, [0, 1, 2**33, 0, 0, 9]),
    ExplicitBuckets((), [4]),
]


def _reference(agg: Aggregate) -> bytes:
    """The stored format written the plain way: narrowest of u8/u16/u32 (else int64)."""

    def packed(*lists: list[int]) -> tuple[bytes, list[bytes]]:
        for code in ("B", "H", "I"):
            try:
                return code.encode(), [array(code, c).tobytes() for c in lists]
            except OverflowError:
                continue
        return b"q", [array("q", c).tobytes() for c in lists]

    if agg.exponential is not None:
        h = agg.exponential
        code, (pos, neg) = packed(h.pos_counts, h.neg_counts)
        header = struct.pack(
            "<iqdiiii", h.scale, h.zero_count, h.zero_threshold, h.pos_offset,
            len(h.pos_counts), h.neg_offset, len(h.neg_counts),
        )  # fmt: skip
        return b"e" + header + code + pos + neg
    assert agg.explicit is not None
    e = agg.explicit
    code, (counts,) = packed(e.counts)
    return b"x" + struct.pack("<i", len(e.bounds)) + array("d", e.bounds).tobytes() + code + counts


@pytest.mark.parametrize("hist", _EXP + _EXPLICIT)
def test_histogram_bytes_equal_dump_hist(hist: ExpBuckets | ExplicitBuckets) -> None:
    if isinstance(hist, ExpBuckets):
        agg = Aggregate(count=1, exponential=hist)
    else:
        agg = Aggregate(count=1, explicit=hist)
    written = _bucket_row(10, 1, 0, agg)[9]
    assert isinstance(written, bytearray)
    assert bytes(written) == dump_hist(agg) == _reference(agg)


def _aggregates() -> list[Aggregate]:
    ex = [Exemplar(0.25, 1_700_000_000_000_000_000, "ab" * 16, "cd" * 8)]
    out = [
        Aggregate(count=3, sum=1.5),  # a sum: no min/max/last
        Aggregate(count=2, sum=7.0, min=-1.0, max=8.0, last=8.0, last_ns=5),
        Aggregate(count=1, sum=0.0, min=0.0, max=0.0, last=0.0, last_ns=6),  # zeros, not NULL
        Aggregate(count=4, sum=2.0, last=9.5, last_ns=7, exemplars=ex),
    ]
    out += [Aggregate(count=9, sum=3.25, min=0.1, max=2.0, exponential=h) for h in _EXP[:-1]]
    out += [Aggregate(count=9, sum=3.25, explicit=h, exemplars=ex) for h in _EXPLICIT]
    return out


def _key(i: int) -> SeriesKey:
    return SeriesKey(f"m{i}", "gauge", "", False, (("service.name", "s"),), "", ())


def _checkpoint(
    store: SQLiteStore, buckets: dict[tuple[int, int, int], Aggregate], **kw: Any
) -> None:
    store.save_checkpoint(
        new_series=kw.get("new_series", []),
        head=kw.get("head", []),
        buckets=buckets,
        maybe_stored=kw.get("maybe_stored", set()),
        intervals=[],
        wal_segment=None,
        last_ingest=None,
        commit_guard=contextlib.nullcontext,
        on_commit=lambda: None,
    )


_COLUMNS = (
    "count, typeof(count), sum, typeof(sum), min, typeof(min), max, typeof(max), last,"
    " typeof(last), last_ns, typeof(last_ns), hist, typeof(hist), exemplars, typeof(exemplars)"
)


def _typed(value: Any, sql_type: str) -> tuple[Any, str]:
    if value is None:
        return None, "null"
    if sql_type == "real":
        return float(value), "real"
    return value, sql_type


def _expected(agg: Aggregate) -> tuple[Any, ...]:
    """The stored columns as the reference encoding writes them (None binds NULL)."""
    hist = dump_hist(agg)
    return (
        *_typed(agg.count, "real"),
        *_typed(agg.sum, "real"),
        *_typed(agg.min, "real"),
        *_typed(agg.max, "real"),
        *_typed(agg.last, "real"),
        *_typed(agg.last_ns, "integer"),
        *_typed(hist, "blob"),
        *_typed(dump_exemplars(agg.exemplars), "text"),
    )


def test_stored_columns_equal_the_reference_encoding(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    aggs = _aggregates()
    new = [(_key(i).fingerprint, _key(i), i + 1, 0.0) for i in range(len(aggs))]
    buckets = {(10, i + 1, 1000): agg for i, agg in enumerate(aggs)}
    _checkpoint(store, buckets, new_series=new)
    conn = store._reader()
    for (res, sid, ts), agg in buckets.items():
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM buckets WHERE resolution = ? AND series_id = ? AND ts = ?",
            (res, sid, ts),
        ).fetchone()
        assert row == _expected(agg), agg
        [(_, _, back)] = store.read([sid], res, ts, ts + 1)
        assert back == agg
    store.close()


def test_merged_buckets_and_head_blobs_read_back(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    aggs = _aggregates()
    new = [(_key(i).fingerprint, _key(i), i + 1, 0.0) for i in range(len(aggs))]
    first = {(60, i + 1, 0): agg for i, agg in enumerate(aggs)}
    blobs = [(i + 1, bytes([i]) * 700) for i in range(len(aggs))]
    _checkpoint(store, first, new_series=new, head=blobs)
    # Each bucket again, with more of the same: merged into what the first wrote.
    second = {key: agg.copy() for key, agg in first.items()}
    _checkpoint(store, second, maybe_stored=set(second), head=blobs[:2])
    for (res, sid, ts), agg in first.items():
        [(_, _, back)] = store.read([sid], res, ts, ts + 1)
        want = merge(agg, agg)
        assert (back.count, back.sum, back.min, back.max) == (
            want.count,
            want.sum,
            want.min,
            want.max,
        )
        assert (back.explicit, back.exponential) == (want.explicit, want.exponential)
        assert back.count == 2 * agg.count
    assert sorted(store.load_head()) == blobs
    store.close()


def test_a_nan_minimum_is_stored_as_null_as_before(tmp_path: Path) -> None:
    # NaN is how the rows bind NULL: a NaN value stores NULL exactly as it did before.
    store = SQLiteStore(tmp_path / "m.db")
    _checkpoint(
        store,
        {(10, 1, 0): Aggregate(count=1, sum=1.0, min=math.nan, max=1.0)},
        new_series=[(_key(0).fingerprint, _key(0), 1, 0.0)],
    )
    row = store._reader().execute("SELECT min, typeof(min), max FROM buckets").fetchone()
    assert row == (None, "null", 1.0)
    store.close()


def test_a_bucket_of_an_unknown_series_fails_the_checkpoint(tmp_path: Path) -> None:
    # The buckets' foreign key holds: nothing of the checkpoint is stored.
    store = SQLiteStore(tmp_path / "m.db")
    new = [(_key(0).fingerprint, _key(0), 1, 0.0)]
    buckets = {(10, 1, 0): Aggregate(count=1, sum=1.0), (10, 2, 0): Aggregate(count=1, sum=2.0)}
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        _checkpoint(store, buckets, new_series=new, head=[(1, b"state")])
    conn = store._reader()
    for table in ("series", "buckets", "head_state"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    # Still enforced on the writer for everything else, and the next checkpoint works.
    assert store._writer.execute("PRAGMA foreign_keys").fetchone() == (1,)
    _checkpoint(store, {(10, 1, 0): Aggregate(count=1, sum=1.0)}, new_series=new)
    assert [a.sum for _, _, a in store.read([1], 10, 0, 10)] == [1.0]
    store.close()
