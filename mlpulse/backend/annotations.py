"""Annotations: the events drawn on every time chart of the dashboard.

Four kinds, from three sources:

- ``alert`` — alert transitions (to firing, to resolved), from the alert history;
- ``version`` — a model's version changing (a retrain), derived from the data: the first
  bucket in which a new ``ml.model.version`` of a (service, model) appears, after an
  older one — whatever code trained it;
- ``scenario`` and ``restart`` — recorded by the backend itself in `AnnotationLog`: a fault
  scenario started or stopped through `/admin/scenario`, the backend process starting;
  ``note`` — anything a client posts to `POST /annotations` (a deploy script, say).

    log = AnnotationLog(data_dir / ANNOTATIONS_FILE)
    log.add("restart", "backend started")
    items = collect(store, log, alert_store, start, end, service="mlapi")
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI

from mlpulse.backend.alerts.sql import connect
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.query.signals import BASELINE_MAE, PREDICTIONS, choose_resolution
from mlpulse.backend.storage.base import MetricStore

ANNOTATIONS_FILE = "annotations.sqlite3"
Kind = Literal["alert", "version", "scenario", "restart", "note"]
RECORDED_KINDS = ("scenario", "restart", "note")
VERSION_LOOKBACK_S = 86_400.0
"""How far before a range an older version is looked for (a change needs one)."""
MAX_ITEMS = 500
FINE_RESOLUTION_S = 10


class AnnotationLog:
    """The annotations the backend records itself (thread-safe): in a small SQLite file,
    or in the shared PostgreSQL database (a URL), so every replica shows all of them."""

    def __init__(self, target: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = connect(target)
        self._db.create_schema(
            "CREATE TABLE IF NOT EXISTS annotations (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " at REAL NOT NULL, end_at REAL, kind TEXT NOT NULL, title TEXT NOT NULL,"
            " text TEXT NOT NULL, service TEXT NOT NULL);"
            " CREATE INDEX IF NOT EXISTS annotations_at ON annotations (at)"
        )

    def add(
        self,
        kind: str,
        title: str,
        text: str = "",
        service: str = "",
        at: float | None = None,
        end: float | None = None,
    ) -> dict[str, Any]:
        """Record one annotation (now, unless `at`); return it."""
        when = time.time() if at is None else at
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO annotations (at, end_at, kind, title, text, service)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (when, end, kind, title, text, service),
            )
        return _item(int(cur.lastrowid or 0), when, end, kind, title, text, service)

    def between(self, start: float, end: float, service: str | None = None) -> list[dict[str, Any]]:
        """The recorded annotations in [start, end), for `service` and the fleet-wide ones."""
        sql = "SELECT id, at, end_at, kind, title, text, service FROM annotations"
        sql += " WHERE at >= ? AND at < ?"
        args: list[Any] = [start, end]
        if service:
            sql += " AND (service = '' OR service = ?)"
            args.append(service)
        sql += " ORDER BY at LIMIT ?"
        args.append(MAX_ITEMS)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_item(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _item(
    id_: int, at: float, end: float | None, kind: str, title: str, text: str, service: str
) -> dict[str, Any]:
    return {
        "id": f"{kind}-{id_}",
        "at": at,
        "end": end,
        "kind": kind,
        "title": title,
        "text": text,
        "service": service,
    }


def alert_annotations(
    alerts: AlertStore, start: float, end: float, service: str | None = None
) -> list[dict[str, Any]]:
    """Alert transitions to firing and to resolved in [start, end)."""
    entries, _ = alerts.history(since=start, until=end, limit=MAX_ITEMS)
    out = []
    for e in entries:
        if e.get("to") not in ("firing", "resolved") or e.get("from") == e.get("to"):
            continue
        labels = e.get("labels") or {}
        if service and labels.get("service", service) != service:
            continue
        where = ", ".join(f"{k}={v}" for k, v in labels.items())
        value = e.get("value")
        shown = f" at {value:.4g}" if isinstance(value, int | float) else ""
        out.append(
            {
                "id": f"alert-{e.get('id')}",
                "at": float(e["at"]),
                "end": None,
                "kind": "alert",
                "title": f"{e['rule']} {e['to']}",
                "text": f"{e['rule']} {e.get('from')} → {e['to']}{shown}"
                + (f" ({where})" if where else ""),
                "service": str(labels.get("service", "")),
            }
        )
    return out


def version_annotations(
    store: MetricStore, start: float, end: float, service: str | None = None
) -> list[dict[str, Any]]:
    """A model's new version appearing in [start, end) after an older one (a retrain)."""
    lookback = start - VERSION_LOOKBACK_S
    res = choose_resolution(lookback, end)
    ids: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for metric in (PREDICTIONS, BASELINE_MAE):
        for s in store.series(metric, {"service": service} if service else None):
            model = s.attributes.get("ml.model.name", "")
            version = s.attributes.get("ml.model.version", "")
            if model and version:
                ids[(s.service, model, version)].append(s.id)
    first: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for (svc, model, version), sids in ids.items():
        seen = store.first_bucket(sids, res, lookback, end)
        if seen is not None and res > FINE_RESOLUTION_S:  # to the 10 s bucket, for the charts
            seen = store.first_bucket(sids, FINE_RESOLUTION_S, seen, seen + res) or seen
        if seen is not None:
            first[(svc, model)].append((seen, version))
    out = []
    for (svc, model), versions in first.items():
        versions.sort()
        for (_, old), (at, new) in itertools.pairwise(versions):
            if start <= at < end:
                out.append(
                    {
                        "id": f"version-{svc}-{model}-{new}",
                        "at": float(at),
                        "end": None,
                        "kind": "version",
                        "title": f"{model} v{new.removeprefix('v')}",
                        "text": f"{svc}: model {model} now version {new} (was {old})",
                        "service": svc,
                    }
                )
    return out


def collect(
    store: MetricStore,
    log: AnnotationLog,
    alerts: AlertStore | None,
    start: float,
    end: float,
    service: str | None = None,
) -> list[dict[str, Any]]:
    """Every annotation in [start, end), oldest first (at most MAX_ITEMS)."""
    items = log.between(start, end, service)
    items += version_annotations(store, start, end, service)
    if alerts is not None:
        items += alert_annotations(alerts, start, end, service)
    items.sort(key=lambda a: (a["at"], a["kind"], a["id"]))
    return items[-MAX_ITEMS:]


async def record_backend_start(app: FastAPI) -> None:
    """Background job: annotate this backend process starting; close the log at shutdown."""
    log: AnnotationLog = app.state.annotations
    log.add("restart", "backend started", f"mlpulse backend started (pid {os.getpid()})")
    try:
        await asyncio.Event().wait()  # until cancelled at shutdown
    finally:
        log.close()
