"""B3 percentile accuracy: 10^6 lognormal latencies through the SDK into the backend.

The samples (lognormal, median 50 ms, sigma 0.9: 1 ms .. several s) are recorded into two
histograms of one real SDK MeterProvider (cumulative temporality, like mlapi):
`bench.latency.exponential` in seconds with mlpulse's view (base-2 exponential, 160
buckets, `instrumentation.metric_views()` settings) and `bench.latency.explicit` in
milliseconds with the SDK's default explicit buckets (0, 5, 10, 25, … 10000 — the ones
the stock instrumentation uses, for ms). Every 5 s window of an hour is collected, encoded
by the real OTLP encoder, given its window's timestamp and POSTed to a running backend
(`mlpulse backend`). Percentiles then come from the backend's `GET /metrics/distribution`
over one 10 s storage bucket and over the whole hour (360 buckets merged), and from the
stored 1 h rollup row; each is compared with numpy's exact percentile of the same raw
samples (`method="inverted_cdf"`, the backend's rank definition). Target: the
exponential histogram's error within its stated bound (β - 1)/(β + 1) at the scale used.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import backend_child, fig, free_port, rnd
from bench._otlp import Poster, collect, count_points, rejected, retime

TITLE = "Percentile accuracy (SDK → backend, exponential vs default explicit buckets)"
QS = (50, 95, 99)
EXP, EXPL = "bench.latency.exponential", "bench.latency.explicit"


def _provider() -> tuple[Any, Any, Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "bench-b3", "service.instance.id": "b3"}),
        views=[
            View(
                instrument_name=EXP,
                aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20),
            )
        ],
    )
    meter = provider.get_meter("bench")
    h_exp = meter.create_histogram(EXP, unit="s")
    h_expl = meter.create_histogram(EXPL, unit="ms")
    return provider, reader, h_exp, h_expl


def _distribution(base: str, metric: str, t0: float, t1: float) -> dict[str, Any]:
    import httpx

    r = httpx.get(
        f"{base}/metrics/distribution", params={"metric": metric, "from": t0, "to": t1}, timeout=60
    )
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    n, windows = (20_000, 24) if quick else (1_000_000, 720)
    rng = np.random.default_rng(42)
    samples = rng.lognormal(mean=math.log(0.05), sigma=0.9, size=n)
    chunks = np.array_split(samples, windows)

    provider, reader, h_exp, h_expl = _provider()
    now = time.time()
    t0 = int((now - 3 * 3600) // 3600 * 3600)  # an hour-aligned hour, ~2-3 h ago
    start_ns = (t0 - 20) * 10**9
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    points = refused = 0
    record_s = 0.0
    with backend_child(workdir / "data", port, log=workdir / "backend.log") as backend:
        poster = Poster(port)
        # A baseline export first: the backend takes the first point of a cumulative
        # series that started before it existed as a baseline only (it joined mid-stream).
        h_exp.record(0.05)
        h_expl.record(50.0)
        windows_ts = [t0 - 2.5] + [t0 + 5 * k + 2.5 for k in range(windows)]
        for k, ts in enumerate(windows_ts):
            if k > 0:
                chunk = chunks[k - 1]
                r0 = time.perf_counter()
                for v in chunk.tolist():
                    h_exp.record(v)
                    h_expl.record(v * 1000.0)
                record_s += time.perf_counter() - r0
            req = collect(reader)
            retime(req, start_ns, int(ts * 1e9))
            points += count_points(req)
            status, body = poster.post(req.SerializeToString())
            if status != 200:
                raise RuntimeError(f"ingest answered {status}: {body[:200]!r}")
            refused += rejected(body)
        poster.close()
        provider.shutdown()

        b = windows // 4  # a 10 s bucket: windows 2b and 2b+1
        ranges = {
            "one 10 s bucket": (
                t0 + 10 * b,
                t0 + 10 * b + 10,
                np.concatenate(chunks[2 * b : 2 * b + 2]),
            ),
            "hour (merged)": (t0, t0 + 5 * windows, samples),
        }
        results: dict[str, dict[str, Any]] = {}
        for label, (a, z, raw) in ranges.items():
            exact = {q: float(np.percentile(raw, q, method="inverted_cdf")) for q in QS}
            d_exp = _distribution(base, EXP, a, z)
            d_expl = _distribution(base, EXPL, a, z)
            results[label] = {
                "n_exact": int(raw.size),
                "n_stored": {"exponential": d_exp["count"], "explicit": d_expl["count"]},
                "scale": d_exp.get("scale"),
                "bound": d_exp.get("relative_error"),
                "exact_s": exact,
                "exponential": {q: d_exp["percentiles"][f"p{q}"] for q in QS},
                "explicit_ms": {q: d_expl["percentiles"][f"p{q}"] for q in QS},
            }
        rollup = _rollup(workdir / "data" / "mlpulse.db", t0, samples)
        cpu = backend.cpu_s()

    figures: list[dict[str, Any]] = []
    rows = []
    for label, r in results.items():
        bound = r["bound"]
        for q in QS:
            ex = r["exact_s"][q]
            e_exp = _rel(r["exponential"][q], ex, 1.0)
            e_expl = _rel(r["explicit_ms"][q], ex, 1000.0)
            rows.append(
                [
                    label,
                    f"p{q}",
                    ex * 1000,
                    _val(r["exponential"][q], 1000.0),
                    e_exp,
                    bound,
                    _val(r["explicit_ms"][q], 1.0),
                    e_expl,
                    _width(r["explicit_ms"][q]),
                ]
            )
            figures.append(
                fig(
                    f"{label}: p{q} exponential |error| (scale {r['scale']})",
                    e_exp,
                    "rel",
                    at_most=bound,
                    target=f"≤ bound {bound:.4f}" if bound else None,
                )
            )
        for q in QS:
            figures.append(
                fig(
                    f"{label}: p{q} default explicit buckets |error|",
                    _rel(r["explicit_ms"][q], r["exact_s"][q], 1000.0),
                    "rel",
                )
            )
    if rollup:
        for q in QS:
            figures.append(
                fig(
                    f"1 h rollup row: p{q} exponential |error| (scale {rollup['scale']})",
                    rollup["errors"][q],
                    "rel",
                    at_most=rollup["bound"],
                    target=f"≤ bound {rollup['bound']:.4f}",
                )
            )
    lost = {label: r["n_exact"] - r["n_stored"]["exponential"] for label, r in results.items()}
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": "Percentiles (ms): exact vs exponential (s) vs default explicit (ms)",
                "columns": [
                    "range",
                    "q",
                    "exact ms",
                    "exponential ms",
                    "exp. error",
                    "exp. bound",
                    "explicit ms",
                    "explicit error",
                    "explicit bucket width ms",
                ],
                "rows": rows,
            }
        ],
        "notes": [
            f"{n:,} samples in {windows} windows of 5 s; {points} points posted, "
            f"{refused} refused; stored count minus raw count per range: {lost}.",
            f"SDK record time: {record_s / (2 * n) * 1e6:.2f} µs per record; backend CPU "
            f"{cpu:.1f} s for the whole run (ingest + queries).",
            "Exponential estimates use the bucket's 2·l·u/(l+u) point (backend/query/"
            "histograms.py); explicit ones interpolate linearly inside a bucket, so their "
            "error is bounded only by the bucket width (25 → 50 → 75 → 100 → 250 → 500 ms …).",
        ],
        "details": {"results": results, "rollup": rollup},
    }


def _rollup(db: Path, t0: int, samples: Any) -> dict[str, Any] | None:
    """Percentiles from the stored 1 h rollup row of the exponential histogram."""
    try:
        from mlpulse.backend.ingest.pipeline import open_engine
        from mlpulse.backend.query.histograms import quantile, relative_error
        from mlpulse.backend.storage.aggregate import merge_all
    except ImportError:
        return None
    store = open_engine(db)
    try:
        ids = [s.id for s in store.series(EXP)]
        aggs = [a for _, _, a in store.read(ids, 3600, t0, t0 + 3600)]
    finally:
        store.close()
    if not aggs:
        return None
    agg = merge_all(aggs)
    if agg.exponential is None:
        return None
    errors = {}
    for q in QS:
        est = quantile(agg, q / 100)
        exact = float(np.percentile(samples, q, method="inverted_cdf"))
        errors[q] = None if est is None else rnd(abs(est.value - exact) / exact)
    return {
        "rows": len(aggs),
        "count": agg.count,
        "scale": agg.exponential.scale,
        "bound": relative_error(agg.exponential.scale),
        "errors": errors,
    }


def _val(p: dict[str, Any] | None, factor: float) -> float | None:
    return None if not p or p.get("value") is None else p["value"] * factor


def _rel(p: dict[str, Any] | None, exact_s: float, per_s: float) -> float | None:
    if not p or p.get("value") is None:
        return None
    return rnd(abs(p["value"] / per_s - exact_s) / exact_s)


def _width(p: dict[str, Any] | None) -> float | None:
    if not p or p.get("upper") is None:
        return None
    return float(p["upper"]) - float(p["lower"])
