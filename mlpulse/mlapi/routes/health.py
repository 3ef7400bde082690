"""GET /health: liveness and readiness (not traced)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response, status

from mlpulse.mlapi.deps import ServiceDep
from mlpulse.mlapi.models import MODEL_NAMES
from mlpulse.mlapi.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(service: ServiceDep, response: Response) -> HealthResponse:
    """Report whether the models are trained and which versions serve."""
    ready = service.registry.ready
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    versions: dict[str, str] = (
        {name: service.registry.current(name).version for name in MODEL_NAMES} if ready else {}
    )
    return HealthResponse(
        status="ok" if ready else "starting",
        models_ready=ready,
        model_versions=versions,
        uptime_s=round(time.time() - service.started_at, 3),
    )
