"""POST /predict/result and /predict/duration."""

from __future__ import annotations

from fastapi import APIRouter

from mlpulse.mlapi.deps import ServiceDep
from mlpulse.mlapi.schemas import PredictionResponse, ScanRequest

router = APIRouter(prefix="/predict", tags=["predict"])


@router.post("/result")
async def predict_result(request: ScanRequest, service: ServiceDep) -> PredictionResponse:
    """Predict how many symbols the scan returns."""
    return await service.predict("result", request)


@router.post("/duration")
async def predict_duration(request: ScanRequest, service: ServiceDep) -> PredictionResponse:
    """Predict how long the scan takes, in seconds."""
    return await service.predict("duration", request)
