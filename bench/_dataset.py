"""A day of data: 20 series of one mlapi instance at 5 s resolution, ingested over OTLP.

Used by B5 (dashboard cold load), B6 (query latency) and B7 (storage bytes). The 20 series
(delta temporality, built as protobuf directly — fast enough for 17,280 windows):

- `http.server.request.duration` exponential histograms (scale 3): POST /predict/result,
  /predict/duration and /feedback with 200, the two predict routes with 500, /feedback
  with 422 — 6 series, ~10 requests/s in all;
- `ml.model.predictions` for 2 models x cache hit/miss — 4;
- `ml.model.prediction.confidence` explicit histograms (0.05 steps) for 2 models — 2;
- `ml.cache.lookups` hit/miss — 2;
- model `result` v1 error statistics: feedback, Σ|e|, Σe², Σy, Σy² — 5;
- `system.cpu.utilization` gauge — 1.

Filling goes through `POST /v1/metrics` (the real path), 60 windows per request. The
filled database is cached in `bench/results/.cache/` for 30 min, so B5, B6 and B7 of one
run share it (copied, never modified in place).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from bench._common import REPO, backend_child, free_port
from bench._otlp import Poster, rejected

STEP = 5
SERIES = 20
CACHE = REPO / "bench" / "results" / ".cache"
CACHE_TTL_S = 1800
DELTA = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
SCALE = 3
CONF_BOUNDS = [round(i * 0.05, 2) for i in range(1, 20)]


def _attrs(target: Any, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        kv = target.add()
        kv.key = k
        if isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        else:
            kv.value.string_value = str(v)


HTTP = [
    ("POST", "/predict/result", 200, 0.45),
    ("POST", "/predict/duration", 200, 0.35),
    ("POST", "/feedback", 200, 0.16),
    ("POST", "/predict/result", 500, 0.015),
    ("POST", "/predict/duration", 500, 0.01),
    ("POST", "/feedback", 422, 0.015),
]
RATE = 10.0  # requests per second, all routes


def _request(t0: float, windows: int, rng: np.random.Generator) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    _attrs(
        rm.resource.attributes,
        {
            "service.name": "mlapi",
            "service.version": "0.1.0",
            "service.instance.id": "day-1",
            "deployment.environment.name": "bench",
        },
    )
    sm = rm.scope_metrics.add()
    sm.scope.name = "mlpulse.instrumentation"
    times = [int((t0 + w * STEP) * 1e9) for w in range(windows)]

    http = sm.metrics.add()
    http.name, http.unit = "http.server.request.duration", "s"
    http.exponential_histogram.aggregation_temporality = DELTA
    for method, route, status, share in HTTP:
        for w, t in enumerate(times):
            n = int(rng.poisson(RATE * STEP * share))
            p = http.exponential_histogram.data_points.add()
            attrs: dict[str, Any] = {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
            }
            if status >= 500:
                attrs["error.type"] = str(status)
            _attrs(p.attributes, attrs)
            p.start_time_unix_nano = t - STEP * 10**9
            p.time_unix_nano = t
            p.scale = SCALE
            p.count = n
            if n:
                # Diurnal swing in latency: slower in the "afternoon" of the day.
                mu = math.log(0.03) + 0.3 * math.sin(2 * math.pi * w * STEP / 86400)
                v = rng.lognormal(mu, 0.7, n)
                idx = np.ceil(np.log2(v) * 2**SCALE).astype(int) - 1
                lo = int(idx.min())
                p.positive.offset = lo
                p.positive.bucket_counts.extend(np.bincount(idx - lo).tolist())
                p.sum = float(v.sum())
                p.min = float(v.min())
                p.max = float(v.max())

    def counter(name: str, unit: str, series: list[tuple[dict[str, Any], Any]]) -> None:
        m = sm.metrics.add()
        m.name, m.unit = name, unit
        m.sum.aggregation_temporality = DELTA
        m.sum.is_monotonic = name != "ml.model.actual"
        for attrs, fn in series:
            for t in times:
                p = m.sum.data_points.add()
                _attrs(p.attributes, attrs)
                p.start_time_unix_nano = t - STEP * 10**9
                p.time_unix_nano = t
                p.as_double = float(fn())

    model = {"ml.model.name": "result", "ml.model.version": "1"}
    counter(
        "ml.model.predictions",
        "{prediction}",
        [
            (
                {"ml.model.name": mo, "ml.model.version": "1", "ml.prediction.cache_hit": hit},
                lambda: rng.poisson(20),
            )
            for mo in ("result", "duration")
            for hit in (True, False)
        ],
    )
    counter(
        "ml.cache.lookups",
        "{lookup}",
        [
            ({"ml.cache.result": r, "ml.model.name": "result"}, lambda: rng.poisson(20))
            for r in ("hit", "miss")
        ],
    )
    counter("ml.model.feedback", "{feedback}", [(model, lambda: 5)])
    counter("ml.model.error.absolute", "1", [(model, lambda: abs(rng.normal(40, 5)))])
    counter("ml.model.error.squared", "1", [(model, lambda: abs(rng.normal(400, 50)))])
    counter("ml.model.actual", "1", [(model, lambda: rng.normal(500, 50))])
    counter("ml.model.actual.squared", "1", [(model, lambda: abs(rng.normal(50000, 5000)))])

    conf = sm.metrics.add()
    conf.name, conf.unit = "ml.model.prediction.confidence", "1"
    conf.histogram.aggregation_temporality = DELTA
    for mo in ("result", "duration"):
        for t in times:
            v = rng.beta(8, 2, 40)
            p = conf.histogram.data_points.add()
            _attrs(p.attributes, {"ml.model.name": mo, "ml.model.version": "1"})
            p.start_time_unix_nano = t - STEP * 10**9
            p.time_unix_nano = t
            p.count = len(v)
            p.sum = float(v.sum())
            p.min, p.max = float(v.min()), float(v.max())
            p.explicit_bounds.extend(CONF_BOUNDS)
            p.bucket_counts.extend(
                np.bincount(np.searchsorted(CONF_BOUNDS, v), minlength=20).tolist()
            )

    cpu = sm.metrics.add()
    cpu.name, cpu.unit = "system.cpu.utilization", "1"
    for t in times:
        p = cpu.gauge.data_points.add()
        p.time_unix_nano = t
        p.as_double = float(rng.uniform(0.1, 0.6))
    return req


def fill(port: int, hours: float, end: float, per_request: int = 60) -> dict[str, Any]:
    """POST `hours` of 5 s windows ending at `end` to the backend on `port`."""
    rng = np.random.default_rng(2024)
    windows = int(hours * 3600 / STEP)
    t_first = (int(end) // STEP) * STEP - windows * STEP
    poster = Poster(port)
    points = refused = 0
    t0 = time.perf_counter()
    try:
        for w in range(0, windows, per_request):
            n = min(per_request, windows - w)
            req = _request(t_first + w * STEP, n, rng)
            status, body = poster.post(req.SerializeToString())
            if status != 200:
                raise RuntimeError(f"fill: ingest answered {status}: {body[:200]!r}")
            refused += rejected(body)
            points += n * SERIES
    finally:
        poster.close()
    return {
        "hours": hours,
        "windows": windows,
        "points": points,
        "refused": refused,
        "fill_s": time.perf_counter() - t0,
        "from": t_first,
        "to": t_first + windows * STEP,
    }


def day_database(target_dir: Path, hours: float, log: Path | None = None) -> dict[str, Any]:
    """Put a filled database into `target_dir` (a backend data dir); reuse a fresh cache."""
    import json

    key = f"day-{hours:g}h"
    cached = CACHE / key
    meta_path = cached / "meta.json"
    target_dir.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if time.time() - meta["created"] < CACHE_TTL_S:
            shutil.copy2(cached / "mlpulse.db", target_dir / "mlpulse.db")
            return {**meta, "cached": True}
    work = CACHE / f"{key}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    with backend_child(work, port, log=log):
        meta = fill(port, hours, time.time())
    # The backend checkpointed and closed the database when it stopped.
    for extra in ("mlpulse.db-wal", "mlpulse.db-shm"):
        if (work / extra).exists() and (work / extra).stat().st_size:
            _checkpoint(work / "mlpulse.db")
    meta["created"] = time.time()
    (work / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(cached, ignore_errors=True)
    work.rename(cached)
    shutil.copy2(cached / "mlpulse.db", target_dir / "mlpulse.db")
    return {**meta, "cached": False}


def _checkpoint(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
