"""A lean pure-ASGI middleware recording `http.server.request.duration`.

It sits inside the tracing middleware (when traces are on), so each measurement is taken
while the server span is current and the histogram point gets the span as an exemplar.
The route is the matched route's template, read from the scope after routing; requests
that match no route carry no `http.route` at all, so unknown paths cannot explode the
number of series.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from instrumentation._aggregate import FOLD_THRESHOLD, ExponentialHistogram
from instrumentation._meters import (
    ERROR_TYPE,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_MAX_CACHED_ATTRIBUTE_SETS = 2048

_AttrKey = tuple[str, str | None, int, str | None]


def route_template(scope: Scope) -> str | None:
    """Return the template of the route that handled `scope`, or None if none matched."""
    # FastAPI >= 0.137 routes included routers through an "effective route context"
    # that knows the full template (prefixes included); scope["route"] then holds the
    # router-local route, whose path lacks the include prefix.
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        context = fastapi_scope.get("effective_route_context")
        if context is not None:
            template = getattr(context, "path_format", None)
            if isinstance(template, str):
                return template
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


class HttpMetricsMiddleware:
    """Records the duration of each HTTP request with method, route and status."""

    __slots__ = ("_attrs", "_buffers", "_excluded", "_histogram", "app")

    def __init__(
        self, app: ASGIApp, *, histogram: ExponentialHistogram, excluded_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self._histogram = histogram
        self._excluded = frozenset(excluded_paths)
        self._attrs: dict[_AttrKey, Mapping[str, Any]] = {}
        # (method, route, status) -> the series' raw buffer, for requests that ended with
        # a response and need no exemplar: one append per request.
        self._buffers: dict[tuple[str, str | None, int], deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._excluded:
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            # The outer ServerErrorMiddleware turns the exception into a 500.
            self._record(perf_counter() - start, scope, status or 500, type(exc).__qualname__)
            raise
        duration = perf_counter() - start
        if not status:  # no response at all (client gone): nothing meaningful to record
            return
        buffer = self._buffers.get((scope["method"], route_template(scope), status))
        if buffer is None:
            self._record(duration, scope, status, None)
            return
        buffer.append(duration)
        if len(buffer) > FOLD_THRESHOLD:
            self._histogram.fold_pending()

    def _record(self, duration: float, scope: Scope, status: int, error: str | None) -> None:
        method = scope["method"]
        route = route_template(scope)
        response_error = error
        if error is None and status >= 500:
            error = str(status)
        key = (method, route, status, error)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = _attributes(method, route, status, error)
            if len(self._attrs) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._attrs[key] = attrs
        histogram = self._histogram
        histogram.record(duration, key, attrs)
        if (
            response_error is None
            and not histogram.exemplars_enabled
            and len(self._buffers) < _MAX_CACHED_ATTRIBUTE_SETS
        ):
            self._buffers[(method, route, status)] = histogram.buffer(key, attrs)


def _attributes(method: str, route: str | None, status: int, error: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        HTTP_REQUEST_METHOD: method if method in _KNOWN_METHODS else "_OTHER",
        HTTP_RESPONSE_STATUS_CODE: status,
    }
    if route is not None:
        attrs[HTTP_ROUTE] = route
    if error is not None:
        attrs[ERROR_TYPE] = error
    return attrs
