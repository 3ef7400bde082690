"""FastAPI dependencies: settings, store, broker and the bearer-token guard.

Routes declare what they need with the `Annotated` aliases:

    @router.get("/things")
    def things(store: StoreDep, settings: SettingsDep) -> ...

    @router.post("/things", dependencies=[RequireToken])
    def change_thing(...) -> ...

Everything lives on `app.state`, set by `mlpulse.backend.app.create_app`. The
dependencies are coroutines although they only read attributes: FastAPI runs a plain
function dependency in its thread pool, one hop (a queue, a wake-up and a GIL hand-over)
per dependency per request, which under concurrent reads cost more than the reads.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status

from mlpulse.backend.config import BackendSettings
from mlpulse.backend.live import Broker
from mlpulse.backend.storage.base import MetricStore
from mlpulse.backend.storage.engine import Engine

if TYPE_CHECKING:
    from mlpulse.backend.storage.postgres import PostgresEngine


async def get_settings(request: Request) -> BackendSettings:
    """Return the app's settings."""
    settings: BackendSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> MetricStore:
    """Return the app's metrics store."""
    store: MetricStore = request.app.state.store
    return store


async def get_engine(request: Request) -> Engine | PostgresEngine:
    """Return the app's storage engine (what ingest writes into)."""
    engine: Engine | PostgresEngine = request.app.state.store
    return engine


async def get_broker(request: Request) -> Broker:
    """Return the app's live-event broker."""
    broker: Broker = request.app.state.broker
    return broker


def token_ok(request: Request, authorization: str | None) -> bool:
    """Return True when `authorization` is `Bearer <the app's API token>`."""
    expected: str = request.app.state.api_token
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


async def require_token(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Refuse the request with 401 unless it carries `Authorization: Bearer <api token>`."""
    if not token_ok(request, authorization):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


SettingsDep = Annotated[BackendSettings, Depends(get_settings)]
StoreDep = Annotated[MetricStore, Depends(get_store)]
if TYPE_CHECKING:
    EngineDep = Annotated[Engine | PostgresEngine, Depends(get_engine)]
else:
    # FastAPI needs only the Depends at run time; building the union would import the
    # PostgreSQL driver (about 20 MiB resident) into every embedded backend.
    EngineDep = Annotated[Any, Depends(get_engine)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
RequireToken = Depends(require_token)
