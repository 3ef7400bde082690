"""The file channel: one JSON document per line, appended (``jq``-friendly)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from backend.notify.channels import FileChannel
from backend.notify.result import DeliveryResult

_lock = threading.Lock()


def send_file(channel: FileChannel, payload: dict[str, Any], data_dir: Path) -> DeliveryResult:
    """Append ``payload`` as a JSON line to the channel's file."""
    path = channel.resolve(data_dir)
    line = json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
    except OSError as exc:
        return DeliveryResult(False, 1, f"cannot write {path}: {exc.strerror or exc}")
    return DeliveryResult(True, 1)
