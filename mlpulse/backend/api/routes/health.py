"""`GET /health`: liveness and readiness."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlpulse.backend.api.deps import StoreDep

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("mlpulse")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0+unknown"


@router.get("/health")
def health(request: Request, store: StoreDep) -> JSONResponse:
    """Report storage reachability, the age of the last ingest and the version.

    200 when storage answers, 503 when it does not (so a load balancer can tell).
    `alert_evaluator` says whether this replica evaluates the alert rules (exactly one
    replica on a shared PostgreSQL store does; the only process on SQLite does).
    """
    reachable = store.ping()
    last = store.last_ingest()
    kind = "postgresql" if request.app.state.settings.postgres_url else "sqlite"
    body: dict[str, Any] = {
        "status": "ok" if reachable else "degraded",
        "version": _version(),
        "storage": {"reachable": reachable, "kind": kind},
        "alert_evaluator": bool(getattr(request.app.state, "alert_evaluator", False)),
        "last_ingest_at": last,
        "last_ingest_age_seconds": None if last is None else round(time.time() - last, 3),
    }
    return JSONResponse(body, status_code=200 if reachable else 503)
