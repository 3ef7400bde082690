"""Fixtures for the instrumentation tests: a toy FastAPI app and in-memory readers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_reading import TestClient, ToyError

from mlpulse_instrumentation import Telemetry, get_telemetry, instrument_app, uninstrument_app


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no OTEL_* variable of the developer's shell."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def make_toy_app() -> FastAPI:
    """A small app with a path parameter, an included router, errors and /health."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/toy-error")
    async def toy_error() -> None:
        raise ToyError("toy")

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, float]:
        telemetry = get_telemetry(request.app)
        assert telemetry is not None
        telemetry.models.record_prediction(
            "result", "v1", value=12.0, confidence=0.8, duration_s=0.002, cache_hit=False
        )
        return {"prediction": 12.0}

    router = APIRouter(prefix="/api")

    @router.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    app.include_router(router, prefix="/v1")
    return app


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app() -> FastAPI:
    return make_toy_app()


@pytest.fixture
def other_app() -> FastAPI:
    return make_toy_app()


@pytest.fixture
def telemetry(
    app: FastAPI, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> Iterator[Telemetry]:
    """The toy app instrumented with metrics and traces read in memory."""
    tel = instrument_app(
        app,
        service_name="toy",
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(span_exporter)],
        system_metrics=False,
    )
    yield tel
    uninstrument_app(app)


@pytest.fixture
def client(app: FastAPI, telemetry: Telemetry) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
