"""A realistic mlapi export stream: what N instances of mlapi would send, 200 series each.

Built with the real SDK (cumulative temporality, mlpulse's views: exponential latency and
value histograms, explicit confidence buckets) and the real OTLP encoder; every window's
request is re-timed to its place in a 5 s grid, so hours of exports are made in seconds.

Per instance (`service.instance.id`), 200 series:
- `http.server.request.duration` (exponential): 20 routes x {200, 422, 500} = 60
- per model version (5 models x 2 versions = 10): predictions x {hit, miss} (20),
  inference duration (exp, 10), confidence (explicit, 10), predicted value (exp, 10),
  feedback / Σ|e| / Σe² / Σy / Σy² (50), baseline MAE and R² gauges (20)
- cache lookups (5 models x {hit, miss}) = 10, cache entries and size = 2
- process CPU / memory / uptime, system CPU / memory, 3 filesystems = 8
90 of the 200 are histograms. The first window of each instance is a baseline (the
backend joined mid-stream and takes a cumulative series' first point as its zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench._otlp import collect, count_points, data_points, retime

ROUTES = [f"/api/v1/route{i:02d}" for i in range(18)] + ["/predict/result", "/predict/duration"]
STATUSES = (200, 422, 500)
MODELS = [f"model{i}" for i in range(5)]
VERSIONS = ("1", "2")
SERIES_PER_INSTANCE = 200


@dataclass
class Stream:
    """Serialized requests of one instance, in time order, and what they should store."""

    instance: str
    bodies: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    points: list[int] = field(default_factory=list)
    # Expected after the backend: observations of histogram series and points of the others,
    # counted from window 1 on (window 0 is the baseline).
    hist_observations: float = 0.0
    sum_points: int = 0
    gauge_points: int = 0


def build_streams(
    instances: int,
    windows: int,
    t_first: float,
    step: float = 5.0,
    seed: int = 1,
    requests_per_window: int = 20,
) -> list[Stream]:
    """Build `windows` consecutive exports for each of `instances` mlapi instances."""
    return [
        _build(f"mlapi-{i}", windows, t_first, step, seed + i, requests_per_window)
        for i in range(instances)
    ]


def _build(
    instance: str, windows: int, t_first: float, step: float, seed: int, per_window: int
) -> Stream:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    from instrumentation import metric_views

    rng = np.random.default_rng(seed)
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create(
            {
                "service.name": "mlapi",
                "service.version": "0.1.0",
                "service.instance.id": instance,
                "deployment.environment.name": "bench",
            }
        ),
        views=metric_views(),
    )
    m = provider.get_meter("mlpulse.instrumentation", "0.1.0")
    http = m.create_histogram("http.server.request.duration", unit="s")
    preds = m.create_counter("ml.model.predictions", unit="{prediction}")
    infer = m.create_histogram("ml.model.inference.duration", unit="s")
    conf = m.create_histogram("ml.model.prediction.confidence", unit="1")
    value = m.create_histogram("ml.model.prediction.value", unit="1")
    fb = m.create_counter("ml.model.feedback", unit="{feedback}")
    eabs = m.create_counter("ml.model.error.absolute", unit="1")
    esq = m.create_counter("ml.model.error.squared", unit="1")
    act = m.create_up_down_counter("ml.model.actual", unit="1")
    actsq = m.create_counter("ml.model.actual.squared", unit="1")
    bmae = m.create_gauge("ml.model.baseline.mae", unit="1")
    br2 = m.create_gauge("ml.model.baseline.r2", unit="1")
    lookups = m.create_counter("ml.cache.lookups", unit="{lookup}")
    state = {"t": 0.0}

    def gauge(name: str, unit: str, fn: Any, attrs: list[dict[str, str]] | None = None) -> None:
        def cb(_: CallbackOptions) -> list[Observation]:
            return [Observation(fn(), a) for a in (attrs or [{}])]

        m.create_observable_gauge(name, [cb], unit=unit)

    gauge("ml.cache.entries", "{entry}", lambda: 1000 + state["t"] % 97)
    gauge("ml.cache.size", "By", lambda: 2e6 + state["t"] % 1e4)
    gauge("process.cpu.utilization", "1", lambda: float(rng.uniform(0.05, 0.4)))
    gauge("process.memory.usage", "By", lambda: 1.5e8 + float(rng.uniform(0, 1e6)))
    gauge("process.uptime", "s", lambda: state["t"])
    gauge("system.cpu.utilization", "1", lambda: float(rng.uniform(0.1, 0.6)))
    gauge("system.memory.utilization", "1", lambda: float(rng.uniform(0.3, 0.5)))
    gauge(
        "system.filesystem.utilization",
        "1",
        lambda: float(rng.uniform(0.2, 0.8)),
        [{"system.filesystem.mountpoint": p} for p in ("/", "/data", "/var")],
    )

    http_attrs = [
        {
            "http.request.method": "POST" if r.startswith("/predict") else "GET",
            "http.route": r,
            "http.response.status_code": s,
            **({"error.type": str(s)} if s >= 500 else {}),
        }
        for r in ROUTES
        for s in STATUSES
    ]
    mv = [{"ml.model.name": mo, "ml.model.version": v} for mo in MODELS for v in VERSIONS]
    stream = Stream(instance)
    hist_names = {
        "http.server.request.duration",
        "ml.model.inference.duration",
        "ml.model.prediction.confidence",
        "ml.model.prediction.value",
    }
    prev_hist = 0.0
    for w in range(windows):
        state["t"] = w * step
        # Every series gets values in every window (cumulative: all are exported anyway).
        for a in http_attrs:
            for v in rng.lognormal(math.log(0.03), 0.8, per_window).tolist():
                http.record(v, a)
        for a in mv:
            for hit in (True, False):
                preds.add(int(rng.integers(1, 20)), {**a, "ml.prediction.cache_hit": hit})
            for v in rng.lognormal(math.log(0.004), 0.5, 4).tolist():
                infer.record(v, a)
            for v in rng.uniform(0.3, 0.99, 4).tolist():
                conf.record(v, a)
            for v in rng.lognormal(4.0, 0.7, 4).tolist():
                value.record(v, a)
            e = rng.normal(0, 10, 3)
            y = rng.lognormal(4.0, 0.7, 3)
            fb.add(3, a)
            eabs.add(float(np.abs(e).sum()), a)
            esq.add(float((e**2).sum()), a)
            act.add(float(y.sum()), a)
            actsq.add(float((y**2).sum()), a)
            bmae.set(8.0, a)
            br2.set(0.8, a)
        for mo in MODELS:
            for res in ("hit", "miss"):
                lookups.add(int(rng.integers(1, 30)), {"ml.cache.result": res, "ml.model.name": mo})
        req = collect(reader)
        ts = t_first + w * step
        # Instances started an hour before the backend: their first export is a baseline.
        retime(req, int((t_first - 3600) * 1e9), int(ts * 1e9))
        n = count_points(req)
        hist_total = 0.0
        n_sum = n_gauge = 0
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    pts = getattr(metric, kind).data_points
                    if metric.name in hist_names:
                        hist_total += sum(p.count for p in pts)
                    elif kind == "sum":
                        n_sum += len(pts)
                    else:
                        n_gauge += len(pts)
        if w == 0:
            if n != SERIES_PER_INSTANCE:
                raise RuntimeError(f"payload has {n} series per instance, not 200")
            stream.gauge_points += n_gauge
        else:
            stream.hist_observations += hist_total - prev_hist
            stream.sum_points += n_sum
            stream.gauge_points += n_gauge
        prev_hist = hist_total
        stream.bodies.append(req.SerializeToString())
        stream.times.append(ts)
        stream.points.append(n)
    provider.shutdown()
    return stream


def rows_for_sqlite(body: bytes, series_ids: dict[tuple[str, ...], int]) -> list[tuple[Any, ...]]:
    """The rows a store writes for one request: each point into its 10 s, 1 min and 1 h
    bucket, histogram buckets as JSON (the `buckets` table's columns)."""
    import json

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    req = ExportMetricsServiceRequest()
    req.ParseFromString(body)
    out = []
    for rm in req.resource_metrics:
        inst = next(
            (
                a.value.string_value
                for a in rm.resource.attributes
                if a.key == "service.instance.id"
            ),
            "",
        )
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                for p in getattr(metric, kind).data_points:
                    attrs = tuple(sorted(f"{a.key}={a.value}" for a in p.attributes))
                    key = (inst, metric.name, *attrs)
                    sid = series_ids.setdefault(key, len(series_ids) + 1)
                    t = p.time_unix_nano / 1e9
                    if kind == "exponential_histogram":
                        hist = json.dumps(
                            {
                                "scale": p.scale,
                                "zero": p.zero_count,
                                "pos": [p.positive.offset, list(p.positive.bucket_counts)],
                            }
                        )
                        row = (float(p.count), p.sum, p.min, p.max, None, hist)
                    elif kind == "histogram":
                        hist = json.dumps(
                            {"bounds": list(p.explicit_bounds), "counts": list(p.bucket_counts)}
                        )
                        row = (float(p.count), p.sum, p.min, p.max, None, hist)
                    else:
                        v = p.as_double if p.HasField("as_double") else float(p.as_int)
                        row = (1.0, v, v, v, v, None)
                    for res in (10, 60, 3600):
                        ts = int(t // res) * res
                        c, s, mn, mx, last, h = row
                        out.append((res, sid, ts, c, s, mn, mx, last, p.time_unix_nano, h, None))
    return out


def total_points(streams: list[Stream]) -> int:
    return sum(sum(s.points) for s in streams)


__all__ = ["Stream", "build_streams", "data_points", "rows_for_sqlite", "total_points"]
