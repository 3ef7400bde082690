"""The fleet: which services report, their instances (running or stopped), and each
service's own snapshot — the JSON of `GET /metrics/services`.

An instance is known from any series it ever sent (within retention) and is *running*
while its newest point is at most `stale_after` seconds old, else *stopped*. Only running
instances have "now" figures (uptime, memory, CPU): a stopped one shows when it was last
seen instead, and its old levels never add to a live one's.

    doc = fleet(store, time.time(), window=300)
    for svc in doc["services"]:
        print(svc["service"], [(i["instance"], i["state"]) for i in svc["instances"]])
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mlpulse.backend.query.signals import HTTP_DURATION, PREDICTIONS, evaluate, latest_time
from mlpulse.backend.query.snapshot import STALE_AFTER_S, snapshot
from mlpulse.backend.query.view import read_once
from mlpulse.backend.storage.base import MetricStore

LAST_SEEN_LOOKBACK_S = 86_400.0
"""How far back an instance's last point is looked for (older ones are not listed)."""

PRESENCE_METRICS = ("process.uptime", HTTP_DURATION, PREDICTIONS)
"""Metrics whose series tell that an instance exists (any of them)."""


def instances(store: MetricStore) -> dict[str, set[str]]:
    """Every (service → instances) pair that has a series of a presence metric."""
    found: dict[str, set[str]] = defaultdict(set)
    for metric in PRESENCE_METRICS:
        for s in store.series(metric):
            found[s.service].add(s.instance)
    return found


def _levels(
    store: MetricStore, signal: str, now: float, stale_after: float
) -> dict[tuple[str, str], float]:
    values = evaluate(store, signal, now - stale_after, now, ["service", "instance"])
    return {
        (v.labels["service"], v.labels["instance"]): v.value for v in values if v.value is not None
    }


def fleet(
    store: MetricStore,
    now: float,
    window: float = 300.0,
    stale_after: float = STALE_AFTER_S,
    with_snapshots: bool = True,
) -> dict[str, Any]:
    """Return the services, their instances with state, and each service's snapshot."""
    store = read_once(store)
    known = instances(store)
    uptime = _levels(store, "uptime_seconds", now, stale_after)
    memory = _levels(store, "memory_usage_mb", now, stale_after)
    cpu = _levels(store, "process_cpu_percent", now, stale_after)
    services = []
    for service in sorted(known):
        rows = []
        for instance in sorted(known[service]):
            seen = latest_time(
                store,
                PRESENCE_METRICS,
                now - LAST_SEEN_LOOKBACK_S,
                now + 1,
                {"service": service, "instance": instance},
            )
            if seen is None:
                continue
            running = now - seen <= stale_after
            key = (service, instance)
            rows.append(
                {
                    "instance": instance,
                    "state": "running" if running else "stopped",
                    "last_seen": seen,
                    "uptime_seconds": uptime.get(key) if running else None,
                    "memory_usage_mb": memory.get(key) if running else None,
                    "process_cpu_percent": cpu.get(key) if running else None,
                }
            )
        if not rows:
            continue
        entry: dict[str, Any] = {
            "service": service,
            "running": sum(r["state"] == "running" for r in rows),
            "instances": rows,
        }
        if with_snapshots:
            entry["current"] = snapshot(store, now, window, service, stale_after=stale_after)
        services.append(entry)
    return {
        "at": now,
        "window_seconds": window,
        "stale_after_seconds": stale_after,
        "services": services,
    }
