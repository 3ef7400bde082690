"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlpulse.mlapi.service import MlService

_bearer = HTTPBearer(auto_error=False, description="MLPULSE_API_TOKEN")


async def get_service(request: Request) -> MlService:
    """Return the app's service (async: sync dependencies cost a thread hop)."""
    service: MlService = request.app.state.service
    return service


ServiceDep = Annotated[MlService, Depends(get_service)]


async def require_admin(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow the request only with `Authorization: Bearer <MLPULSE_API_TOKEN>`."""
    token = service.settings.api_token
    if token is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "admin routes are disabled: set MLPULSE_API_TOKEN to enable them",
        )
    presented = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(
        presented.encode("utf-8"), token.get_secret_value().encode("utf-8")
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
