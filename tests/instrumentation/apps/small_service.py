"""A small FastAPI service instrumented as a user would, for tests that run it in a
separate interpreter (uvicorn workers, a fresh virtualenv). Exports per OTEL_*."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mlpulse_instrumentation import instrument_app


def create_app() -> FastAPI:
    """The app factory (`uvicorn small_service:create_app --factory`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        telemetry.shutdown()  # the last export, before the worker exits

    app = FastAPI(lifespan=lifespan)
    telemetry = instrument_app(app, service_name="small-service", system_metrics=False)
    model = telemetry.models.bind("price", "v1")

    @app.get("/predict/{item}")
    async def predict(item: int) -> dict[str, float]:
        value = item * 1.5
        model.record_prediction(value=value, confidence=0.9, duration_s=0.001, cache_hit=False)
        return {"prediction": value}

    return app
