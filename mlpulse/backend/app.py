"""The backend application: wiring only.

`create_app(settings)` builds the state (settings, API token, store, live broker),
includes every router of `ROUTERS` and starts every job of `BACKGROUND_JOBS` in the
lifespan. To add a part: append its router to `_routers()` and, if it runs in the
background, its `async def job(app) -> None` to `_background_jobs()` (a job runs until
cancelled at shutdown; put cleanup in a `finally`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI

from mlpulse.backend.annotations import ANNOTATIONS_FILE, AnnotationLog
from mlpulse.backend.config import BackendSettings, resolve_api_token
from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import open_store
from mlpulse.backend.live import Broker
from mlpulse.backend.live_push import LivePusher

log = logging.getLogger(__name__)

Job = Callable[[FastAPI], Coroutine[Any, Any, None]]


def _routers() -> list[APIRouter]:
    from mlpulse.backend import live
    from mlpulse.backend.api.routes import (
        admin,
        alerts,
        annotations,
        dashboard,
        health,
        ingest,
        metrics,
        otlp_other,
    )
    from mlpulse.backend.api.routes.ingest_stats import router as ingest_stats_router

    return [
        health.router,
        ingest.router,
        otlp_other.router,  # /v1/traces, /v1/logs: a decodable 'not here'
        metrics.router,
        live.router,
        alerts.router,
        annotations.router,
        admin.router,
        ingest_stats_router,  # GET /ingest/rejections
        dashboard.router,  # last: it serves the page's static files
    ]


def _background_jobs() -> list[Job]:
    from mlpulse.backend.alerts.service import alerts_job
    from mlpulse.backend.annotations import record_backend_start
    from mlpulse.backend.live import close_streams_on_exit
    from mlpulse.backend.live_push import close_pusher_on_exit
    from mlpulse.backend.live_replicas import replica_events_job
    from mlpulse.backend.maintenance import retention_job

    return [
        retention_job,
        alerts_job,
        close_streams_on_exit,
        close_pusher_on_exit,
        replica_events_job,  # PostgreSQL: other replicas' commits reach this page too
        record_backend_start,
    ]


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(job(app)) for job in _background_jobs()]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        app.state.store.close()


def create_app(settings: BackendSettings | None = None) -> FastAPI:
    """Build the backend app; `settings` defaults to the `MLPULSE_*` environment."""
    settings = settings or BackendSettings()
    app = FastAPI(title="mlpulse backend", lifespan=_lifespan)
    app.state.settings = settings
    app.state.api_token = resolve_api_token(settings)
    app.state.store = open_store(settings, Limits.from_settings(settings))
    app.state.broker = Broker()
    app.state.annotations = AnnotationLog(
        settings.postgres_url or settings.data_dir / ANNOTATIONS_FILE
    )
    app.state.pusher = LivePusher(
        app.state.store,
        app.state.broker,
        retention=settings.retention_seconds(),
        stale_after_s=settings.stale_after_s,
    )
    app.state.ingest_slots = asyncio.Semaphore(settings.max_inflight_exports)
    for router in _routers():
        app.include_router(router)
    from mlpulse.backend.api.errors import (
        RequestValidationError,
        request_validation_error,
        unstorable_text,
    )

    app.add_exception_handler(RequestValidationError, request_validation_error)  # NaN: a 422
    if settings.postgres_url is not None:
        # Only the shared store loads the PostgreSQL driver (~20 MiB resident).
        import psycopg

        app.add_exception_handler(psycopg.DataError, unstorable_text)  # NUL in text
    return app
