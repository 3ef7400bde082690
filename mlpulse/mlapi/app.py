"""Assemble mlapi: settings, service, telemetry, routes. Run with `mlpulse mlapi`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor

from mlpulse import __version__
from mlpulse.mlapi.config import MlapiSettings
from mlpulse.mlapi.errors import RequestValidationError, request_validation_error
from mlpulse.mlapi.routes import admin, feedback, health, predict
from mlpulse.mlapi.service import InjectedFault, MlService, ModelsNotReady
from mlpulse_instrumentation import Telemetry, instrument_app


def create_app(
    settings: MlapiSettings | None = None,
    *,
    metric_readers: Sequence[MetricReader] | None = None,
    span_processors: Sequence[SpanProcessor] | None = None,
) -> FastAPI:
    """Build the ML API; telemetry exports per OTEL_* unless readers/processors are given."""
    settings = settings or MlapiSettings()
    telemetry: Telemetry | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.train_initial()
        yield
        service.faults.stop()
        if telemetry is not None:
            telemetry.shutdown()

    app = FastAPI(title="mlapi", version=__version__, lifespan=lifespan)
    if settings.telemetry_enabled:
        telemetry = instrument_app(
            app,
            service_name=settings.service_name,
            service_version=__version__,
            deployment_environment=settings.environment,
            metric_readers=metric_readers,
            span_processors=span_processors,
            metrics_endpoint=f"{settings.backend_url.rstrip('/')}/v1/metrics",
        )
    service = MlService(
        settings,
        model_telemetry=telemetry.models if telemetry else None,
        cache_telemetry=telemetry.cache if telemetry else None,
        traced=telemetry is not None and telemetry.traces_enabled,
    )
    app.state.service = service
    app.state.telemetry = telemetry
    for router in (predict.router, feedback.router, admin.router, health.router):
        app.include_router(router)
    app.add_exception_handler(InjectedFault, _injected_fault)
    app.add_exception_handler(ModelsNotReady, _models_not_ready)
    app.add_exception_handler(RequestValidationError, request_validation_error)  # NaN → 422
    return app


async def _injected_fault(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


async def _models_not_ready(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "models are still training"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )
