"""The public face of `instrumentation` is pinned (httpx's test_exported_members)."""

from __future__ import annotations

import instrumentation


def test_exported_members_are_pinned() -> None:
    assert sorted(instrumentation.__all__) == [
        "CacheTelemetry",
        "ModelTelemetry",
        "Telemetry",
        "build_resource",
        "get_telemetry",
        "instrument_app",
        "shutdown",
        "uninstrument_app",
    ]
    for name in instrumentation.__all__:
        assert getattr(instrumentation, name).__module__.startswith("instrumentation._")


def test_module_docstring_is_a_user_guide() -> None:
    doc = instrumentation.__doc__ or ""
    assert "instrument_app(app" in doc
    assert "record_prediction" in doc
    assert "OTEL_" in doc
