"""Issue 16, class 4: mlapi's request models are strict and bounded.

On the old behaviour `NaN`/`Infinity` in a JSON body answered 500 (pydantic refused the
number, then its 422 could not be rendered as JSON), `"10"` and `"yes"` were coerced into
an int and a bool, and a ground truth of 1e308 was accepted: its square overflowed the
error sums to inf, after which the model-error series were refused by the backend for good.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from mlapi_testing import SCAN, TestClient, collect, ml_snapshot, total
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mlpulse.mlapi.feedback import ACTUAL_RANGES

NON_FINITE = ["NaN", "Infinity", "-Infinity"]


def _raw(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def _predict(client: TestClient, model: str = "result") -> dict[str, Any]:
    response = client.post(f"/predict/{model}", json=SCAN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize("field", ["symbol_count", "lookback_days", "market_hours", "timeframe"])
def test_non_finite_numbers_in_a_prediction_get_a_422_that_renders(
    client: TestClient, reader: InMemoryMetricReader, field: str, number: str
) -> None:
    before = ml_snapshot(reader)
    body = json.dumps({**SCAN, field: "__X__"}).replace('"__X__"', number)
    response = _raw(client, "/predict/result", body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert error["input"] == number  # rendered as text: JSON has no NaN
    assert ml_snapshot(reader) == before


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_in_feedback_and_scenarios_get_a_422(
    client: TestClient, number: str
) -> None:
    prediction_id = _predict(client)["prediction_id"]
    feedback = _raw(
        client, "/feedback", f'{{"prediction_id": "{prediction_id}", "actual": {number}}}'
    )
    assert feedback.status_code == 422, feedback.text
    assert feedback.json()["detail"][0]["loc"] == ["body", "actual"]
    # The whole body a non-finite number, or one nested in a list: still a clean 422.
    assert _raw(client, "/feedback", number).status_code == 422
    assert _raw(client, "/predict/result", f"[{number}]").status_code == 422
    # The prediction is still waiting for a real answer.
    ok = client.post("/feedback", json={"prediction_id": prediction_id, "actual": 12.0})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("symbol_count", "10"),
        ("symbol_count", 10.0),
        ("symbol_count", True),
        ("market_hours", "yes"),
        ("market_hours", 1),
        ("market_hours", "true"),
        ("timeframe", 1),
    ],
)
def test_prediction_requests_are_strict_no_coercion(
    client: TestClient, reader: InMemoryMetricReader, field: str, value: Any
) -> None:
    before = ml_snapshot(reader)
    response = client.post("/predict/result", json={**SCAN, field: value})
    assert response.status_code == 422, (field, value, response.text)
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert ml_snapshot(reader) == before


def test_a_json_int_still_fills_a_float_field(client: TestClient) -> None:
    prediction_id = _predict(client)["prediction_id"]
    response = client.post("/feedback", json={"prediction_id": prediction_id, "actual": 7})
    assert response.status_code == 200, response.text
    strict = client.post("/feedback", json={"prediction_id": prediction_id, "actual": "7"})
    assert strict.status_code == 422


@pytest.mark.parametrize("model", ["result", "duration"])
def test_absurd_ground_truth_is_refused_and_the_error_sums_stay_exact(
    client: TestClient, reader: InMemoryMetricReader, model: str
) -> None:
    _, high = ACTUAL_RANGES[model]
    prediction_id = _predict(client, model)["prediction_id"]
    for absurd in (1e308, 1.7976931348623157e308, high * 1.01, -1.0):
        response = client.post("/feedback", json={"prediction_id": prediction_id, "actual": absurd})
        assert response.status_code == 422, (absurd, response.text)
        assert "actual" in response.text
    metrics = collect(reader)
    assert "ml.model.feedback" not in metrics or not metrics["ml.model.feedback"].data.data_points
    # The prediction is still pending: its real ground truth counts, exactly.
    body = client.post("/feedback", json={"prediction_id": prediction_id, "actual": high})
    assert body.status_code == 200, body.text
    predicted = body.json()["predicted"]
    metrics = collect(reader)
    attrs = {"ml.model.name": model, "ml.model.version": "v1"}
    assert total(metrics, "ml.model.feedback", attrs) == 1
    squared = total(metrics, "ml.model.error.squared", attrs)
    assert math.isfinite(squared)
    assert squared == pytest.approx((high - predicted) ** 2, rel=1e-12)
    assert total(metrics, "ml.model.actual.squared", attrs) == pytest.approx(high**2)


def test_ground_truth_bounds_fit_a_double_over_any_count() -> None:
    """Even 2**53 answers at the bound keep every sufficient statistic finite."""
    for low, high in ACTUAL_RANGES.values():
        assert 0 <= low < high
        assert math.isfinite(float(2**53) * high * high)
