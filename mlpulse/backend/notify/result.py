"""What a delivery attempt reports back, for the receipts kept in the alert history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of delivering one notification through one channel."""

    delivered: bool
    attempts: int
    error: str | None = None


AttemptHook = Callable[[int, str | None], None]
"""Called after each failed attempt with the attempt number and its error."""

Sleep = Callable[[float], bool]
"""Wait up to the given seconds; return True when the wait was cut short (shutdown)."""
