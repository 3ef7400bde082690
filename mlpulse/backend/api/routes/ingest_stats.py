"""`GET /ingest/rejections`: refused OTLP points by reason code since the backend started."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mlpulse.backend.ingest.rejections import rejections_of

router = APIRouter(tags=["ingest"])


@router.get("/ingest/rejections")
def rejections(request: Request) -> dict[str, Any]:
    """Return `{since, total, by_reason: {code: count}}` (every code, zeros included)."""
    return rejections_of(request.app).snapshot()
