"""History, distribution and exemplar queries: the JSON of `/metrics/history`,
`/metrics/distribution` and `/metrics/exemplars`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlpulse.backend.query.histograms import distribution as buckets_of
from mlpulse.backend.query.histograms import quantile, relative_error
from mlpulse.backend.query.signals import (
    LABEL_KEYS,
    PREDICTION_WINDOW_S,
    SIGNALS,
    Signal,
    SignalSeries,
    choose_resolution,
    evaluate_range,
)
from mlpulse.backend.storage.aggregate import Aggregate, merge_all
from mlpulse.backend.storage.base import MetricStore, SeriesInfo
from mlpulse.backend.storage.rollup import bucket_start

NICE_STEPS = (10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TARGET_POINTS = 300
MAX_POINTS = 11_000


def auto_step(start: float, end: float) -> int:
    """Pick a step giving about TARGET_POINTS points."""
    want = (end - start) / TARGET_POINTS
    return next((s for s in NICE_STEPS if s >= want), NICE_STEPS[-1])


def history(
    store: MetricStore,
    signal: Signal,
    start: float,
    end: float,
    step: int,
    group_by: Sequence[str] | None,
    filters: Mapping[str, str] | None,
    retention: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """Return the `/metrics/history` document for one signal."""
    if signal.by_prediction_time:
        # Predictions are placed in 5-minute windows: a step is a whole number of them.
        step = max(-(-step // PREDICTION_WINDOW_S), 1) * PREDICTION_WINDOW_S
    res = choose_resolution(start, end, step, retention)
    step = max(step, res)
    series = evaluate_range(store, signal, start, end, step, group_by, filters, resolution=res)
    return {
        "metric": signal.name,
        "unit": signal.unit,
        "from": start,
        "to": end,
        "step": step,
        "resolution": res,
        "series": series_json(series),
    }


def series_json(series: Iterable[SignalSeries]) -> list[dict[str, Any]]:
    """Series in `/metrics/history`'s shape (also what a live update pushes)."""
    out = []
    for s in series:
        item: dict[str, Any] = {
            "labels": s.labels,
            "points": [[p.time, p.value] for p in s.points],
        }
        if any(p.lower is not None for p in s.points):
            item["bounds"] = [[p.time, p.lower, p.upper] for p in s.points]
        out.append(item)
    return out


def _window(
    store: MetricStore,
    metric: str,
    start: float,
    end: float,
    filters: Mapping[str, str] | None,
) -> tuple[list[SeriesInfo], list[tuple[SeriesInfo, Aggregate]]]:
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    series = store.series(metric, mapped)
    by_id = {s.id: s for s in series}
    res = choose_resolution(start, end)
    rows = [
        (by_id[sid], agg)
        for sid, _, agg in store.read(list(by_id), res, bucket_start(start, res), end)
    ]
    return series, rows


def distribution(
    store: MetricStore,
    metric: str,
    start: float,
    end: float,
    filters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Merged histogram of a metric over a window: buckets, percentiles, error bound."""
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    series = store.series(metric, mapped)
    ids = [s.id for s in series]
    totals = (
        store.window_totals(ids, start, end, histograms=True, align=choose_resolution(start, end))
        if ids
        else {}
    )
    agg = merge_all(list(totals.values()))
    scale = agg.exponential.scale if agg.exponential is not None else None
    pct: dict[str, Any] = {}
    for q in (50, 90, 95, 99):
        est = quantile(agg, q / 100)
        pct[f"p{q}"] = None if est is None else est.as_dict()
    return {
        "metric": metric,
        "unit": series[0].unit if series else "",
        "from": start,
        "to": end,
        "count": agg.count,
        "sum": agg.sum,
        "min": agg.min,
        "max": agg.max,
        "kind": "exponential" if scale is not None else "explicit",
        "scale": scale,
        "relative_error": relative_error(scale) if scale is not None else None,
        "percentiles": pct,
        "buckets": [{"lower": lo, "upper": hi, "count": c} for lo, hi, c in buckets_of(agg)],
    }


def exemplars(
    store: MetricStore,
    metric: str,
    start: float,
    end: float,
    filters: Mapping[str, str] | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Exemplars of a metric in a window (value range optional), slowest first."""
    _, rows = _window(store, metric, start, end, filters)
    found: list[dict[str, Any]] = []
    for s, agg in rows:
        for ex in agg.exemplars:
            if min_value is not None and ex.value < min_value:
                continue
            if max_value is not None and ex.value > max_value:
                continue
            if not start <= ex.time_ns / 1e9 < end + 1:
                continue
            found.append(
                {
                    "trace_id": ex.trace_id,
                    "span_id": ex.span_id,
                    "value": ex.value,
                    "time": ex.time_ns / 1e9,
                    "labels": {"service": s.service, **dict(s.attributes)},
                }
            )
    found.sort(key=lambda e: (-float(e["value"]), -float(e["time"])))
    return found[:limit]


def catalog(store: MetricStore) -> dict[str, Any]:
    """Every signal and every stored metric."""
    return {
        "signals": [
            {"name": s.name, "unit": s.unit, "default_group": list(s.default_group)}
            for s in SIGNALS.values()
        ],
        "metrics": [
            {"name": m.name, "kind": m.kind, "unit": m.unit, "series": m.series}
            for m in store.metrics()
        ],
        "group_keys": sorted(LABEL_KEYS),
    }
