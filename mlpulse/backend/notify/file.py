"""The file channel: one JSON document per line, appended (``jq``-friendly).

Files live in one folder (``MLPULSE_ALERT_FILE_DIR``, default ``<data dir>/alerts``) and
never on the backend's own files (`protected_files`): the path is checked when a channel
is saved and again before every write, and the last component is opened without
following a symlink, so a link planted after the check cannot redirect the write.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlpulse.backend.notify.channels import FileChannel, FilePathRefused
from mlpulse.backend.notify.result import DeliveryResult

_lock = threading.Lock()
_SIDECARS = ("", "-wal", "-shm", "-journal")
# The backend's own files in its data dir (mlpulse.backend.config's DATABASE_FILE and TOKEN_FILE,
# the alert store's default file).
_OWN_DATABASES = ("mlpulse.db", "alerts.db")
_TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


def protected_files(data_dir: Path, databases: Iterable[Path] = ()) -> frozenset[Path]:
    """Return the files no file channel may write: the backend's databases (with their
    WAL, shared-memory and journal files) and its token file."""
    out: set[Path] = set()
    bases = [*(data_dir / name for name in _OWN_DATABASES), *databases]
    for base in bases:
        out.update(base.resolve().with_name(base.name + suffix) for suffix in _SIDECARS)
    out.add((data_dir / _TOKEN_FILE).resolve())
    return frozenset(out)


def send_file(
    channel: FileChannel,
    payload: dict[str, Any],
    folder: Path,
    protected: frozenset[Path] = frozenset(),
) -> DeliveryResult:
    """Append ``payload`` as a JSON line to the channel's file inside ``folder``."""
    try:
        path = channel.resolve(folder, protected)
    except FilePathRefused as exc:
        return DeliveryResult(False, 1, f"file channel path {exc}")
    line = json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _lock:
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
    except OSError as exc:
        return DeliveryResult(False, 1, f"cannot write {path}: {exc.strerror or exc}")
    return DeliveryResult(True, 1)
