"""`/metrics/export`: signals over a range as CSV or JSON rows.

Label values come from clients; a CSV cell starting with `=`, `+`, `-` or `@` is
prefixed with `'` so a spreadsheet never evaluates it as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlpulse.backend.query.signals import Signal, choose_resolution, evaluate_range

DEFAULT_EXPORT = (
    "request_rate",
    "error_rate_percent",
    "avg_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "prediction_rate",
    "model_mae",
    "model_rmse",
    "model_r2",
    "avg_confidence",
    "cache_hit_rate_percent",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
)
COLUMNS = ("time", "epoch", "signal", "labels", "value", "samples", "lower", "upper")


def rows(
    store: Any,
    signals: Sequence[Signal],
    start: float,
    end: float,
    step: int,
    group_by: Sequence[str] | None,
    filters: Mapping[str, str] | None,
    retention: Mapping[int, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one row per signal, group and step (steps without data skipped)."""
    res = choose_resolution(start, end, step, retention)
    step = max(step, res)
    for sig in signals:
        for series in evaluate_range(
            store, sig, start, end, step, group_by, filters, resolution=res
        ):
            for p in series.points:
                if p.value is None:
                    continue
                yield {
                    "time": datetime.fromtimestamp(p.time, UTC).isoformat().replace("+00:00", "Z"),
                    "epoch": p.time,
                    "signal": sig.name,
                    "labels": series.labels,
                    "value": p.value,
                    "samples": p.samples,
                    "lower": p.lower,
                    "upper": p.upper,
                }


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def to_csv(items: Iterator[dict[str, Any]]) -> str:
    """Render rows as CSV (labels as `k=v;k=v`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in items:
        labels = ";".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        writer.writerow([_cell(row[c]) if c != "labels" else _cell(labels) for c in COLUMNS])
    return buf.getvalue()
