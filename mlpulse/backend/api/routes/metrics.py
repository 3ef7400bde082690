"""Query routes: `/metrics/current`, `/history`, `/summary`, `/export`, `/distribution`,
`/exemplars`, `/catalog`, `/versions`. Read-only; times are epoch seconds, ISO-8601 or `now-1h`."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from mlpulse.backend.api.deps import SettingsDep, StoreDep
from mlpulse.backend.api.params import (
    bad,
    finite,
    iso,
    json_response,
    parse_duration,
    parse_list,
    parse_range,
)
from mlpulse.backend.query import export as export_q
from mlpulse.backend.query import fleet as fleet_q
from mlpulse.backend.query import history as history_q
from mlpulse.backend.query.signals import HTTP_DURATION, Signal, UnknownSignalError, resolve
from mlpulse.backend.query.snapshot import snapshot
from mlpulse.backend.query.versions import version_markers
from mlpulse.backend.storage.base import MetricStore

router = APIRouter(prefix="/metrics", tags=["metrics"])

Str = Annotated[str | None, Query()]
FromQ = Annotated[str | None, Query(alias="from", description="epoch s, ISO-8601 or now-1h")]
ToQ = Annotated[str | None, Query(alias="to", description="epoch s, ISO-8601 or now")]
MAX_LIMIT = 1000


def _filters(**given: str | None) -> dict[str, str] | None:
    out = {k: v for k, v in given.items() if v}
    return out or None


def _signal(store: MetricStore, name: str, stat: str | None = None) -> Signal:
    try:
        return resolve(store, name, stat)
    except UnknownSignalError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _step(value: str | None, start: float, end: float) -> int:
    if value is None or value == "":
        return history_q.auto_step(start, end)
    step = max(1, round(parse_duration(value, "step")))
    if (end - start) / step > history_q.MAX_POINTS:
        raise bad("step", f"too many points; at most {history_q.MAX_POINTS} per series")
    return step


@router.get("/current")
def current(
    store: StoreDep,
    settings: SettingsDep,
    service: Str = None,
    instance: Str = None,
    window: Annotated[str, Query()] = "5m",
) -> Response:
    """The seed's snapshot over the last `window` (default 5m), for a service or instance.

    Uptime, memory and CPU are levels now: instances silent for longer than
    `MLPULSE_STALE_AFTER_S` (30 s) leave them.
    """
    span = parse_duration(window, "window")
    return json_response(
        snapshot(store, time.time(), span, service, instance, stale_after=settings.stale_after_s)
    )


@router.get("/services")
def services(
    store: StoreDep, settings: SettingsDep, window: Annotated[str, Query()] = "5m"
) -> Response:
    """Every reporting service: its instances (running or stopped) and its own snapshot."""
    span = parse_duration(window, "window")
    return json_response(fleet_q.fleet(store, time.time(), span, settings.stale_after_s))


@router.get("/summary")
def summary(store: StoreDep, start: FromQ = None, end: ToQ = None, service: Str = None) -> Response:
    """The snapshot's panels over a range (default: the last hour)."""
    t0, t1 = parse_range(start, end)
    return json_response(snapshot(store, t1, t1 - t0, service))


@router.get("/history")
def history(
    store: StoreDep,
    settings: SettingsDep,
    metric: Annotated[str, Query(description="signal name or stored metric name")],
    start: FromQ = None,
    end: ToQ = None,
    step: Str = None,
    group_by: Str = None,
    stat: Str = None,
    service: Str = None,
    instance: Str = None,
    route: Str = None,
    model: Str = None,
) -> Response:
    """A signal (or raw metric) at each step of a range, one series per group."""
    t0, t1 = parse_range(start, end)
    sig = _signal(store, metric, stat)
    doc = history_q.history(
        store,
        sig,
        t0,
        t1,
        _step(step, t0, t1),
        parse_list(group_by),
        _filters(service=service, instance=instance, route=route, model=model),
        settings.retention_seconds(),
    )
    return json_response(doc)


@router.get("/distribution")
def distribution(
    store: StoreDep,
    metric: Annotated[str, Query()] = HTTP_DURATION,
    start: FromQ = None,
    end: ToQ = None,
    service: Str = None,
    instance: Str = None,
    route: Str = None,
    model: Str = None,
) -> Response:
    """The merged histogram of a metric over a range: buckets, percentiles, error bound."""
    t0, t1 = parse_range(start, end)
    if not store.series(metric):
        raise HTTPException(status_code=404, detail=f"unknown metric {metric!r}")
    return json_response(
        history_q.distribution(
            store,
            metric,
            t0,
            t1,
            _filters(service=service, instance=instance, route=route, model=model),
        )
    )


@router.get("/exemplars")
def exemplars(
    store: StoreDep,
    settings: SettingsDep,
    metric: Annotated[str, Query()] = HTTP_DURATION,
    start: FromQ = None,
    end: ToQ = None,
    min_value: Annotated[float | None, Query()] = None,
    max_value: Annotated[float | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    service: Str = None,
    instance: Str = None,
    route: Str = None,
    model: Str = None,
) -> dict[str, Any]:
    """Exemplars (trace/span ids) of a metric, e.g. the slow requests of a latency bucket."""
    t0, t1 = parse_range(start, end)
    found = history_q.exemplars(
        store,
        metric,
        t0,
        t1,
        _filters(service=service, instance=instance, route=route, model=model),
        min_value,
        max_value,
        limit,
    )
    base = settings.jaeger_ui_url.rstrip("/")
    for ex in found:
        ex["trace_url"] = f"{base}/trace/{ex['trace_id']}" if base and ex["trace_id"] else None
    return finite({"metric": metric, "from": t0, "to": t1, "exemplars": found})


@router.get("/versions")
def versions(
    store: StoreDep, start: FromQ = None, end: ToQ = None, service: Str = None, model: Str = None
) -> dict[str, Any]:
    """Model versions first seen in a range (default: the last hour): the version markers."""
    t0, t1 = parse_range(start, end)
    markers = version_markers(store, t0, t1, _filters(service=service, model=model))
    return finite({"from": t0, "to": t1, "markers": [m.as_dict() for m in markers]})


@router.get("/catalog")
def catalog(store: StoreDep) -> dict[str, Any]:
    """Every signal name and every stored metric (for pickers)."""
    return history_q.catalog(store)


@router.get("/export")
def export(
    store: StoreDep,
    settings: SettingsDep,
    format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
    start: FromQ = None,
    end: ToQ = None,
    metrics: Str = None,
    step: Str = None,
    group_by: Str = None,
    service: Str = None,
    route: Str = None,
    model: Str = None,
) -> Response:
    """Signals over a range as a CSV or JSON download (one row per signal, group, step)."""
    t0, t1 = parse_range(start, end)
    names = parse_list(metrics) or list(export_q.DEFAULT_EXPORT)
    signals = [_signal(store, n) for n in names]
    items = export_q.rows(
        store,
        signals,
        t0,
        t1,
        _step(step, t0, t1),
        parse_list(group_by),
        _filters(service=service, route=route, model=model),
        settings.retention_seconds(),
    )
    stamp = f"{iso(t0)}_{iso(t1)}".replace(":", "")
    if format == "json":
        body: str = json.dumps(finite({"from": t0, "to": t1, "rows": list(items)}))
        media = "application/json"
    else:
        body = export_q.to_csv(items)
        media = "text/csv; charset=utf-8"
    filename = f"mlpulse-{stamp}.{format}"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
