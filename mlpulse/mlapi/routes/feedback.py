"""POST /feedback: the ground truth of an earlier prediction."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from mlpulse.mlapi.deps import ServiceDep
from mlpulse.mlapi.feedback import (
    ActualOutOfRange,
    FeedbackAlreadyReceived,
    PredictionExpired,
    UnknownPrediction,
)
from mlpulse.mlapi.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"])


@router.post("/feedback")
async def feedback(request: FeedbackRequest, service: ServiceDep) -> FeedbackResponse:
    """Record the actual value of a prediction, once."""
    try:
        return service.record_feedback(request)
    except PredictionExpired as exc:
        raise HTTPException(
            status.HTTP_410_GONE,
            f"prediction_id is {exc.age_s:.0f} s old, older than the feedback window "
            f"({exc.ttl_s:.0f} s): its ground truth can no longer be scored",
        ) from None
    except UnknownPrediction:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "unknown prediction_id: never issued, or expired from the pending store",
        ) from None
    except ActualOutOfRange as exc:
        raise HTTPException(422, str(exc)) from None
    except FeedbackAlreadyReceived:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "feedback for this prediction_id was already received"
        ) from None
