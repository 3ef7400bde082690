"""mlapi's side of model monitoring: reference distributions at training, features and
label lag recorded per prediction, expired feedback refused with 410."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from mlapi_testing import ADMIN, SCAN, TestClient, collect, ml_snapshot, point, points
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mlpulse.mlapi.feedback import new_prediction_id, prediction_time
from mlpulse.mlapi.models import FEATURE_NAMES, ScanFeatures
from mlpulse.mlapi.service import MlService
from mlpulse_instrumentation._meters import prediction_window

V1 = {"ml.model.name": "result", "ml.model.version": "v1"}


def _predict(client: TestClient, model: str = "result", **changes: Any) -> dict[str, Any]:
    response = client.post(f"/predict/{model}", json={**SCAN, **changes})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _service(app: FastAPI) -> MlService:
    service: MlService = app.state.service
    return service


def test_each_version_publishes_its_holdout_as_reference_histograms(
    app: FastAPI, client: TestClient, reader: InMemoryMetricReader
) -> None:
    version = _service(app).registry.current("result")
    assert version.reference is not None
    holdout = version.n_holdout
    metrics = collect(reader)
    ref = point(metrics, "ml.model.reference.prediction.value", V1)
    assert ref.count == holdout
    assert ref.sum == pytest.approx(sum(version.reference.predictions), rel=1e-9)
    conf = point(metrics, "ml.model.reference.prediction.confidence", V1)
    assert conf.count == holdout
    assert list(conf.explicit_bounds) == [round(0.05 * i, 2) for i in range(1, 20)]
    features = {
        p.attributes["ml.feature.name"]: p.count
        for p in points(metrics, "ml.model.reference.feature.value")
        if p.attributes["ml.model.name"] == "result"
    }
    assert features == dict.fromkeys(FEATURE_NAMES, holdout)
    samples = point(metrics, "ml.model.reference.samples", V1)
    assert samples.value == holdout


def test_the_reference_is_what_the_serving_path_answers_on_the_holdout(
    app: FastAPI, client: TestClient
) -> None:
    version = _service(app).registry.current("duration")
    assert version.reference is not None
    rows = np.column_stack([version.reference.features[f] for f in FEATURE_NAMES])[:25]
    timeframes = {round(np.log(m), 12): tf for tf, m in (("5m", 5), ("15m", 15), ("1h", 60))}
    for row, value, confidence in zip(
        rows, version.reference.predictions, version.reference.confidences, strict=False
    ):
        features = ScanFeatures(
            symbol_count=int(row[0]),
            lookback_days=int(row[1]),
            filter_count=int(row[2]),
            indicator_count=int(row[3]),
            timeframe=timeframes[round(float(row[4]), 12)],
            market_hours=bool(row[5]),
        )
        served = version.predict(features)
        assert served.value == pytest.approx(value, rel=1e-6)
        assert served.confidence == pytest.approx(confidence, rel=1e-6)


def test_predictions_record_their_features_and_feedback_its_label_lag(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    collect(reader)  # the references, already exported
    first = _predict(client)
    _predict(client, symbol_count=800)
    time.sleep(0.2)
    response = client.post(
        "/feedback", json={"prediction_id": first["prediction_id"], "actual": 40}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.2 <= body["label_lag_s"] < 5
    assert body["predicted_at"] == pytest.approx(prediction_time(first["prediction_id"]), abs=0.01)
    metrics = collect(reader)
    symbols = point(metrics, "ml.model.feature.value", {**V1, "ml.feature.name": "symbol_count"})
    assert (symbols.count, symbols.sum) == (2, 1300.0)
    lag = point(metrics, "ml.model.feedback.lag", V1)
    assert lag.count == 1
    assert 0.2 <= lag.sum < 5


def test_feedback_older_than_the_pending_window_is_410_and_changes_nothing(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    _predict(client)
    before = ml_snapshot(reader)
    old = new_prediction_id(time.time() - 7200)
    response = client.post("/feedback", json={"prediction_id": old, "actual": 10})
    assert response.status_code == 410
    assert "older than the feedback window (3600 s)" in response.json()["detail"]
    never = "f" * 32  # a time far in the future: never issued
    assert client.post("/feedback", json={"prediction_id": never, "actual": 10}).status_code == 404
    assert ml_snapshot(reader) == before
    feedback = client.get("/admin/diagnostics", headers=ADMIN).json()["feedback"]
    assert feedback["received"] == 0


def test_a_prediction_that_expired_in_the_store_is_410(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _service(app).feedback
    monkeypatch.setattr(store, "ttl_s", 0.3)
    answer = _predict(client)
    time.sleep(0.5)
    response = client.post(
        "/feedback", json={"prediction_id": answer["prediction_id"], "actual": 1}
    )
    assert response.status_code == 410, response.text
    assert store.stats().expired == 1


def test_stale_cache_entries_are_counted_after_a_retrain(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    computed = _predict(client)
    cached = _predict(client)
    assert (computed["cache_hit"], cached["cache_hit"]) == (False, True)
    metrics = collect(reader)
    stale = {
        p.attributes["ml.model.name"]: p.value for p in points(metrics, "ml.cache.stale_entries")
    }
    assert stale == {"result": 0, "duration": 0}

    retrain = client.post("/admin/retrain", json={"model": "result"}, headers=ADMIN)
    assert retrain.status_code == 200, retrain.text
    metrics = collect(reader)
    stale = {
        p.attributes["ml.model.name"]: p.value for p in points(metrics, "ml.cache.stale_entries")
    }
    assert stale == {"result": 1, "duration": 0}  # v1's entry, never hit again
    fresh = _predict(client)
    assert (fresh["model_version"], fresh["cache_hit"]) == ("v2", False)


def test_feedback_error_sums_are_split_by_cache_hit_and_prediction_window(
    client: TestClient, reader: InMemoryMetricReader
) -> None:
    computed = _predict(client)
    cached = _predict(client)
    assert (computed["cache_hit"], cached["cache_hit"]) == (False, True)
    collect(reader)
    for answer, actual in ((computed, 10.0), (cached, 400.0)):
        response = client.post(
            "/feedback", json={"prediction_id": answer["prediction_id"], "actual": actual}
        )
        assert response.status_code == 200, response.text
    metrics = collect(reader)
    window = prediction_window(prediction_time(computed["prediction_id"]) or 0.0)
    for answer, actual, hit in ((computed, 10.0, False), (cached, 400.0, True)):
        attrs = {**V1, "ml.prediction.cache_hit": hit}
        windowed = {**attrs, "ml.prediction.window": window}
        assert point(metrics, "ml.model.feedback", windowed).value == 1
        error = point(metrics, "ml.model.error.absolute", windowed).value
        assert error == pytest.approx(abs(actual - answer["prediction"]), rel=1e-12)
        # The actuals' sums are split by cache hit only (R² needs no window).
        assert point(metrics, "ml.model.actual", attrs).value == actual
