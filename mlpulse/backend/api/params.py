"""Parsing of query parameters: times, durations, label lists. Errors become 422."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pydantic_core
from fastapi import HTTPException
from fastapi.responses import Response

_T = TypeVar("_T")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE = re.compile(r"^\s*now\s*(?:-\s*(.+))?$")


def bad(param: str, message: str) -> HTTPException:
    """A 422 naming the parameter, in FastAPI's error shape."""
    return HTTPException(
        status_code=422,
        detail=[{"loc": ["query", param], "msg": message, "type": "value_error"}],
    )


def parse_duration(value: str, param: str) -> float:
    """Parse `300`, `300s`, `5m`, `1.5h`, `7d`, `1w` into seconds (> 0)."""
    m = _DURATION.match(value)
    if not m:
        raise bad(param, f"not a duration: {value[:40]!r} (e.g. 300, 5m, 1h, 7d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0 or not math.isfinite(seconds):
        raise bad(param, "duration must be positive")
    return seconds


def parse_time(value: str | None, param: str, default: float) -> float:
    """Parse epoch seconds, ISO-8601 (naive = UTC), `now` or `now-<duration>`."""
    if value is None or value == "":
        return default
    rel = _RELATIVE.match(value)
    if rel:
        return time.time() - (parse_duration(rel.group(1), param) if rel.group(1) else 0.0)
    try:
        t = float(value)
    except ValueError:
        try:
            dt = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            raise bad(
                param, f"not a time: {value[:40]!r} (epoch seconds, ISO-8601 or now-1h)"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        t = dt.timestamp()
    if math.isfinite(t) and 1e11 <= t < 1e14:  # epoch milliseconds
        t /= 1000.0
    if not math.isfinite(t) or not 0 <= t < 1e11:
        raise bad(param, "time out of range")
    return t


def parse_range(
    start: str | None, end: str | None, default_span: float = 3600.0
) -> tuple[float, float]:
    """Parse `from`/`to`; default to the last `default_span` seconds; require from < to."""
    now = time.time()
    t1 = parse_time(end, "to", now)
    t0 = parse_time(start, "from", t1 - default_span)
    if t0 >= t1:
        raise bad("from", "`from` must be before `to`")
    return t0, t1


def parse_list(value: str | None) -> list[str] | None:
    """Parse a comma-separated list; None when absent, [] when empty."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _finite(doc: Any) -> Any:
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc


def finite(doc: _T) -> _T:
    """Replace NaN and ±inf (which JSON cannot carry) by None, recursively."""
    return cast(_T, _finite(doc))


def json_response(doc: Any) -> Response:
    """`doc` as a JSON response (NaN and ±inf as null), serialized as it is.

    Returned as a dict, a sync route's result is validated against its annotation in
    FastAPI's thread pool: one more hop per request (a queue, a wake-up and a GIL
    hand-over) that cost the query routes more than the serializing itself when
    readers and ingest run at once (B6).
    """
    return Response(pydantic_core.to_json(_finite(doc)), media_type="application/json")


def iso(t: float) -> str:
    """Format epoch seconds as ISO-8601 UTC."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
