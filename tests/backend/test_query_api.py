"""Query API parameters, shapes and exemplars from real traces."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from backend_testing import Backend, meter_provider, metric_request
from opentelemetry.sdk.trace import TracerProvider


def _post(backend: Backend, req: object) -> None:
    resp = backend.client.post(
        "/v1/metrics",
        content=req.SerializeToString(),  # type: ignore[attr-defined]
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 200


def test_times_as_iso_epoch_and_relative(backend: Backend) -> None:
    t = (int(time.time()) // 60 - 3) * 60 + 5
    _post(backend, metric_request("ml.model.predictions", points=[{"value": 4, "time_s": t}]))
    iso_from = datetime.fromtimestamp(t - 5, UTC).isoformat()
    variants = [
        {"from": str(t - 5), "to": str(t + 55)},
        {"from": str((t - 5) * 1000), "to": str((t + 55) * 1000)},  # epoch milliseconds
        {"from": iso_from, "to": datetime.fromtimestamp(t + 55, UTC).isoformat()},
        {"from": iso_from.replace("+00:00", "Z"), "to": str(t + 55)},
        {"from": iso_from.replace("+00:00", ""), "to": str(t + 55)},  # naive = UTC
    ]
    for params in variants:
        h = backend.get("/metrics/history", metric="prediction_count", step="1m", **params)
        assert h["from"] == t - 5 and h["to"] == t + 55, params
        assert h["series"][0]["points"] == [[t - 5, 4.0]], params
    rel = backend.get(
        "/metrics/history", metric="prediction_count", step="1m", **{"from": "now-10m"}
    )
    assert sum(v for _, v in rel["series"][0]["points"] if v) == 4


@pytest.mark.parametrize(
    "params",
    [
        {"metric": "request_rate", "from": "yesterday"},
        {"metric": "request_rate", "from": "now-1h", "to": "now-2h"},
        {"metric": "request_rate", "step": "-5"},
        {"metric": "request_rate", "step": "fast"},
        {"metric": "request_rate", "from": "now-30d", "step": "1s"},
        {"metric": "request_rate", "from": "nan"},
    ],
)
def test_bad_history_params_get_422(backend: Backend, params: dict[str, str]) -> None:
    resp = backend.client.get("/metrics/history", params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["msg"]


def test_missing_and_unknown_metric(backend: Backend) -> None:
    assert backend.client.get("/metrics/history").status_code == 422
    resp = backend.client.get("/metrics/history", params={"metric": "no.such.metric"})
    assert resp.status_code == 404
    assert "no.such.metric" in resp.json()["detail"]
    assert backend.client.get("/metrics/current", params={"window": "0"}).status_code == 422
    assert backend.client.get("/metrics/export", params={"format": "xml"}).status_code == 422
    assert backend.client.get("/metrics/distribution", params={"metric": "x"}).status_code == 404


def test_raw_metric_history_and_stats(backend: Backend) -> None:
    t = (int(time.time()) // 60 - 2) * 60
    points = [{"value": v, "time_s": t + 10 * i} for i, v in enumerate([0.2, 0.6, 0.4])]
    _post(backend, metric_request("system.memory.utilization", kind="gauge", points=points))
    common = {
        "metric": "system.memory.utilization",
        "from": str(t),
        "to": str(t + 60),
        "step": "1m",
    }
    assert backend.get("/metrics/history", **common)["series"][0]["points"] == [[t, 0.4]]
    for stat, want in (("max", 0.6), ("min", 0.2), ("avg", 0.4), ("count", 3)):
        h = backend.get("/metrics/history", stat=stat, **common)
        assert h["series"][0]["points"][0][1] == pytest.approx(want), stat
    signal = backend.get("/metrics/history", **{**common, "metric": "memory_percent"})
    assert signal["series"][0]["points"] == [[t, pytest.approx(40.0)]]
    assert (
        backend.client.get("/metrics/history", params={**common, "stat": "p42"}).status_code == 404
    )


def test_export_csv_escapes_formulas(backend: Backend) -> None:
    now = time.time()
    _post(
        backend,
        metric_request(
            "ml.model.predictions",
            points=[{"value": 3, "time_s": now, "attributes": {"ml.model.name": "=HYPERLINK(1)"}}],
        ),
    )
    resp = backend.client.get(
        "/metrics/export",
        params={"metrics": "prediction_count", "from": "now-5m", "step": "5m"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 1
    assert rows[0]["labels"] == "'model==HYPERLINK(1)" or rows[0]["labels"].startswith("model=")
    assert not rows[0]["labels"].startswith("=")
    assert float(rows[0]["value"]) == 3
    js = backend.client.get(
        "/metrics/export",
        params={"format": "json", "metrics": "prediction_count", "from": "now-5m", "step": "5m"},
    ).json()
    assert [r["value"] for r in js["rows"]] == [3]
    assert js["rows"][0]["labels"] == {"model": "=HYPERLINK(1)"}


def test_catalog_lists_signals_and_metrics(backend: Backend) -> None:
    _post(
        backend,
        metric_request("ml.model.predictions", points=[{"value": 1, "time_s": time.time()}]),
    )
    cat = backend.get("/metrics/catalog")
    names = {s["name"] for s in cat["signals"]}
    assert {"request_rate", "p95_latency_ms", "mae_degradation_percent", "cpu_percent"} <= names
    assert cat["metrics"] == [
        {"name": "ml.model.predictions", "kind": "sum", "unit": "", "series": 1}
    ]


def test_exemplars_have_no_trace_link_without_a_jaeger_url(backend_factory: Any) -> None:
    backend = backend_factory(jaeger_ui_url="")
    tracer = TracerProvider().get_tracer("t")
    provider = meter_provider(backend.url)
    hist = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    with tracer.start_as_current_span("req"):
        hist.record(1.5, {"http.route": "/predict", "http.response.status_code": 200})
    assert provider.force_flush()
    provider.shutdown()
    (ex,) = backend.get("/metrics/exemplars", **{"from": "now-1m"})["exemplars"]
    assert len(ex["trace_id"]) == 32
    assert ex["trace_url"] is None


def test_exemplars_carry_the_trace_of_a_real_span(backend: Backend) -> None:
    tracer = TracerProvider().get_tracer("t")
    provider = meter_provider(backend.url)
    hist = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    ids = {}
    for i, seconds in enumerate((0.004, 0.03, 2.5)):
        with tracer.start_as_current_span(f"req{i}") as span:
            hist.record(seconds, {"http.route": "/predict", "http.response.status_code": 200})
            ctx = span.get_span_context()
            ids[seconds] = (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert provider.force_flush()
    provider.shutdown()
    slow = backend.get("/metrics/exemplars", min_value=1.0, **{"from": "now-1m"})["exemplars"]
    assert [(e["trace_id"], e["span_id"]) for e in slow] == [ids[2.5]]
    assert slow[0]["trace_url"].endswith(ids[2.5][0])
    every = backend.get("/metrics/exemplars", **{"from": "now-1m"})["exemplars"]
    assert [e["value"] for e in every] == [2.5, 0.03, 0.004]


def test_history_grouped_with_filters_and_percentile_bounds(backend: Backend) -> None:
    provider = meter_provider(backend.url)
    hist = provider.get_meter("mlapi").create_histogram("http.server.request.duration", unit="s")
    for route, n in (("/predict", 30), ("/health", 10)):
        for _ in range(n):
            hist.record(0.1, {"http.route": route, "http.response.status_code": 200})
    assert provider.force_flush()
    provider.shutdown()
    h = backend.get("/metrics/history", metric="request_count", group_by="route", step="5m",
                    **{"from": "now-5m"})  # fmt: skip
    got = {s["labels"]["route"]: sum(v for _, v in s["points"] if v) for s in h["series"]}
    assert got == {"/predict": 30, "/health": 10}
    one = backend.get("/metrics/history", metric="p95_latency_ms", route="/health", step="5m",
                      **{"from": "now-5m"})  # fmt: skip
    (series,) = one["series"]
    assert series["labels"] == {"service": "mlapi", "route": "/health"}
    _, v = next(p for p in series["points"] if p[1] is not None)
    _, lo, hi = next(b for b in series["bounds"] if b[1] is not None)
    assert lo <= 100.0 <= hi and lo <= v <= hi


def test_health_reports_version_ingest_age_and_unreachable_storage(backend: Backend) -> None:
    h = backend.get("/health")
    storage = {"reachable": True, "kind": "sqlite"}
    assert (h["status"], h["storage"], h["last_ingest_at"]) == ("ok", storage, None)
    assert h["version"]
    _post(
        backend,
        metric_request("ml.model.predictions", points=[{"value": 1, "time_s": time.time()}]),
    )
    h = backend.get("/health")
    assert 0 <= h["last_ingest_age_seconds"] < 10
    backend.app.state.store.close()
    resp = backend.client.get("/health")
    assert resp.status_code == 503
    assert resp.json()["storage"] == {"reachable": False, "kind": "sqlite"}
