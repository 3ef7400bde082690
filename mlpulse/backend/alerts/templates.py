"""Templated alert titles and messages: Jinja2 in its sandboxed environment.

A rule may set ``title`` and ``message``; each is a Jinja2 template rendered for every
notification with the alert's fields::

    title: "{{ rule }}: p95 {{ value | round(0) }} ms on {{ labels.service }}"
    message: "{{ signal }} is {{ value | round(1) }} (threshold {{ threshold }})."

Names: ``rule``, ``severity``, ``signal``, ``labels`` (a mapping; a missing label renders
empty), ``value`` (None when there is no data), ``samples``, ``comparison``,
``threshold``, ``clear_threshold``, ``window`` (seconds), ``status`` (firing/resolved),
``kind`` (firing, resolved, repeat), ``description``, ``fired_at``, ``resolved_at``
(ISO 8601 UTC or empty). Anything else is an error.

Templates run in `jinja2.sandbox.SandboxedEnvironment` (no attribute access to Python
internals, no calls of unsafe methods), without ``range`` and with string/list
repetition and powers bounded, so a template cannot run arbitrary code or build huge
values. A template that does not parse, names an unknown variable or fails on sample
values is refused when the rule is saved (`check`), not when a notification is sent.
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = {"title": 300, "message": 4000}
"""Rendered text is cut to this many characters."""

_MAX_REPEAT = 10_000
_MAX_EXPONENT = 64

CONTEXT_NAMES = (
    "rule",
    "severity",
    "signal",
    "labels",
    "value",
    "samples",
    "comparison",
    "threshold",
    "clear_threshold",
    "window",
    "status",
    "kind",
    "description",
    "fired_at",
    "resolved_at",
)


class _Labels(dict[str, str]):
    """Labels whose missing keys render as empty strings (a label may be absent)."""

    def __missing__(self, key: str) -> str:
        return ""

    def __getattr__(self, name: str) -> str:
        return self[name]


class _Environment(SandboxedEnvironment):
    """The sandbox, with the operators that can build huge values bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"exponent above {_MAX_EXPONENT}")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sized and len(seq) * count > _MAX_REPEAT:
                raise SecurityError(f"repetition longer than {_MAX_REPEAT}")
        return operator.mul(left, right)


def _environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.pop("range", None)
    env.globals.pop("lipsum", None)
    env.globals.pop("cycler", None)
    env.globals.pop("joiner", None)
    env.globals.pop("namespace", None)
    return env


_ENV = _environment()
_SAMPLE: dict[str, Any] = {
    "rule": "rule",
    "severity": "warning",
    "signal": "error_rate_percent",
    "labels": _Labels(service="mlapi", model="result_predictor", route="/predict"),
    "value": 12.5,
    "samples": 100,
    "comparison": ">",
    "threshold": 5.0,
    "clear_threshold": 4.0,
    "window": 300.0,
    "status": "firing",
    "kind": "firing",
    "description": "",
    "fired_at": "2026-01-01T00:00:00Z",
    "resolved_at": "",
}


class TemplateInvalid(ValueError):
    """A template that does not parse, names an unknown variable or fails to render."""


def _iso(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def context(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the names a template sees, from a notification payload."""
    return {
        "rule": payload.get("rule", ""),
        "severity": payload.get("severity", ""),
        "signal": payload.get("signal", ""),
        "labels": _Labels(payload.get("labels") or {}),
        "value": payload.get("value"),
        "samples": payload.get("samples", 0),
        "comparison": payload.get("comparison", ""),
        "threshold": payload.get("threshold"),
        "clear_threshold": payload.get("clear_threshold"),
        "window": payload.get("window"),
        "status": payload.get("status", ""),
        "kind": payload.get("kind", ""),
        "description": payload.get("description", ""),
        "fired_at": _iso(payload.get("fired_at")),
        "resolved_at": _iso(payload.get("resolved_at")),
    }


def _render(source: str, values: dict[str, Any], limit: int) -> str:
    text = _ENV.from_string(source).render(values)
    return text[:limit]


def check(source: str, field: str = "title") -> str:
    """Return ``source`` if it compiles and renders on sample values; raise TemplateInvalid."""
    try:
        _render(source, _SAMPLE, MAX_OUTPUT.get(field, 4000))
    except TemplateError as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, TemplateSyntaxError) else ""
        raise TemplateInvalid(f"template error{where}: {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateInvalid(f"template error: {type(exc).__name__}: {exc}") from None
    return source


def render(source: str, payload: dict[str, Any], field: str = "title") -> str | None:
    """Render a checked template for ``payload``; None when it fails on these values
    (say, ``value | round`` with no data): the caller falls back to the default text."""
    try:
        return _render(source, context(payload), MAX_OUTPUT.get(field, 4000))
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError):
        return None
