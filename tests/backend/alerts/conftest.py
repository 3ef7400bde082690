"""Fixtures for the alert engine tests: a fake clock, a scripted signal source, an engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import Clock, Script

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.store import AlertStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.db")
    yield s
    s.close()


@pytest.fixture
def engine(store: AlertStore, script: Script, clock: Clock) -> AlertEngine:
    return AlertEngine(store, script, None, clock=clock, repeat_interval=3600)


@pytest.fixture
def receivers() -> Iterator[list[Any]]:
    """Receivers the test creates; closed at the end."""
    made: list[Any] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def alert_backend(backend_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Start a backend with alert settings given as keyword arguments (``MLPULSE_*``).

    The evaluation loop is off by default (``alert_enabled=False``): tests evaluate by
    calling ``backend.app.state.alerts.evaluate_once()`` at the instants they choose.
    """

    def start(backend: dict[str, Any] | None = None, **alert_settings: Any) -> Any:
        alert_settings.setdefault("alert_enabled", False)
        for name, value in alert_settings.items():
            text = json.dumps(value) if isinstance(value, list | bool) else str(value)
            monkeypatch.setenv(f"MLPULSE_{name.upper()}", text)
        return backend_factory(**(backend or {}))

    return start
