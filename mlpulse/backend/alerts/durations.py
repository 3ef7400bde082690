"""Durations in rules: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"500ms"`` or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Return ``value`` in seconds; accept numbers and strings such as ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError("empty duration")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text):
                raise ValueError(
                    f"invalid duration {value!r}: use e.g. '30s', '5m', '1h30m' or seconds"
                ) from None
    else:
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a duration must be a finite number >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``300`` → ``"5m"``), the inverse of `parse_duration`."""
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        ms = seconds * 1000
        return f"{int(ms)}ms" if ms == int(ms) else f"{seconds}s"
    rest = int(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: accepts ``"5m"`` or seconds, holds (and serializes) seconds."""

DURATION_FIELDS = ("window", "for", "keep_firing_for", "repeat_interval")
"""The rule fields holding durations (written as ``"5m"`` in YAML files)."""
