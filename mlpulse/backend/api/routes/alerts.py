"""The alert API: state, history, configuration, silences, acknowledgements, test sends.

| method, path | what |
|---|---|
| `GET /alerts/active` | pending and firing alerts |
| `GET /alerts/history` | transitions with their values and delivery receipts (filters, paging) |
| `GET /alerts/groups` | notification groups of grouping channels, with their next look |
| `GET /alerts/configure` | rules and channels, secrets `[REDACTED]` (`?format=yaml` for a file) |
| `POST /alerts/configure` | create/update/delete rules and channels (JSON, or a YAML document) |
| `POST /alerts/rules`, `PUT`/`DELETE /alerts/rules/{name}` | one rule: create, replace, delete |
| `POST /alerts/preview` | when a rule (saved or not) would have fired over a past range |
| `GET`/`POST /alerts/silences`, `DELETE /alerts/silences/{id}` | silences |
| `POST /alerts/{id}/acknowledge` | acknowledge an active alert |
| `POST /alerts/test` | send a test notification through one channel |

Every state-changing route requires the bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from mlpulse.backend.alerts.configure import ConfigureIn, check_channels, etag, if_match_ok, merge
from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.preview import preview as preview_rule
from mlpulse.backend.alerts.preview import preview_step
from mlpulse.backend.alerts.rule_edit import RuleErrors, delete_rule, parse_rule, upsert_rule
from mlpulse.backend.alerts.rules import (
    ConfigError,
    dump_yaml,
    format_validation_error,
    load_yaml,
)
from mlpulse.backend.alerts.service import alert_settings, get_engine, signal_source, webhook_policy
from mlpulse.backend.alerts.silences import SilenceIn
from mlpulse.backend.api.deps import RequireToken, StoreDep
from mlpulse.backend.query.signals import LABEL_KEYS, SIGNALS, choose_resolution

log = logging.getLogger(__name__)
router = APIRouter(prefix="/alerts", tags=["alerts"])

MAX_CONFIG_BYTES = 1024 * 1024


def _engine(request: Request) -> AlertEngine:
    return get_engine(request.app)


EngineDep = Annotated[AlertEngine, Depends(_engine)]


def _time(value: str | None, name: str) -> float | None:
    """Parse epoch seconds or an ISO 8601 time."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name}: expected epoch seconds or an ISO 8601 time, got {value[:40]!r}",
        ) from None


# -- state and history ------------------------------------------------------------------


@router.get("/active")
def active(engine: EngineDep) -> dict[str, Any]:
    """Return pending and firing alerts (firing first)."""
    return {
        "alerts": engine.active(),
        "evaluated_at": engine.last_evaluation,
        "rule_errors": dict(engine.rule_errors),
    }


@router.get("/history")
def history(
    engine: EngineDep,
    rule: str | None = None,
    state: Annotated[str | None, Query(pattern="^(inactive|pending|firing|resolved)$")] = None,
    alert_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    cursor: Annotated[int | None, Query(ge=1, description="next_cursor of a page")] = None,
) -> dict[str, Any]:
    """Return transitions newest first, each with the values behind it and its receipts.

    Page with ``limit``/``offset``, or with ``cursor`` (the previous page's
    ``next_cursor``), which stays stable while new entries arrive.
    """
    entries, total = engine.store.history(
        rule=rule,
        state=state,
        alert_id=alert_id,
        since=_time(since, "since"),
        until=_time(until, "until"),
        limit=limit,
        offset=0 if cursor is not None else offset,
        before_id=cursor,
    )
    next_cursor = entries[-1]["id"] if len(entries) == limit else None
    return {
        "entries": entries,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_cursor": next_cursor,
    }


@router.get("/groups")
def groups(engine: EngineDep) -> dict[str, Any]:
    """Return the notification groups of grouping channels: their alerts, when they were
    last looked at and sent, and ``next_at``, when they are looked at next."""
    return {"groups": engine.group_states()}


# -- configuration ----------------------------------------------------------------------


def _configure_lock(request: Request) -> asyncio.Lock:
    """One configuration change at a time: each merges onto the previous one's result."""
    lock: asyncio.Lock | None = getattr(request.app.state, "alerts_configure_lock", None)
    if lock is None:  # created on the event loop, with no await in between: no race
        lock = request.app.state.alerts_configure_lock = asyncio.Lock()
    return lock


@router.get("/configure", response_model=None)
def get_configure(
    request: Request,
    response: Response,
    engine: EngineDep,
    fmt: Annotated[str, Query(alias="format", pattern="^(json|yaml)$")] = "json",
) -> dict[str, Any] | Response:
    """Return the rules and channels; secrets and webhook URL paths are ``[REDACTED]``.

    The `ETag` header is the configuration's version: send it back as `If-Match` with a
    change, and the change is refused with 412 if someone else changed it meanwhile.
    """
    config = engine.config
    tag = etag(config, request.app.state.api_token)
    if fmt == "yaml":
        return Response(dump_yaml(config), media_type="application/yaml", headers={"ETag": tag})
    response.headers["ETag"] = tag
    return config.dump()


@router.post("/configure", dependencies=[RequireToken])
async def post_configure(request: Request, response: Response, engine: EngineDep) -> dict[str, Any]:
    """Create, update or delete rules and channels; the whole change applies or nothing.

    JSON body: ``{"rules": [...], "channels": [...], "delete_rules": [...],
    "delete_channels": [...], "replace": false}`` — rules and channels are upserted by
    name. A YAML body (``Content-Type: application/yaml``) replaces the configuration
    with the document, like a rules file. A secret given as ``[REDACTED]`` (a webhook
    URL in its redacted form) keeps the stored one. With ``If-Match: <ETag of a GET>``
    the change applies only to that version (else 412); the new ETag is returned.
    """
    body = await request.body()
    if len(body) > MAX_CONFIG_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "configuration too large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            document = load_yaml(body.decode("utf-8", "replace"))
            change = ConfigureIn.replacing(document)
        else:
            try:
                change = ConfigureIn.model_validate(json.loads(body or b"{}"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"invalid JSON: {exc.msg} at position {exc.pos}") from None
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc)) from None
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    key: str = request.app.state.api_token
    async with _configure_lock(request):
        if not if_match_ok(request.headers.get("if-match"), etag(engine.config, key)):
            raise HTTPException(
                status.HTTP_412_PRECONDITION_FAILED,
                "the configuration changed since it was read (If-Match is stale): "
                "GET it again and reapply the change",
            )
        try:
            new = merge(engine.config, change)
            touched = [str(c.get("name")) for c in change.channels]
            settings = alert_settings(request.app)
            await run_in_threadpool(
                check_channels,
                new,
                touched,
                settings,
                webhook_policy(settings),
                request.app.state.settings.data_dir,
            )
        except ConfigError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        engine.set_config(new)
    log.info(
        "alert configuration changed: %d rules, %d channels", len(new.rules), len(new.channels)
    )
    response.headers["ETag"] = etag(new, key)
    return new.dump()


# -- one rule at a time (the dashboard's rule editor) --------------------------------


def _rule_errors(exc: RuleErrors) -> HTTPException:
    """A 422 whose detail lists ``{"field", "msg"}``, one per offending field."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors)


async def _apply_rule_change(request: Request, engine: AlertEngine, change: Any) -> dict[str, Any]:
    async with _configure_lock(request):
        try:
            new = change(engine.config)
        except RuleErrors as exc:
            raise _rule_errors(exc) from None
        except KeyError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule {str(exc)[:100]}") from None
        except ConfigError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        engine.set_config(new)
    response_tag = etag(new, request.app.state.api_token)
    log.info("alert rules changed through the rule API: %d rules", len(new.rules))
    return {"etag": response_tag, **new.dump()}


@router.post("/rules", dependencies=[RequireToken], status_code=status.HTTP_201_CREATED)
async def create_rule(request: Request, engine: EngineDep, rule: dict[str, Any]) -> dict[str, Any]:
    """Create one rule; a name already taken is a 422 on the field `name`."""
    return await _apply_rule_change(request, engine, lambda c: upsert_rule(c, rule))


@router.put("/rules/{name}", dependencies=[RequireToken])
async def replace_rule(
    name: str, request: Request, engine: EngineDep, rule: dict[str, Any]
) -> dict[str, Any]:
    """Replace the rule `name` (the body may rename it); its alerts follow the new rule."""
    return await _apply_rule_change(request, engine, lambda c: upsert_rule(c, rule, replacing=name))


@router.delete("/rules/{name}", dependencies=[RequireToken])
async def remove_rule(name: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Delete the rule `name`; its active alerts resolve silently at the next evaluation."""
    return await _apply_rule_change(request, engine, lambda c: delete_rule(c, name))


class PreviewIn(BaseModel):
    """A rule to replay over a past range (default: the last 24 h, one evaluation a minute)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rule: dict[str, Any]
    start: float | None = Field(default=None, alias="from", allow_inf_nan=False)
    end: float | None = Field(default=None, alias="to", allow_inf_nan=False)
    step: float | None = Field(default=None, ge=10, le=86_400, allow_inf_nan=False)


PREVIEW_RANGE_S = 86_400.0


@router.post("/preview", dependencies=[RequireToken])
async def preview(body: PreviewIn, engine: EngineDep, store: StoreDep) -> dict[str, Any]:
    """Replay the alert engine on the stored data: when would this rule have fired?

    The rule need not be saved (the editor previews what is typed). Answers the
    transitions and the firing intervals per group, evaluated every `step` seconds.
    """
    try:
        rule = parse_rule(body.rule)
    except RuleErrors as exc:
        raise _rule_errors(exc) from None
    end = body.end if body.end is not None else engine.clock()
    start = body.start if body.start is not None else end - PREVIEW_RANGE_S
    if not end > start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "to: must be after from")
    signal = SIGNALS[rule.signal]
    filters = {LABEL_KEYS.get(k, k): v for k, v in rule.filters.items()}
    ids = [s.id for s in store.series(signal.metrics[0], filters)]
    res = choose_resolution(start, end)
    first = store.first_bucket(ids, res, start - rule.window, end) if ids else None
    if first is None:  # no data at all: nothing could fire
        every = preview_step(start, end, body.step)
        return {
            "rule": rule.name, "from": start, "to": end, "step": every,
            "evaluations": 0, "transitions": [], "intervals": [],
        }  # fmt: skip
    try:
        return await run_in_threadpool(
            preview_rule, rule, signal_source(store), start, end, body.step, float(first)
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


# -- silences ---------------------------------------------------------------------------


@router.get("/silences")
def list_silences(engine: EngineDep) -> dict[str, Any]:
    """Return the silences (expired ones too, until deleted), each with ``active``."""
    return {"silences": engine.silences()}


@router.post("/silences", dependencies=[RequireToken], status_code=status.HTTP_201_CREATED)
def create_silence(silence: SilenceIn, engine: EngineDep) -> dict[str, Any]:
    """Silence the alerts matching every matcher, from ``starts_at`` (default now)."""
    now = engine.clock()
    starts = silence.starts_at if silence.starts_at is not None else now
    ends = silence.ends_at if silence.ends_at is not None else starts + (silence.duration or 0)
    if ends <= starts:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_at: must be after starts_at"
        )
    created = engine.add_silence(
        {
            "matchers": [m.model_dump() for m in silence.matchers],
            "starts_at": starts,
            "ends_at": ends,
            "created_by": silence.created_by,
            "comment": silence.comment,
            "created_at": now,
        }
    )
    return dict(created, active=starts <= now < ends)


@router.delete(
    "/silences/{silence_id}", dependencies=[RequireToken], status_code=status.HTTP_204_NO_CONTENT
)
def delete_silence(silence_id: str, engine: EngineDep) -> Response:
    """Delete (expire) a silence."""
    if not engine.delete_silence(silence_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id[:64]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- acknowledgements and test sends --------------------------------------------------


class AcknowledgeIn(BaseModel):
    """Who acknowledges, and why."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="api", max_length=200)
    comment: str = Field(default="", max_length=2000)


@router.post("/{alert_id}/acknowledge", dependencies=[RequireToken])
def acknowledge(
    alert_id: str, engine: EngineDep, body: AcknowledgeIn | None = None
) -> dict[str, Any]:
    """Acknowledge an active alert: its repeat notifications stop until it resolves."""
    body = body or AcknowledgeIn()
    inst = engine.acknowledge(alert_id, body.by, body.comment)
    if inst is None:
        known = any(i.id == alert_id for i in engine.instances())
        raise HTTPException(
            status.HTTP_409_CONFLICT if known else status.HTTP_404_NOT_FOUND,
            "the alert is not pending or firing" if known else f"no alert {alert_id[:64]!r}",
        )
    return next(a for a in engine.active() if a["id"] == alert_id)


class TestIn(BaseModel):
    """Which channel to test."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(max_length=100)
    message: str = Field(default="mlpulse test notification", max_length=1000)


@router.post("/test", dependencies=[RequireToken])
async def test_channel(body: TestIn, engine: EngineDep, response: Response) -> dict[str, Any]:
    """Send a test notification through one channel now (one attempt); report the outcome."""
    if engine.config.channel(body.channel) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no channel {body.channel[:100]!r}")
    assert engine.dispatcher is not None
    now = engine.clock()
    payload = {
        "version": 1,
        "kind": "test",
        "status": "test",
        "alert_id": "test",
        "rule": "test",
        "severity": "info",
        "signal": "",
        "labels": {},
        "value": None,
        "samples": 0,
        "reason": body.message,
        "description": body.message,
        "at": now,
    }
    note_id = engine.store.add_notification(
        None,
        {"channel": body.channel, "kind": "test", "payload": payload, "created_at": now},
    )
    result = await run_in_threadpool(engine.dispatcher.deliver, note_id, max_attempts=1)
    if not result.delivered:
        response.status_code = status.HTTP_502_BAD_GATEWAY
    return {
        "channel": body.channel,
        "notification_id": note_id,
        "delivered": result.delivered,
        "attempts": result.attempts,
        "error": result.error,
    }
