"""mlapi through its HTTP API, with metrics and spans read in memory."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from mlapi_testing import ADMIN, SCAN, TOKEN, TestClient, collect, ml_snapshot, point, points, total
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlpulse.mlapi.app import create_app
from mlpulse.mlapi.config import MlapiSettings
from mlpulse_instrumentation import uninstrument_app

DURATION = "http.server.request.duration"


def _model(name: str, version: str = "v1") -> dict[str, str]:
    return {"ml.model.name": name, "ml.model.version": version}


def _predict(client: TestClient, model: str = "result", **changes: Any) -> dict[str, Any]:
    response = client.post(f"/predict/{model}", json={**SCAN, **changes})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("model", ["result", "duration"])
def test_predict_answers_a_prediction_with_its_id(client: TestClient, model: str) -> None:
    body = _predict(client, model)
    assert set(body) == {
        "prediction",
        "confidence",
        "model_name",
        "model_version",
        "prediction_id",
        "cache_hit",
    }
    assert (body["model_name"], body["model_version"], body["cache_hit"]) == (model, "v1", False)
    assert body["prediction"] > 0
    assert 0.0 <= body["confidence"] <= 1.0
    assert len(body["prediction_id"]) == 32
    int(body["prediction_id"], 16)


def test_a_repeated_scan_is_a_cache_hit_and_still_a_prediction(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    first = _predict(client)
    second = _predict(client)
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert second["prediction"] == first["prediction"]
    assert second["confidence"] == first["confidence"]
    assert second["prediction_id"] != first["prediction_id"]

    metrics = collect(reader)
    hits = {**_model("result"), "ml.prediction.cache_hit": True}
    misses = {**_model("result"), "ml.prediction.cache_hit": False}
    assert point(metrics, "ml.model.predictions", hits).value == 1
    assert point(metrics, "ml.model.predictions", misses).value == 1
    lookups = {"ml.model.name": "result"}
    assert point(metrics, "ml.cache.lookups", {**lookups, "ml.cache.result": "hit"}).value == 1
    assert point(metrics, "ml.cache.lookups", {**lookups, "ml.cache.result": "miss"}).value == 1
    assert point(metrics, "ml.model.inference.duration", _model("result")).count == 1
    assert point(metrics, "ml.cache.entries", {}).value == 1
    assert point(metrics, "ml.cache.size", {}).value > 100

    answer = client.post("/feedback", json={"prediction_id": second["prediction_id"], "actual": 1})
    assert answer.status_code == 200


def test_seven_feedbacks_give_numpys_mae_rmse_and_r2(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    actual = np.array([120.0, 35.0, 310.0, 8.0, 64.0, 900.0, 0.0])
    predicted = []
    for i, y in enumerate(actual):
        body = _predict(client, symbol_count=200 + 300 * i, filter_count=i % 4)
        predicted.append(body["prediction"])
        response = client.post(
            "/feedback", json={"prediction_id": body["prediction_id"], "actual": y}
        )
        assert response.status_code == 200
        assert response.json()["absolute_error"] == pytest.approx(abs(y - body["prediction"]))

    metrics = collect(reader)
    n = total(metrics, "ml.model.feedback", _model("result"))
    sum_abs = total(metrics, "ml.model.error.absolute", _model("result"))
    sum_sq = total(metrics, "ml.model.error.squared", _model("result"))
    sum_y = total(metrics, "ml.model.actual", _model("result"))
    sum_y2 = total(metrics, "ml.model.actual.squared", _model("result"))

    errors = actual - np.array(predicted)
    assert n == 7
    assert sum_abs / n == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
    assert math.sqrt(sum_sq / n) == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    numpy_r2 = 1 - np.sum(errors**2) / np.sum((actual - actual.mean()) ** 2)
    assert 1 - sum_sq / (sum_y2 - sum_y**2 / n) == pytest.approx(numpy_r2, rel=1e-9)


def test_a_second_feedback_is_refused_and_not_counted(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    prediction_id = _predict(client)["prediction_id"]
    first = client.post("/feedback", json={"prediction_id": prediction_id, "actual": 10})
    second = client.post("/feedback", json={"prediction_id": prediction_id, "actual": 99})
    assert (first.status_code, second.status_code) == (200, 409)
    assert "already" in second.json()["detail"]
    metrics = collect(reader)
    assert total(metrics, "ml.model.feedback", _model("result")) == 1
    assert total(metrics, "ml.model.actual", _model("result")) == 10


BAD_REQUESTS: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    # method, path, json body, headers, status, text the answer must contain
    (
        "POST",
        "/predict/result",
        {k: v for k, v in SCAN.items() if k != "lookback_days"},
        {},
        422,
        "lookback_days",
    ),
    ("POST", "/predict/duration", {**SCAN, "symbol_count": 0}, {}, 422, "symbol_count"),
    ("POST", "/predict/result", {**SCAN, "timeframe": "13m"}, {}, 422, "timeframe"),
    ("POST", "/predict/result", {**SCAN, "market_hours": "maybe"}, {}, 422, "market_hours"),
    ("POST", "/predict/duration", {**SCAN, "symbols": 5}, {}, 422, "symbols"),
    ("POST", "/predict/result", None, {}, 422, "body"),
    ("POST", "/predict/price", SCAN, {}, 404, "Not Found"),
    ("GET", "/predict/result", None, {}, 405, "Method Not Allowed"),
    ("POST", "/feedback", {"prediction_id": "xyz", "actual": 1.0}, {}, 422, "prediction_id"),
    (
        "POST",
        "/feedback",
        {"prediction_id": "0" * 32, "actual": 1.0},
        {},
        404,
        "unknown prediction_id",
    ),
    ("POST", "/feedback", {"prediction_id": "0" * 32, "actual": -1.0}, {}, 422, "actual"),
    ("POST", "/feedback", {"prediction_id": "0" * 32}, {}, 422, "actual"),
    ("POST", "/admin/retrain", None, {}, 401, "bearer token"),
    ("POST", "/admin/retrain", None, {"Authorization": "Bearer wrong"}, 401, "bearer token"),
    ("POST", "/admin/retrain", {"model": "price"}, ADMIN, 422, "model"),
    ("POST", "/admin/cache/clear", None, {"Authorization": "Basic eDp5"}, 401, "bearer token"),
    ("GET", "/admin/diagnostics", None, {}, 401, "bearer token"),
    ("GET", "/admin/config", None, {"Authorization": f"Bearer {TOKEN}x"}, 401, "bearer token"),
    ("POST", "/admin/scenario", {"name": "meteor", "duration_s": 5}, ADMIN, 422, "name"),
    ("POST", "/admin/scenario", {"name": "error-burst", "duration_s": 0}, ADMIN, 422, "duration_s"),
    ("POST", "/admin/scenario", {"name": "error-burst"}, {}, 401, "bearer token"),
    ("DELETE", "/admin/scenario", None, {}, 401, "bearer token"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "text"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {s} {t}" for m, p, _, _, s, t in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    client: TestClient,
    reader: InMemoryMetricReader,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    text: str,
) -> None:
    prediction_id = _predict(client)["prediction_id"]
    client.post("/feedback", json={"prediction_id": prediction_id, "actual": 50})
    before = ml_snapshot(reader)
    diagnostics_before = client.get("/admin/diagnostics", headers=ADMIN).json()

    response = client.request(method, path, json=body, headers=headers)

    assert response.status_code == status
    assert text in response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert ml_snapshot(reader) == before
    diagnostics_after = client.get("/admin/diagnostics", headers=ADMIN).json()
    assert diagnostics_after["models"] == diagnostics_before["models"]
    assert diagnostics_after["cache"]["entries"] == diagnostics_before["cache"]["entries"]
    assert diagnostics_after["feedback"]["received"] == 1
    assert diagnostics_after["scenario"]["active"] is False


def test_health_creates_no_span_while_predictions_do(
    client: TestClient, span_exporter: InMemorySpanExporter
) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["model_versions"] == {"result": "v1", "duration": "v1"}
    assert span_exporter.get_finished_spans() == ()
    body = _predict(client)
    (server,) = span_exporter.get_finished_spans()
    assert server.name == "POST /predict/result"
    assert server.attributes is not None
    assert server.attributes["ml.prediction.id"] == body["prediction_id"]
    assert server.attributes["ml.model.version"] == "v1"
    assert server.attributes["ml.prediction.cache_hit"] is False
    assert 0 < server.attributes["ml.model.inference.duration"] < 1


def test_http_and_model_exemplars_carry_the_request_trace(
    client: TestClient, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> None:
    _predict(client, "duration")
    (span,) = span_exporter.get_finished_spans()
    ids = (span.context.trace_id, span.context.span_id)
    metrics = collect(reader)
    http = point(
        metrics,
        DURATION,
        {
            "http.request.method": "POST",
            "http.route": "/predict/duration",
            "http.response.status_code": 200,
            "url.scheme": "http",
            "network.protocol.version": "1.1",
        },
    )
    inference = point(metrics, "ml.model.inference.duration", _model("duration"))
    assert [(e.trace_id, e.span_id) for e in http.exemplars] == [ids]
    assert [(e.trace_id, e.span_id) for e in inference.exemplars] == [ids]


def test_admin_routes_answer_503_without_a_configured_token(
    reader: InMemoryMetricReader,
) -> None:
    app = create_app(
        MlapiSettings(training_samples=600, model_trees=12),
        metric_readers=[reader],
        span_processors=[],
    )
    with TestClient(app) as client:
        response = client.post("/admin/retrain", headers=ADMIN)
        assert response.status_code == 503
        assert "MLPULSE_API_TOKEN" in response.json()["detail"]
        assert client.get("/admin/diagnostics").status_code == 503
        assert client.get("/health").json()["model_versions"]["result"] == "v1"
    uninstrument_app(app)


def test_admin_config_redacts_the_token(client: TestClient) -> None:
    response = client.get("/admin/config", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["api_token"] == "[REDACTED]"
    assert response.json()["training_samples"] == 600
    assert TOKEN not in response.text


def test_retrain_serves_a_new_version_with_its_baseline(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    response = client.post("/admin/retrain", json={"model": "result"}, headers=ADMIN)
    assert response.status_code == 200
    (trained,) = response.json()["trained"]
    assert (trained["name"], trained["version"]) == ("result", "v2")
    body = _predict(client)
    assert (body["model_version"], body["cache_hit"]) == ("v2", False)
    assert _predict(client, "duration")["model_version"] == "v1"

    metrics = collect(reader)
    assert (
        point(metrics, "ml.model.baseline.mae", _model("result", "v2")).value
        == (trained["baseline_mae"])
    )
    assert (
        point(metrics, "ml.model.baseline.r2", _model("result", "v2")).value
        == (trained["baseline_r2"])
    )
    assert len(points(metrics, "ml.model.baseline.mae")) == 3  # result v1, v2, duration v1

    both = client.post("/admin/retrain", headers=ADMIN).json()["trained"]
    assert [(t["name"], t["version"]) for t in both] == [("result", "v3"), ("duration", "v2")]


def test_cache_clear_empties_the_cache(client: TestClient) -> None:
    _predict(client)
    _predict(client, "duration")
    response = client.post("/admin/cache/clear", headers=ADMIN)
    assert response.json() == {"cleared": 2}
    assert _predict(client)["cache_hit"] is False


def test_diagnostics_report_models_cache_feedback_process_and_scenario(
    client: TestClient,
) -> None:
    _predict(client)
    _predict(client)
    diagnostics = client.get("/admin/diagnostics", headers=ADMIN).json()
    result = diagnostics["models"]["result"]
    assert result["current"] == "v1"
    assert result["versions"][0]["baseline_mae"] > 0
    assert result["versions"][0]["algorithm"] == "RandomForestRegressor"
    assert diagnostics["models"]["duration"]["versions"][0]["algorithm"] == "ExtraTreesRegressor"
    cache = diagnostics["cache"]
    assert (cache["entries"], cache["hits"], cache["misses"], cache["hit_rate"]) == (1, 1, 1, 0.5)
    assert diagnostics["feedback"]["pending"] == 2
    assert diagnostics["process"]["pid"] == os.getpid()
    assert diagnostics["process"]["rss_bytes"] > 0
    assert diagnostics["scenario"] == {"active": False, "name": None, "remaining_s": 0.0}


def test_model_drift_multiplies_predictions_by_1_6(client: TestClient) -> None:
    normal = _predict(client)["prediction"]
    started = client.post(
        "/admin/scenario", json={"name": "model-drift", "duration_s": 60}, headers=ADMIN
    )
    assert started.json()["name"] == "model-drift"
    drifted = _predict(client)
    assert drifted["prediction"] == pytest.approx(normal * 1.6)
    feedback = client.post(
        "/feedback", json={"prediction_id": drifted["prediction_id"], "actual": normal}
    )
    assert feedback.json()["absolute_error"] == pytest.approx(normal * 0.6)
    stopped = client.delete("/admin/scenario", headers=ADMIN).json()
    assert stopped["active"] is False
    assert _predict(client)["prediction"] == normal


def test_error_burst_answers_500_for_a_share_of_predictions(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    client.post("/admin/scenario", json={"name": "error-burst", "duration_s": 60}, headers=ADMIN)
    statuses = [client.post("/predict/result", json=SCAN).status_code for _ in range(60)]
    failures = statuses.count(500)
    assert set(statuses) == {200, 500}
    assert 5 <= failures <= 35
    metrics = collect(reader)
    errors = point(
        metrics,
        DURATION,
        {
            "http.request.method": "POST",
            "http.route": "/predict/result",
            "http.response.status_code": 500,
            "url.scheme": "http",
            "network.protocol.version": "1.1",
            "error.type": "500",
        },
    )
    assert errors.count == failures
    served = sum(p.value for p in points(metrics, "ml.model.predictions"))
    assert served == 60 - failures


def test_cache_flush_makes_every_lookup_a_miss(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    _predict(client)
    assert _predict(client)["cache_hit"] is True
    client.post("/admin/scenario", json={"name": "cache-flush", "duration_s": 60}, headers=ADMIN)
    assert [_predict(client)["cache_hit"] for _ in range(3)] == [False] * 3
    metrics = collect(reader)
    lookups = {"ml.model.name": "result"}
    assert point(metrics, "ml.cache.lookups", {**lookups, "ml.cache.result": "miss"}).value == 4
    assert point(metrics, "ml.cache.lookups", {**lookups, "ml.cache.result": "hit"}).value == 1
    assert point(metrics, "ml.cache.entries", {}).value == 0


def test_latency_spike_delays_predictions(client: TestClient, reader: InMemoryMetricReader) -> None:
    client.post("/admin/scenario", json={"name": "latency-spike", "duration_s": 60}, headers=ADMIN)
    started = time.perf_counter()
    _predict(client)
    assert time.perf_counter() - started >= 0.4
    (hist,) = [
        p
        for p in points(collect(reader), DURATION)
        if p.attributes.get("http.route") == "/predict/result"
    ]
    assert hist.min >= 0.4


def test_scenario_state_is_readable(client: TestClient) -> None:
    idle = client.get("/admin/scenario", headers=ADMIN).json()
    assert idle["active"] is False
    assert idle["available"] == [
        "latency-spike",
        "error-burst",
        "model-drift",
        "cache-flush",
        "cpu-burn",
    ]
    client.post("/admin/scenario", json={"name": "cpu-burn", "duration_s": 30}, headers=ADMIN)
    busy = client.get("/admin/scenario", headers=ADMIN).json()
    assert (busy["active"], busy["name"]) == (True, "cpu-burn")
    assert 29 < busy["remaining_s"] <= 30
    assert client.delete("/admin/scenario", headers=ADMIN).json()["active"] is False


def test_uninstrumented_app_serves_the_same_api() -> None:
    app: FastAPI = create_app(
        MlapiSettings(training_samples=600, model_trees=12, telemetry_enabled=False)
    )
    with TestClient(app) as client:
        body = _predict(client)
        assert body["model_version"] == "v1"
        feedback = client.post(
            "/feedback", json={"prediction_id": body["prediction_id"], "actual": 3}
        )
        assert feedback.status_code == 200
    assert app.state.telemetry is None
