"""Helpers for the mlapi tests: the TestClient, metric reading, request bodies."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric

with warnings.catch_warnings():
    # starlette.testclient warns at import that it prefers httpx2; httpx serves us well.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["ADMIN", "SCAN", "TOKEN", "TestClient", "collect", "ml_snapshot", "point", "points"]

TOKEN = "test-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SCAN: dict[str, Any] = {
    "symbol_count": 500,
    "lookback_days": 90,
    "filter_count": 3,
    "indicator_count": 4,
    "timeframe": "1h",
    "market_hours": True,
}


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    """Collect once and index the metrics by name."""
    data = reader.get_metrics_data()
    metrics: dict[str, Metric] = {}
    if data is None:
        return metrics
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                metrics[metric.name] = metric
    return metrics


def points(metrics: Mapping[str, Metric], name: str) -> list[Any]:
    """Every data point of `name` (empty if the metric is absent)."""
    metric = metrics.get(name)
    return list(metric.data.data_points) if metric is not None else []


def point(metrics: Mapping[str, Metric], name: str, attributes: Mapping[str, Any]) -> Any:
    """The one point of `name` whose attributes are exactly `attributes`."""
    wanted = dict(attributes)
    found = [p for p in points(metrics, name) if dict(p.attributes) == wanted]
    assert len(found) == 1, f"{name}{wanted}: {[dict(p.attributes) for p in points(metrics, name)]}"
    return found[0]


def total(metrics: Mapping[str, Metric], name: str, attributes: Mapping[str, Any]) -> float:
    """Σ of the points of `name` whose attributes include `attributes` (the error sums
    are split further, by cache hit and prediction window)."""
    wanted = dict(attributes).items()
    found = [p for p in points(metrics, name) if wanted <= dict(p.attributes).items()]
    assert found, f"{name}{dict(wanted)}: {[dict(p.attributes) for p in points(metrics, name)]}"
    return float(sum(p.value for p in found))


def ml_snapshot(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every ml.* counter value and histogram count, keyed by name and attributes."""
    snapshot: dict[tuple[str, tuple[Any, ...]], float] = {}
    for name, metric in collect(reader).items():
        if not name.startswith("ml.") or name in ("ml.cache.entries", "ml.cache.size"):
            continue
        for p in metric.data.data_points:
            key = (name, tuple(sorted(p.attributes.items())))
            snapshot[key] = getattr(p, "value", None) or getattr(p, "count", 0)
    return snapshot
