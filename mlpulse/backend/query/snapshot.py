"""The `/metrics/current` and `/metrics/summary` shape: the seed's four panels.

Every number comes from `mlpulse.backend.query.signals`; null means no data in the window.
Percentiles are scalars (the seed's fields) with a `*_bounds_ms` twin carrying
`{"value", "lower", "upper"}` of the histogram bucket the percentile falls in.
"""

from __future__ import annotations

from typing import Any

from mlpulse.backend.query.signals import (
    BASELINE_MAE,
    FEEDBACK,
    HTTP_DURATION,
    PREDICTIONS,
    SignalValue,
    choose_resolution,
    evaluate,
    latest_time,
    shared_merges,
)
from mlpulse.backend.query.versions import first_seen
from mlpulse.backend.query.view import read_once
from mlpulse.backend.storage.base import MetricStore
from mlpulse.backend.storage.rollup import bucket_start

BASELINE_LOOKBACK_S = 86_400.0  # baselines are gauges: take the latest of the last day
STALE_AFTER_S = 30.0
"""An instance whose gauges are older than this is stopped: its uptime, memory and CPU
leave the "now" figures (six missed 5 s exports; the page says "stopped")."""


def _one(values: list[SignalValue]) -> SignalValue:
    return values[0] if values else SignalValue({}, None, 0.0)


def _bounds(v: SignalValue) -> dict[str, float | None] | None:
    if v.value is None:
        return None
    return {"value": v.value, "lower": v.lower, "upper": v.upper}


def _by_model(values: list[SignalValue]) -> dict[str, SignalValue]:
    return {v.labels.get("model", ""): v for v in values}


def _observed_span(
    store: MetricStore,
    start: float,
    end: float,
    uptime_s: float | None,
    filters: dict[str, str] | None,
) -> float:
    """The part of the window the producers were up for, to divide counts into rates.

    A service that started a minute ago into a 5-minute window served its requests in
    one minute, not five. Its own `process.uptime` says how long it has been up; the
    earliest stored request bucket guards against a restart inside the window (the old
    incarnation's requests count too, so the span reaches back to them). Without an
    uptime the whole window is used, as a plain rate over the window.
    """
    window = end - start
    if uptime_s is None or uptime_s <= 0 or uptime_s >= window:
        return window
    res = choose_resolution(start, end)
    ids = [s.id for s in store.series(HTTP_DURATION, filters)]
    first = store.first_bucket(ids, res, bucket_start(start, res), end) if ids else None
    covered = end - first if first is not None else 0.0
    return min(window, max(uptime_s, covered, 1.0))


def _versions(
    store: MetricStore, start: float, end: float, filters: dict[str, str] | None
) -> dict[str, list[dict[str, Any]]]:
    """Per model, each version seen in the window side by side, the serving one last.

    Versions are ordered by when they first reported (a retrain makes a new one), so the
    last is the serving one; each entry has its predictions, MAE with its interval,
    baseline, degradation and PSI over the window.
    """
    keys = ["model", "version"]

    def by_version(signal: str, since: float = start) -> dict[tuple[str, str], SignalValue]:
        return {
            (v.labels.get("model", ""), v.labels.get("version", "")): v
            for v in evaluate(store, signal, since, end, keys, filters)
        }

    predictions = by_version("prediction_count")
    mae = by_version("model_mae")
    baseline = by_version("baseline_mae", end - max(end - start, BASELINE_LOOKBACK_S))
    degradation = by_version("mae_degradation_percent")
    psi = by_version("prediction_psi")
    seen = {k for k in (*predictions, *mae) if k[1]}
    first = first_seen(store, start, end, filters)

    def value(table: dict[tuple[str, str], SignalValue], key: tuple[str, str]) -> float | None:
        v = table.get(key)
        return None if v is None else v.value

    out: dict[str, list[dict[str, Any]]] = {}
    for model, version in sorted(seen):
        m = mae.get((model, version))
        out.setdefault(model, []).append(
            {
                "version": version,
                "predictions_count": value(predictions, (model, version)) or 0,
                "avg_mae": value(mae, (model, version)),
                "mae_interval": None if m is None else _bounds(m),
                "feedback_count": 0 if m is None else m.samples,
                "baseline_mae": value(baseline, (model, version)),
                "degradation_percent": value(degradation, (model, version)),
                "prediction_psi": value(psi, (model, version)),
                "first_seen": first.get((model, version)),
            }
        )
    for entries in out.values():
        entries.sort(key=lambda e: (e["first_seen"] or 0.0, e["version"]))
    return out


def snapshot(
    store: MetricStore,
    end: float,
    window: float,
    service: str | None = None,
    instance: str | None = None,
    stale_after: float = STALE_AFTER_S,
) -> dict[str, Any]:
    """Compute the four panels over [end - window, end), optionally for one service.

    The system figures (uptime, memory, CPU, disk) are levels "now": they are read over
    the last `stale_after` seconds only, so an instance that stopped sending drops out of
    them instead of adding its last memory to the live one's.
    """
    with shared_merges():  # p50, p95 and p99 of one group merge its histograms once
        return _snapshot(read_once(store), end, window, service, instance, stale_after)


def _snapshot(
    store: MetricStore,
    end: float,
    window: float,
    service: str | None,
    instance: str | None,
    stale_after: float,
) -> dict[str, Any]:
    start = end - window
    filters = {k: v for k, v in (("service", service), ("instance", instance)) if v} or None

    def total(signal: str) -> SignalValue:
        return _one(evaluate(store, signal, start, end, [], filters))

    def now_level(signal: str) -> SignalValue:
        return _one(evaluate(store, signal, end - stale_after, end, [], filters))

    def per_model(signal: str, since: float = start) -> dict[str, SignalValue]:
        return _by_model(evaluate(store, signal, since, end, ["model"], filters))

    p50, p95, p99 = (total(f"p{p}_latency_ms") for p in (50, 95, 99))
    requests = total("request_rate")
    span = _observed_span(store, start, end, total("uptime_seconds").value, filters)
    api = {
        "requests_per_minute": None if requests.value is None else requests.samples * 60 / span,
        "total_requests": requests.samples,
        "avg_response_time_ms": total("avg_latency_ms").value,
        "error_rate_percent": total("error_rate_percent").value,
        "p50_response_time_ms": p50.value,
        "p95_response_time_ms": p95.value,
        "p99_response_time_ms": p99.value,
        "p50_response_time_bounds_ms": _bounds(p50),
        "p95_response_time_bounds_ms": _bounds(p95),
        "p99_response_time_bounds_ms": _bounds(p99),
    }

    signals = {
        "predictions_count": per_model("prediction_count"),
        "prediction_rate_per_minute": {
            model: SignalValue(v.labels, v.samples * 60.0 / span, v.samples, None, None)
            for model, v in per_model("prediction_count").items()
        },
        "avg_mae": per_model("model_mae"),
        "rmse": per_model("model_rmse"),
        "r2": per_model("model_r2"),
        "avg_confidence": per_model("avg_confidence"),
        "baseline_mae": per_model("baseline_mae", end - max(window, BASELINE_LOOKBACK_S)),
        "degradation_percent": per_model("mae_degradation_percent"),
        "feedback_count": per_model("feedback_count"),
        "feedback_coverage_percent": per_model("feedback_coverage_percent"),
        "label_coverage_percent": per_model("label_coverage_percent"),
        "label_lag_p95_s": per_model("label_lag_p95_s"),
        "mae_degradation_lower_percent": per_model("mae_degradation_lower_percent"),
        "prediction_psi": per_model("prediction_psi"),
        "prediction_js": per_model("prediction_js"),
        "confidence_psi": per_model("confidence_psi"),
        # Cache entries of a version that no longer serves (after a retrain): memory
        # held until their TTL, never served (the cache key holds the version).
        "cache_stale_entries": per_model("cache_stale_entries"),
    }
    mae_interval = per_model("model_mae")
    by_cache: dict[str, dict[str, float | None]] = {}
    for cv in evaluate(store, "model_mae", start, end, ["model", "cache_hit"], filters):
        hit = cv.labels.get("cache_hit", "").lower()
        if hit in ("true", "false"):
            kind = "hit" if hit == "true" else "miss"
            by_cache.setdefault(cv.labels.get("model", ""), {})[kind] = cv.value
    versions = _versions(store, start, end, filters)
    features: dict[str, list[dict[str, Any]]] = {}
    for fv in evaluate(store, "feature_psi", start, end, ["model", "feature"], filters):
        if fv.value is not None:
            features.setdefault(fv.labels.get("model", ""), []).append(
                {"feature": fv.labels.get("feature", ""), "psi": fv.value, "samples": fv.samples}
            )
    models = sorted(
        set(signals["predictions_count"])
        | set(signals["feedback_count"])
        | set(signals["baseline_mae"])
        | set(signals["prediction_psi"])
        | set(features)
    )
    model_metrics: dict[str, dict[str, Any]] = {}
    for model in models:
        entry: dict[str, Any] = {}
        for field, values in signals.items():
            v = values.get(model)
            entry[field] = None if v is None else v.value
        for field in ("predictions_count", "feedback_count"):
            entry[field] = entry[field] or 0
        interval = mae_interval.get(model)
        entry["mae_interval"] = None if interval is None else _bounds(interval)
        # Cached answers apart from computed ones (null: no labels of that kind).
        entry["mae_by_cache_hit"] = {"hit": None, "miss": None, **by_cache.get(model, {})}
        entry["versions"] = versions.get(model, [])
        if entry["versions"]:
            entry["version"] = entry["versions"][-1]["version"]
        # Which features moved: largest PSI first.
        entry["feature_drift"] = sorted(
            features.get(model, []), key=lambda f: (-f["psi"], f["feature"])
        )
        mf = {**(filters or {}), "model": model}
        updated = latest_time(store, (PREDICTIONS, FEEDBACK, BASELINE_MAE), start, end, mf)
        entry["last_updated"] = updated
        # "idle since": for a model without predictions in the window, its newest one of
        # the last day (looked up only then: a day's scan per model is not free).
        entry["last_prediction_at"] = (
            updated
            if entry["predictions_count"]
            else latest_time(store, (PREDICTIONS,), end - max(window, BASELINE_LOOKBACK_S), end, mf)
        )
        model_metrics[model or "unknown"] = entry

    system = {
        "uptime_seconds": now_level("uptime_seconds").value,
        "memory_usage_mb": now_level("memory_usage_mb").value,
        "cpu_percent": now_level("cpu_percent").value,
        "process_cpu_percent": now_level("process_cpu_percent").value,
        "memory_percent": now_level("memory_percent").value,
        "disk_usage_percent": now_level("disk_percent").value,
        "stale_after_seconds": stale_after,
    }
    cache = {
        "hit_rate_percent": total("cache_hit_rate_percent").value,
        "total_hits": total("cache_hits").value or 0,
        "total_misses": total("cache_misses").value or 0,
        "cache_size_mb": total("cache_size_mb").value,
        "entries": total("cache_entries").value,
        # Entries of a model version that no longer serves (after a retrain).
        "stale_entries": total("cache_stale_entries").value,
    }
    return {
        "from": start,
        "to": end,
        "window_seconds": window,
        "service": service,
        "instance": instance,
        "api_metrics": api,
        "model_metrics": model_metrics,
        "system_metrics": system,
        "cache_metrics": cache,
    }
