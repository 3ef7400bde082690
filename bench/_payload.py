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


def _views() -> list[Any]:
    """mlpulse's aggregations (docs/contracts.md): exponential latency and value
    histograms (160 buckets, like the instrumentation), explicit 0.05-step confidence."""
    from opentelemetry.sdk.metrics.view import (
        ExplicitBucketHistogramAggregation,
        ExponentialBucketHistogramAggregation,
        View,
    )

    views = [
        View(
            instrument_name=name,
            aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20),
        )
        for name in (
            "http.server.request.duration",
            "ml.model.inference.duration",
            "ml.model.prediction.value",
        )
    ]
    views.append(
        View(
            instrument_name="ml.model.prediction.confidence",
            aggregation=ExplicitBucketHistogramAggregation(
                boundaries=[round(i * 0.05, 2) for i in range(1, 20)]
            ),
        )
    )
    return views


class Instance:
    """One simulated mlapi instance: a real SDK MeterProvider with 200 series.

    `export(ts)` records one window of activity, collects, encodes and re-times it to
    `ts` (epoch seconds), and returns the request.
    """

    HIST = frozenset(
        {
            "http.server.request.duration",
            "ml.model.inference.duration",
            "ml.model.prediction.confidence",
            "ml.model.prediction.value",
        }
    )

    def __init__(self, instance: str, seed: int, per_window: int, started: float) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource

        self.instance = instance
        self.per_window = per_window
        self.started_ns = int(started * 1e9)
        self.rng = rng = np.random.default_rng(seed)
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource.create(
                {
                    "service.name": "mlapi",
                    "service.version": "0.1.0",
                    "service.instance.id": instance,
                    "deployment.environment.name": "bench",
                }
            ),
            views=_views(),
        )
        m = self.provider.get_meter("mlpulse.instrumentation", "0.1.0")
        self.http = m.create_histogram("http.server.request.duration", unit="s")
        self.preds = m.create_counter("ml.model.predictions", unit="{prediction}")
        self.infer = m.create_histogram("ml.model.inference.duration", unit="s")
        self.conf = m.create_histogram("ml.model.prediction.confidence", unit="1")
        self.value = m.create_histogram("ml.model.prediction.value", unit="1")
        self.fb = m.create_counter("ml.model.feedback", unit="{feedback}")
        self.eabs = m.create_counter("ml.model.error.absolute", unit="1")
        self.esq = m.create_counter("ml.model.error.squared", unit="1")
        self.act = m.create_up_down_counter("ml.model.actual", unit="1")
        self.actsq = m.create_counter("ml.model.actual.squared", unit="1")
        self.bmae = m.create_gauge("ml.model.baseline.mae", unit="1")
        self.br2 = m.create_gauge("ml.model.baseline.r2", unit="1")
        self.lookups = m.create_counter("ml.cache.lookups", unit="{lookup}")
        self.t = 0.0

        def gauge(name: str, unit: str, fn: Any, attrs: list[dict[str, str]] | None = None) -> None:
            def cb(_: CallbackOptions) -> list[Observation]:
                return [Observation(fn(), a) for a in (attrs or [{}])]

            m.create_observable_gauge(name, [cb], unit=unit)

        gauge("ml.cache.entries", "{entry}", lambda: 1000 + self.t % 97)
        gauge("ml.cache.size", "By", lambda: 2e6 + self.t % 1e4)
        gauge("process.cpu.utilization", "1", lambda: float(rng.uniform(0.05, 0.4)))
        gauge("process.memory.usage", "By", lambda: 1.5e8 + float(rng.uniform(0, 1e6)))
        gauge("process.uptime", "s", lambda: self.t)
        gauge("system.cpu.utilization", "1", lambda: float(rng.uniform(0.1, 0.6)))
        gauge("system.memory.utilization", "1", lambda: float(rng.uniform(0.3, 0.5)))
        gauge(
            "system.filesystem.utilization",
            "1",
            lambda: float(rng.uniform(0.2, 0.8)),
            [{"system.filesystem.mountpoint": p} for p in ("/", "/data", "/var")],
        )
        self.http_attrs = [
            {
                "http.request.method": "POST" if r.startswith("/predict") else "GET",
                "http.route": r,
                "http.response.status_code": s,
                **({"error.type": str(s)} if s >= 500 else {}),
            }
            for r in ROUTES
            for s in STATUSES
        ]
        self.mv = [{"ml.model.name": mo, "ml.model.version": v} for mo in MODELS for v in VERSIONS]

    def export(self, ts: float) -> Any:
        """Record one window, collect it and time it at `ts`; return the request."""
        rng = self.rng
        self.t = ts
        for a in self.http_attrs:
            for v in rng.lognormal(math.log(0.03), 0.8, self.per_window).tolist():
                self.http.record(v, a)
        for a in self.mv:
            for hit in (True, False):
                self.preds.add(int(rng.integers(1, 20)), {**a, "ml.prediction.cache_hit": hit})
            for v in rng.lognormal(math.log(0.004), 0.5, 4).tolist():
                self.infer.record(v, a)
            for v in rng.uniform(0.3, 0.99, 4).tolist():
                self.conf.record(v, a)
            for v in rng.lognormal(4.0, 0.7, 4).tolist():
                self.value.record(v, a)
            e = rng.normal(0, 10, 3)
            y = rng.lognormal(4.0, 0.7, 3)
            self.fb.add(3, a)
            self.eabs.add(float(np.abs(e).sum()), a)
            self.esq.add(float((e**2).sum()), a)
            self.act.add(float(y.sum()), a)
            self.actsq.add(float((y**2).sum()), a)
            self.bmae.set(8.0, a)
            self.br2.set(0.8, a)
        for mo in MODELS:
            for res in ("hit", "miss"):
                self.lookups.add(
                    int(rng.integers(1, 30)), {"ml.cache.result": res, "ml.model.name": mo}
                )
        req = collect(self.reader)
        retime(req, self.started_ns, int(ts * 1e9))
        return req

    def shutdown(self) -> None:
        self.provider.shutdown()


def _build(
    instance: str, windows: int, t_first: float, step: float, seed: int, per_window: int
) -> Stream:
    # Instances started an hour before the backend: their first export is a baseline.
    inst = Instance(instance, seed, per_window, started=t_first - 3600)
    stream = Stream(instance)
    prev_hist = 0.0
    for w in range(windows):
        ts = t_first + w * step
        req = inst.export(ts)
        n = count_points(req)
        hist_total = 0.0
        n_sum = n_gauge = 0
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    pts = getattr(metric, kind).data_points
                    if metric.name in Instance.HIST:
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
    inst.shutdown()
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


__all__ = ["Instance", "Stream", "build_streams", "data_points", "rows_for_sqlite", "total_points"]
