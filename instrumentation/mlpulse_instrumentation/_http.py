"""A lean pure-ASGI middleware recording `http.server.request.duration`.

It sits inside the tracing middleware (when traces are on), so each measurement is taken
while the server span is current and the histogram point gets the span as an exemplar.
The route is the matched route's template, read from the scope after routing; requests
that match no route carry no `http.route` at all, so unknown paths cannot explode the
number of series. Attributes follow the stable HTTP semantic conventions:
`http.request.method` (methods outside the known list become ``_OTHER``),
`http.route`, `http.response.status_code`, `url.scheme`, `network.protocol.version` and,
on failures, `error.type` (the exception's fully qualified class name, or the 5xx status).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlpulse_instrumentation._hotpath import BufferedHistogram, HistogramHandle
from mlpulse_instrumentation._meters import (
    ERROR_TYPE,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    NETWORK_PROTOCOL_VERSION,
    URL_SCHEME,
)

#: The semantic conventions' known methods; OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS
#: (comma-separated) replaces the list. Any other method is recorded as "_OTHER".
DEFAULT_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_MAX_CACHED_HANDLES = 2048

# (method, route, status, scheme, protocol version, error type), as the request gave them.
_RawKey = tuple[str, str | None, int, str, str, str | None]


def known_methods() -> frozenset[str]:
    """The known HTTP methods: OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS or the default."""
    value = os.environ.get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "").strip()
    if not value:
        return DEFAULT_KNOWN_METHODS
    return frozenset(m.strip().upper() for m in value.split(",") if m.strip())


def error_type(exc: BaseException) -> str:
    """The exception's fully qualified class name (builtins keep their bare name)."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


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
    """Records the duration of each HTTP request with method, route, status and scheme."""

    __slots__ = ("_excluded", "_handles", "_histogram", "_known_methods", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        histogram: BufferedHistogram,
        excluded_paths: Iterable[str] = (),
        known_methods: Iterable[str] = DEFAULT_KNOWN_METHODS,
    ) -> None:
        self.app = app
        self._histogram = histogram
        self._excluded = frozenset(excluded_paths)
        self._known_methods = frozenset(known_methods)
        # Raw request facts -> the handle of their (normalised) series: one dict lookup
        # and one append per request.
        self._handles: dict[_RawKey, HistogramHandle] = {}

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
            self._handle(scope, status or 500, error_type(exc)).record(perf_counter() - start)
            raise
        duration = perf_counter() - start
        if not status:  # no response at all (client gone): nothing meaningful to record
            return
        # The common case inline (one call less per request than `_handle`).
        key: _RawKey = (
            scope["method"],
            route_template(scope),
            status,
            scope.get("scheme", "http"),
            scope.get("http_version", "1.1"),
            None,
        )
        handle = self._handles.get(key)
        if handle is None:
            handle = self._new_handle(key)
        handle.record(duration)

    def _handle(self, scope: Scope, status: int, error: str | None) -> HistogramHandle:
        key: _RawKey = (
            scope["method"],
            route_template(scope),
            status,
            scope.get("scheme", "http"),
            scope.get("http_version", "1.1"),
            error,
        )
        handle = self._handles.get(key)
        return handle if handle is not None else self._new_handle(key)

    def _new_handle(self, key: _RawKey) -> HistogramHandle:
        handle = self._histogram.bind(self._attributes(*key))
        if len(self._handles) < _MAX_CACHED_HANDLES:
            self._handles[key] = handle
        return handle

    def _attributes(
        self,
        method: str,
        route: str | None,
        status: int,
        scheme: str,
        version: str,
        error: str | None,
    ) -> dict[str, Any]:
        if error is None and status >= 500:
            error = str(status)
        attrs: dict[str, Any] = {
            HTTP_REQUEST_METHOD: method if method in self._known_methods else "_OTHER",
            HTTP_RESPONSE_STATUS_CODE: status,
            URL_SCHEME: scheme,
            NETWORK_PROTOCOL_VERSION: version,
        }
        if route is not None:
            attrs[HTTP_ROUTE] = route
        if error is not None:
            attrs[ERROR_TYPE] = error
        return attrs
