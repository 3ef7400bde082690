"""Issue 16, class 5: no input to any backend route gets a 5xx, nor a traceback in the log.

On the old behaviour a NUL byte in a static path (`/js/%00`) raised `ValueError: embedded
null byte` in `Path.resolve`: a 500 and a traceback logged by uvicorn. The sweep below
sends odd paths, odd query values and odd JSON bodies (NaN included) to every route the
app has, and asserts only 4xx (or 2xx) answers and an error log free of tracebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from backend_testing import TOKEN, Backend

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ODD_PATHS = [
    "/js/%00",
    "/js/a%00b.js",
    "/css/%00/../x",
    "/vendor/" + "a" * 5000,
    "/img/" + "a/" * 3000,
    "/js/../../../etc/passwd",
    "/js/%2e%2e/%2e%2e/mlpulse/backend/config.py",
    "/js/%ff%fe.js",
    "/%00",
    "/metrics/%00",
    "/alerts/%00/acknowledge",
]
ODD_VALUES = ["\x00", "nan", "inf", "-inf", "1e308", "-1", "99999999999999999999999", "x" * 2000,
              "now-99999999999d", "now+1e30h", "%", "'", "[]", "{}"]  # fmt: skip
ODD_BODIES = [
    b"NaN",
    b'{"a": NaN}',
    b"[Infinity]",
    b'{"rules": [{"name": "r", "signal": "error_rate_percent", "threshold": NaN}]}',
    b'{"matchers": [{"name": "rule", "value": "x"}], "duration": Infinity}',
    b'{"channel": NaN}',
    b'{"by": "\\u0000", "comment": "x"}',
    b"\x00\xff",
    b"{" * 10_000,
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[_Records]:
    """What uvicorn and the backend log at ERROR and above during the test."""
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "mlpulse", "")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def _tracebacks(log: _Records) -> list[str]:
    return [r.getMessage() for r in log.records if r.exc_info or r.levelno >= logging.ERROR]


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the app, routers included, walked like test_alert_api."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str = "") -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router
                walk(route.original_router.routes, prefix + getattr(route, "prefix", ""))
            elif isinstance(getattr(route, "methods", None), set):
                path = route.path if route.path.startswith(prefix) else prefix + route.path
                found.update((m, path) for m in route.methods if m not in ("HEAD", "OPTIONS"))

    walk(app.routes)
    return sorted(found)


def _concrete(path: str, value: str = "x") -> str:
    for name in ("{alert_id}", "{silence_id}", "{path:path}"):
        path = path.replace(name, value)
    return path


def test_a_nul_byte_in_a_static_path_is_a_404_without_a_traceback(
    backend: Backend, error_log: _Records
) -> None:
    for path in ODD_PATHS:
        resp = backend.client.get(path)
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text[:200])
    assert backend.client.get("/js/main.js").status_code == 200
    assert _tracebacks(error_log) == []


def test_no_route_answers_odd_input_with_a_5xx(backend: Backend, error_log: _Records) -> None:
    routes = [r for r in _routes(backend.app) if r[1] not in ("/events",)]
    assert len(routes) > 20
    seen: dict[int, int] = {}
    params = ("from", "to", "step", "window", "metric", "service", "model", "group_by",
              "limit", "format", "rule", "state", "since", "until", "cursor")  # fmt: skip
    for method, template in routes:
        is_admin = template.startswith("/admin")
        for value in ODD_VALUES[:6] if is_admin else ODD_VALUES:
            path = _concrete(template, value.replace("\x00", "%00"))
            query = {p: value for p in params}
            if method == "GET":
                resp = backend.client.get(path, params=query)
            else:
                resp = backend.client.request(method, path, params=query, headers=AUTH)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            # The admin routes proxy to mlapi, unreachable here: 502 says so, by design.
            allowed_5xx = {502} if is_admin else set()
            assert resp.status_code < 500 or resp.status_code in allowed_5xx, (
                method, path[:80], value[:20], resp.status_code, resp.text[:200],
            )  # fmt: skip
        if method in ("POST", "PUT", "DELETE"):
            for body in ODD_BODIES:
                for content_type in ("application/json", "application/yaml", "text/plain"):
                    resp = backend.client.request(
                        method, _concrete(template), content=body,
                        headers={**AUTH, "Content-Type": content_type},
                    )  # fmt: skip
                    seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
                    allowed_5xx = {502} if template.startswith("/admin") else set()
                    assert resp.status_code < 500 or resp.status_code in allowed_5xx, (
                        method, template, body[:40], content_type, resp.text[:200],
                    )  # fmt: skip
    assert backend.client.get("/health").json()["status"] == "ok"
    assert _tracebacks(error_log) == []
