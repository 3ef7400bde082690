"""/admin/*: retrain, cache, diagnostics, configuration and fault scenarios (bearer token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from mlpulse.mlapi.deps import ServiceDep, require_admin
from mlpulse.mlapi.faults import SCENARIO_NAMES
from mlpulse.mlapi.models import MODEL_NAMES
from mlpulse.mlapi.schemas import (
    CacheClearResponse,
    ModelVersionInfo,
    RetrainRequest,
    RetrainResponse,
    ScenarioRequest,
    ScenarioState,
)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/retrain")
async def retrain(
    service: ServiceDep, request: Annotated[RetrainRequest | None, Body()] = None
) -> RetrainResponse:
    """Train a new version of one model (`{"model": "result"}`) or of both."""
    names = (request.model,) if request is not None and request.model else MODEL_NAMES
    versions = await service.retrain(names)
    return RetrainResponse(
        trained=[ModelVersionInfo.model_validate(v.describe()) for v in versions]
    )


@router.post("/cache/clear")
async def clear_cache(service: ServiceDep) -> CacheClearResponse:
    """Drop every cached prediction."""
    return CacheClearResponse(cleared=service.cache.clear())


@router.get("/diagnostics")
async def diagnostics(service: ServiceDep) -> dict[str, Any]:
    """Model versions and baselines, cache and feedback stats, process, scenario."""
    return service.diagnostics()


@router.get("/config")
async def config(service: ServiceDep) -> dict[str, Any]:
    """The effective settings, secrets redacted."""
    return service.settings.public_dict()


def _scenario_state(service: ServiceDep) -> ScenarioState:
    active = service.faults.active()
    return ScenarioState(
        active=active is not None,
        name=active.name if active else None,
        remaining_s=round(service.faults.remaining_s(), 3),
        available=list(SCENARIO_NAMES),
    )


@router.get("/scenario")
async def get_scenario(service: ServiceDep) -> ScenarioState:
    """The active fault scenario, if any."""
    return _scenario_state(service)


@router.post("/scenario")
async def start_scenario(request: ScenarioRequest, service: ServiceDep) -> ScenarioState:
    """Start a fault scenario for `duration_s` seconds (replaces the active one)."""
    service.start_scenario(request.name, request.duration_s)
    return _scenario_state(service)


@router.delete("/scenario")
async def stop_scenario(service: ServiceDep) -> ScenarioState:
    """Stop the active fault scenario now."""
    service.faults.stop()
    return _scenario_state(service)
