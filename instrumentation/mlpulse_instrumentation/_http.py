"""One lean pure-ASGI middleware for the HTTP server telemetry: the duration metric and,
when traces are on, the server span.

`http.server.request.duration` is recorded for every request; with a tracer, the request
also gets one SERVER span (the parent comes from the incoming headers through the global
propagator), current while the app runs and while the duration is recorded, so the
histogram point gets the span as an exemplar. Doing both in one middleware is what keeps
the per-request cost low: one coroutine frame, one `send` wrapper, the route read once.
(The contrib ASGI middleware costs several times more per request: it decodes every
header, matches the route up front and opens spans per message.)

The route is the matched route's template, read from the scope after routing; requests
that match no route carry no `http.route` at all, so unknown paths cannot explode the
number of series. Attributes follow the stable HTTP semantic conventions:
`http.request.method` (methods outside the known list become ``_OTHER``),
`http.route`, `http.response.status_code`, `url.scheme`, `network.protocol.version` and,
on failures, `error.type` (the exception's fully qualified class name, or the 5xx
status). Spans also carry `url.path`, `url.query`, `server.address`, `server.port`,
`client.address`, `client.port`, `user_agent.original` and, for unknown methods,
`http.request.method_original`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterable
from time import perf_counter, time_ns
from typing import Any

from opentelemetry.context import attach, detach
from opentelemetry.propagate import extract
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlpulse_instrumentation._hotpath import BufferedHistogram, HistogramHandle
from mlpulse_instrumentation._meters import (
    CLIENT_ADDRESS,
    CLIENT_PORT,
    ERROR_TYPE,
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    NETWORK_PROTOCOL_VERSION,
    SERVER_ADDRESS,
    SERVER_PORT,
    URL_PATH,
    URL_QUERY,
    URL_SCHEME,
    USER_AGENT_ORIGINAL,
)

#: The semantic conventions' known methods; OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS
#: (comma-separated) replaces the list. Any other method is recorded as "_OTHER".
DEFAULT_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_MAX_CACHED_HANDLES = 2048

# (method, route, status, scheme, protocol version, error type), as the request gave them.
_RawKey = tuple[str, str | None, int, str, str, str | None]
_Headers = list[tuple[bytes, bytes]]


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


class _HeaderGetter(Getter[_Headers]):
    """Reads propagation headers straight from the ASGI header list (decodes only those)."""

    def get(self, carrier: _Headers, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: _Headers) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_HEADERS = _HeaderGetter()


class HttpServerMiddleware:
    """Records each HTTP request's duration (method, route, status, scheme) and, given a
    tracer, its server span."""

    __slots__ = ("_excluded", "_handles", "_histogram", "_known_methods", "_tracer", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        histogram: BufferedHistogram,
        tracer: Tracer | None = None,
        excluded_paths: Iterable[str] = (),
        known_methods: Iterable[str] = DEFAULT_KNOWN_METHODS,
    ) -> None:
        self.app = app
        self._histogram = histogram
        self._tracer = tracer
        self._excluded = frozenset(excluded_paths)
        self._known_methods = frozenset(known_methods)
        # Raw request facts -> the handle of their (normalised) series: one dict lookup
        # and one append per request.
        self._handles: dict[_RawKey, HistogramHandle] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._excluded:
            await self.app(scope, receive, send)
            return
        if self._tracer is not None:
            await self._traced(self._tracer, scope, receive, send)
            return
        start = perf_counter()
        status = 0

        # A plain function handing back `send`'s awaitable, not a coroutine of its own:
        # no coroutine object and frame per message (two per request).
        def send_with_status(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            # The outer ServerErrorMiddleware turns the exception into a 500.
            self._handle(scope, route_template(scope), status or 500, error_type(exc)).record(
                perf_counter() - start
            )
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

    async def _traced(self, tracer: Tracer, scope: Scope, receive: Receive, send: Send) -> None:
        # The span's start and end are given from the same clock readings as the
        # duration, so the span is exactly the interval its exemplar measured (left to
        # the SDK, its own clock reads fall apart from ours whenever the thread loses
        # the GIL in between). The wall-clock start anchors the monotonic duration.
        start_ns = time_ns()
        start = perf_counter()
        method = scope["method"]
        known = method in self._known_methods
        parent = extract(scope["headers"], getter=_HEADERS)
        span = tracer.start_span(
            method if known else "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_request_attributes(scope, method, known),
            start_time=start_ns,
        )
        token = attach(set_span_in_context(span, parent))
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            error = error_type(exc)
            status = status or 500  # what the outer ServerErrorMiddleware answers
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{error}: {exc}"))
            raise
        finally:
            duration = perf_counter() - start
            route = route_template(scope)
            # Recorded while the span is current: the duration's exemplar is this span.
            if status:
                self._handle(scope, route, status, error).record(duration)
            end: dict[str, Any] = {HTTP_RESPONSE_STATUS_CODE: status} if status else {}
            if route is not None:
                end[HTTP_ROUTE] = route
                span.update_name(f"{method if known else 'HTTP'} {route}")
            if error is not None:
                end[ERROR_TYPE] = error
            elif status >= 500:
                end[ERROR_TYPE] = str(status)
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(end)
            detach(token)
            span.end(end_time=start_ns + round(duration * 1e9))

    def _handle(
        self, scope: Scope, route: str | None, status: int, error: str | None
    ) -> HistogramHandle:
        key: _RawKey = (
            scope["method"],
            route,
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


def _request_attributes(scope: Scope, method: str, known: bool) -> dict[str, Any]:
    """The span attributes known when the request arrives (samplers see these)."""
    attrs: dict[str, Any] = {
        HTTP_REQUEST_METHOD: method if known else "_OTHER",
        URL_SCHEME: scope.get("scheme", "http"),
        URL_PATH: scope["path"],
        NETWORK_PROTOCOL_VERSION: scope.get("http_version", "1.1"),
    }
    if not known:
        attrs[HTTP_REQUEST_METHOD_ORIGINAL] = method
    query = scope.get("query_string")
    if query:
        attrs[URL_QUERY] = query.decode("latin-1")
    host = user_agent = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"user-agent":
            user_agent = value
    if host:
        attrs[SERVER_ADDRESS], port = _server(host)
        if port is not None:
            attrs[SERVER_PORT] = port
    elif scope.get("server"):
        attrs[SERVER_ADDRESS], attrs[SERVER_PORT] = scope["server"][0], scope["server"][1]
    if user_agent:
        attrs[USER_AGENT_ORIGINAL] = user_agent.decode("latin-1")
    client = scope.get("client")
    if client:
        attrs[CLIENT_ADDRESS], attrs[CLIENT_PORT] = client[0], client[1]
    return attrs


_servers: dict[bytes, tuple[str, int | None]] = {}


def _server(host: bytes) -> tuple[str, int | None]:
    """(server.address, server.port) of a Host header, parsed once per distinct header."""
    parsed = _servers.get(host)
    if parsed is None:
        text = host.decode("latin-1")
        name, colon, port = text.rpartition(":")
        if colon and port.isdigit() and (":" not in name or name.endswith("]")):
            parsed = (name.strip("[]"), int(port))
        else:
            parsed = (text.strip("[]"), None)
        if len(_servers) < 64:  # a few hosts in practice; never grows with bad clients
            _servers[host] = parsed
    return parsed
