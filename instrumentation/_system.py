"""Process and host gauges read through psutil at collection time (no per-request cost)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

import psutil
from opentelemetry.metrics import CallbackOptions, Observation

from instrumentation._meters import FILESYSTEM_MOUNTPOINT, SystemCallbacks

_log = logging.getLogger(__name__)


class SystemSampler:
    """Reads psutil once per collection for the system gauges.

    CPU shares are measured between two collections, so the first collection after
    start reports the share since the sampler was created.
    """

    def __init__(self, mountpoints: Sequence[str] = ("/",)) -> None:
        self._process = psutil.Process(os.getpid())
        self._cpu_count = psutil.cpu_count() or 1
        self._create_time = self._process.create_time()
        self._mountpoints = tuple(mountpoints)
        self._mount_attributes = {m: {FILESYSTEM_MOUNTPOINT: m} for m in self._mountpoints}
        # Prime the interval-based counters so the first reading is meaningful.
        self._process.cpu_percent(interval=None)
        self._last_cpu = _busy_and_total(psutil.cpu_times())

    def callbacks(self) -> SystemCallbacks:
        """Return the gauge callbacks bound to this sampler."""
        return SystemCallbacks(
            process_cpu=self._process_cpu,
            process_memory=self._process_memory,
            process_uptime=self._process_uptime,
            system_cpu=self._system_cpu,
            system_memory=self._system_memory,
            filesystem=self._filesystem,
        )

    def _process_cpu(self, _options: CallbackOptions) -> Iterable[Observation]:
        share = self._process.cpu_percent(interval=None) / 100.0 / self._cpu_count
        return (Observation(min(share, 1.0)),)

    def _process_memory(self, _options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(self._process.memory_info().rss),)

    def _process_uptime(self, _options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(max(time.time() - self._create_time, 0.0)),)

    def _system_cpu(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Own deltas rather than psutil.cpu_percent(), whose state is process-global.
        busy, total = _busy_and_total(psutil.cpu_times())
        last_busy, last_total = self._last_cpu
        self._last_cpu = (busy, total)
        elapsed = total - last_total
        share = (busy - last_busy) / elapsed if elapsed > 0 else 0.0
        return (Observation(min(max(share, 0.0), 1.0)),)

    def _system_memory(self, _options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(psutil.virtual_memory().percent / 100.0),)

    def _filesystem(self, _options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for mountpoint in self._mountpoints:
            try:
                usage = psutil.disk_usage(mountpoint)
            except OSError as exc:  # a mountpoint that vanished must not break collection
                _log.debug("disk_usage(%s) failed: %s", mountpoint, exc)
                continue
            observations.append(
                Observation(usage.percent / 100.0, self._mount_attributes[mountpoint])
            )
        return observations


def _busy_and_total(times: object) -> tuple[float, float]:
    """Return (busy, total) CPU seconds from a psutil cpu_times() result."""
    fields: dict[str, float] = times._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total
