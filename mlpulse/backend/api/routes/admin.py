"""`/admin/*`: admin actions, proxied to mlapi (`MLPULSE_MLAPI_URL`) with the API token.

| method, path | mlapi does |
|---|---|
| `POST /admin/retrain` | retrain the models (body passed through) |
| `POST /admin/cache/clear` | clear the prediction cache |
| `GET /admin/diagnostics` | models, cache, process facts |
| `GET /admin/config` | the backend's effective configuration (secrets redacted) and mlapi's |
| `GET`/`POST`/`DELETE /admin/scenario` | read, start, stop a fault scenario |

Every admin route requires the bearer token, reads included; the backend forwards the
same token to mlapi. mlapi's answer (status and JSON) is passed through; an unreachable
mlapi is a 502, a slow one a 504.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import SecretStr

from mlpulse.backend.alerts.service import alert_settings
from mlpulse.backend.api.deps import RequireToken, SettingsDep
from mlpulse.backend.notify.channels import REDACTED

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[RequireToken])

MAX_BODY_BYTES = 64 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=3.0)
_TLS = ssl.create_default_context()  # built once: creating one per request costs ~10 ms
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)


def redact(value: Any, key: str = "") -> Any:
    """Return ``value`` with secrets (by type or by key name) replaced by ``[REDACTED]``."""
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    return value


async def _forward(request: Request, method: str, path: str) -> Response:
    base: str = request.app.state.settings.mlapi_url.rstrip("/")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "request body too large")
    headers = {"Authorization": f"Bearer {request.app.state.api_token}"}
    if body:
        headers["Content-Type"] = request.headers.get("content-type", "application/json")
    try:
        async with httpx.AsyncClient(
            timeout=TIMEOUT, follow_redirects=False, verify=_TLS, trust_env=False
        ) as client:
            answer = await client.request(
                method,
                f"{base}{path}",
                params=list(request.query_params.multi_items()),
                content=body or None,
                headers=headers,
            )
    except httpx.TimeoutException:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, f"mlapi at {base} timed out") from None
    except httpx.TransportError as exc:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"mlapi unreachable at {base}: {type(exc).__name__}"
        ) from None
    media_type = answer.headers.get("content-type", "application/json")
    return Response(answer.content, status_code=answer.status_code, media_type=media_type)


@router.post("/retrain")
async def retrain(request: Request) -> Response:
    """Ask mlapi to retrain its models."""
    return await _forward(request, "POST", "/admin/retrain")


@router.post("/cache/clear")
async def clear_cache(request: Request) -> Response:
    """Ask mlapi to clear its prediction cache."""
    return await _forward(request, "POST", "/admin/cache/clear")


@router.get("/diagnostics")
async def diagnostics(request: Request) -> Response:
    """Return mlapi's diagnostics."""
    return await _forward(request, "GET", "/admin/diagnostics")


@router.get("/scenario")
async def get_scenario(request: Request) -> Response:
    """Return mlapi's current fault scenario."""
    return await _forward(request, "GET", "/admin/scenario")


def _annotate_scenario(request: Request, answer: Response, started: bool) -> None:
    """Record a scenario start or stop mlapi accepted (an annotation on the charts)."""
    if answer.status_code >= 400:
        return
    try:
        state = json.loads(bytes(answer.body))
    except ValueError:
        state = {}
    state = state if isinstance(state, dict) else {}
    name = str(state.get("name") or "scenario")[:100]
    remaining = state.get("remaining_s")
    now = time.time()
    log = request.app.state.annotations
    if started:
        seconds = float(remaining) if isinstance(remaining, int | float) else None
        until = now + seconds if seconds is not None else None
        text = f"fault scenario {name} started on mlapi" + (
            f" for {seconds:.0f} s" if seconds is not None else ""
        )
        log.add("scenario", f"{name} started", text, at=now, end=until)
    else:
        log.add("scenario", "scenario stopped", "fault scenario stopped from the API", at=now)


@router.post("/scenario")
async def start_scenario(request: Request) -> Response:
    """Start a fault scenario on mlapi (body passed through); annotate the charts."""
    answer = await _forward(request, "POST", "/admin/scenario")
    _annotate_scenario(request, answer, started=True)
    return answer


@router.delete("/scenario")
async def stop_scenario(request: Request) -> Response:
    """Stop mlapi's fault scenario; annotate the charts."""
    answer = await _forward(request, "DELETE", "/admin/scenario")
    _annotate_scenario(request, answer, started=False)
    return answer


@router.get("/config")
async def config(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Return the backend's effective settings and mlapi's, secrets ``[REDACTED]``."""
    backend: dict[str, Any] = {
        name: redact(getattr(settings, name), name) for name in type(settings).model_fields
    }
    alerts = alert_settings(request.app)
    backend["alerts"] = {
        name: redact(getattr(alerts, name), name) for name in type(alerts).model_fields
    }
    backend = _jsonable(backend)
    mlapi: Any
    try:
        answer = await _forward(request, "GET", "/admin/config")
        if answer.status_code == 200:
            mlapi = redact(json.loads(bytes(answer.body)))
        else:
            mlapi = {"error": f"mlapi answered {answer.status_code}"}
    except HTTPException as exc:
        mlapi = {"error": exc.detail}
    except ValueError:
        mlapi = {"error": "mlapi answered with invalid JSON"}
    return {"backend": backend, "mlapi": mlapi}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return str(value)
