"""The console channel: one log line per notification (logger ``mlpulse.alerts``)."""

from __future__ import annotations

import logging
from typing import Any

from mlpulse.backend.notify.channels import ConsoleChannel
from mlpulse.backend.notify.message import subject
from mlpulse.backend.notify.result import DeliveryResult

log = logging.getLogger("mlpulse.alerts")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def send_console(channel: ConsoleChannel, payload: dict[str, Any]) -> DeliveryResult:
    """Log the notification's summary, value and reason."""
    level = logging.INFO if payload.get("kind") == "resolved" else _LEVELS[channel.level]
    reason = str(payload.get("reason", "")).replace("\n", " ")
    log.log(level, "%s value=%s: %s", subject(payload), payload.get("value"), reason)
    return DeliveryResult(True, 1)
