"""Fixtures for the alert engine tests: a fake clock, a scripted signal source, an engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_helpers import Clock, Script

from backend.alerts.engine import AlertEngine
from backend.alerts.store import AlertStore


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
