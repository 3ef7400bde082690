"""`/annotations`: the events drawn on the dashboard's time charts.

| method, path | what |
|---|---|
| `GET /annotations?from=&to=&service=` | alerts, model versions, scenarios, backend starts, notes |
| `POST /annotations` | record a note (a deploy, say): `{"title", "text", "service", "at"}` |

See `mlpulse.backend.annotations` for where each kind comes from.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from mlpulse.backend.alerts.service import get_engine
from mlpulse.backend.annotations import AnnotationLog, collect
from mlpulse.backend.api.deps import RequireToken, StoreDep
from mlpulse.backend.api.params import finite, parse_range

router = APIRouter(prefix="/annotations", tags=["annotations"])

FromQ = Annotated[str | None, Query(alias="from", description="epoch s, ISO-8601 or now-1h")]
ToQ = Annotated[str | None, Query(alias="to", description="epoch s, ISO-8601 or now")]


def _log(request: Request) -> AnnotationLog:
    log: AnnotationLog = request.app.state.annotations
    return log


@router.get("")
def list_annotations(
    request: Request,
    store: StoreDep,
    start: FromQ = None,
    end: ToQ = None,
    service: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    """Annotations in a range (default: the last hour), for one service or all."""
    t0, t1 = parse_range(start, end)
    alerts = get_engine(request.app).store
    items = collect(store, _log(request), alerts, t0, t1, service or None)
    return finite({"from": t0, "to": t1, "annotations": items})


class NoteIn(BaseModel):
    """A note to draw on the charts."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=2000)
    service: str = Field(default="", max_length=1024)
    at: float | None = Field(default=None, allow_inf_nan=False)


@router.post("", dependencies=[RequireToken], status_code=status.HTTP_201_CREATED)
def add_note(request: Request, note: NoteIn) -> dict[str, Any]:
    """Record a note (now, unless `at`)."""
    return _log(request).add("note", note.title, note.text, note.service, note.at)
