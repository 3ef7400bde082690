"""Helpers for the alert tests: a settable clock, a scripted signal source, configs."""

from __future__ import annotations

from typing import Any

from backend.alerts.engine import Sample
from backend.alerts.rules import AlertConfig, Rule, parse_config


class Clock:
    """A settable clock: ``clock.t`` seconds since the epoch."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


class Script:
    """A signal source whose value per group the test sets, like promtool's input series."""

    def __init__(self) -> None:
        self.values: dict[tuple[tuple[str, str], ...], tuple[float | None, int]] = {}
        self.calls: list[tuple[str, float]] = []

    def set(self, value: float | None, samples: int = 100, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = (value, samples)

    def clear(self) -> None:
        self.values.clear()

    def __call__(self, rule: Rule, now: float) -> list[Sample]:
        self.calls.append((rule.name, now))
        return [Sample(dict(key), value, n) for key, (value, n) in self.values.items()]


def make_config(
    *rules: dict[str, Any], channels: list[dict[str, Any]] | None = None
) -> AlertConfig:
    """Return a config with the given rules and a console channel."""
    return parse_config(
        {"channels": channels or [{"name": "console", "type": "console"}], "rules": list(rules)}
    )
