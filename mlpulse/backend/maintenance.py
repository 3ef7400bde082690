"""Background maintenance: retention, run periodically off the event loop."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from mlpulse.backend.config import BackendSettings
from mlpulse.backend.storage.base import MetricStore
from mlpulse.backend.storage.retention import apply_retention

log = logging.getLogger(__name__)


async def retention_job(app: FastAPI) -> None:
    """Apply retention every `maintenance_interval_s` until cancelled."""
    settings: BackendSettings = app.state.settings
    store: MetricStore = app.state.store
    while True:
        try:
            deleted = await run_in_threadpool(apply_retention, store, settings.retention_seconds())
            if any(deleted.values()):
                log.info("retention deleted buckets %s", deleted)
        except Exception:  # keep the job alive; the next run retries
            log.exception("retention run failed")
        await asyncio.sleep(settings.maintenance_interval_s)
