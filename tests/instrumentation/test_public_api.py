"""The public face of `mlpulse_instrumentation` is pinned (httpx's test_exported_members)."""

from __future__ import annotations

import mlpulse_instrumentation


def test_exported_members_are_pinned() -> None:
    assert sorted(mlpulse_instrumentation.__all__) == [
        "BoundCache",
        "BoundFeatures",
        "BoundModel",
        "CacheTelemetry",
        "ModelTelemetry",
        "Telemetry",
        "build_resource",
        "get_telemetry",
        "instrument_app",
        "shutdown",
        "uninstrument_app",
    ]
    for name in mlpulse_instrumentation.__all__:
        assert getattr(mlpulse_instrumentation, name).__module__.startswith(
            "mlpulse_instrumentation._"
        )


def test_module_docstring_is_a_user_guide() -> None:
    doc = mlpulse_instrumentation.__doc__ or ""
    assert "instrument_app(app" in doc
    assert "record_prediction" in doc
    assert "OTEL_" in doc


def test_no_private_sdk_name_is_used() -> None:
    """Only public, documented OpenTelemetry API: no `_name` imported from it, no
    underscore module, no underscore attribute read from anything but our own objects."""
    import ast
    import re
    from pathlib import Path

    package = Path(mlpulse_instrumentation.__file__).parent
    offences: list[str] = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry"):
                module = node.module or ""
                if any(part.startswith("_") for part in module.split(".")):
                    offences.append(f"{path.name}:{node.lineno} imports {module}")
                for alias in node.names:
                    if alias.name.startswith("_"):
                        offences.append(f"{path.name}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("opentelemetry") and "._" in alias.name:
                        offences.append(f"{path.name}:{node.lineno} imports {alias.name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in ("_asdict", "_fields")  # namedtuple's public API
            ):
                owner = node.value
                # self/cls are our classes; `telemetry` is our own Telemetry.
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls", "telemetry")):
                    offences.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    assert offences == []
    source = "\n".join(p.read_text() for p in package.glob("*.py"))
    # The names the SDK keeps private that an extension is tempted to reach for.
    pattern = r"\.(_collect|_receive_metrics|_preferred_temporality|_exporter)\b|\b_Gauge\b"
    assert re.findall(pattern, source) == []
