"""Test helpers: read metrics from an InMemoryMetricReader; the starlette TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric

with warnings.catch_warnings():
    # starlette.testclient warns at import that it prefers httpx2; httpx serves us well.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TestClient", "ToyError", "collect", "point", "points"]


class ToyError(Exception):
    """An application exception of the toy app: error.type carries its qualified name."""


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
