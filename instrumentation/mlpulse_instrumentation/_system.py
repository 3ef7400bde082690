"""Process and host gauges read through psutil at collection time (no per-request cost)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

import psutil
from opentelemetry.metrics import CallbackOptions, Observation

from mlpulse_instrumentation._meters import (
    CPU_MODE,
    FILESYSTEM_MOUNTPOINT,
    MEMORY_STATE,
    SystemCallbacks,
)

# psutil's host cpu_times() fields -> semantic-convention cpu.mode values. guest and
# guest_nice are left out: Linux already counts them in user and nice.
_HOST_CPU_MODES = {
    "user": "user",
    "nice": "nice",
    "system": "system",
    "idle": "idle",
    "iowait": "iowait",
    "irq": "interrupt",
    "softirq": "interrupt",
    "steal": "steal",
}

_log = logging.getLogger(__name__)


class SystemSampler:
    """Reads psutil once per collection for the system gauges.

    CPU shares are measured between two collections, per ``cpu.mode``, so the first
    collection after start reports the share since the sampler was created. Host memory
    is reported per ``system.memory.state``: ``used`` (total - available, psutil's
    percent) and ``free`` (available), which add up to 1.
    """

    def __init__(self, mountpoints: Sequence[str] = ("/",)) -> None:
        self._pid = os.getpid()
        self._process_handle = psutil.Process(self._pid)
        self._cpu_count = psutil.cpu_count() or 1
        self._create_time = self._process_handle.create_time()
        self._mountpoints = tuple(mountpoints)
        self._mount_attributes = {m: {FILESYSTEM_MOUNTPOINT: m} for m in self._mountpoints}
        self._mode_attributes = {
            mode: {CPU_MODE: mode} for mode in {*_HOST_CPU_MODES.values(), "user", "system"}
        }
        # The first reading covers the time since the sampler was created.
        self._last_process = self._process_times()
        self._last_host = _host_times()

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

    @property
    def _process(self) -> psutil.Process:
        # After a fork (gunicorn --preload) the child must read its own process.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._process_handle = psutil.Process(self._pid)
            self._create_time = self._process_handle.create_time()
        return self._process_handle

    def _process_times(self) -> tuple[float, float, float]:
        times = self._process.cpu_times()
        return time.monotonic(), times.user, times.system

    def _process_cpu(self, _options: CallbackOptions) -> Iterable[Observation]:
        now, user, system = self._process_times()
        then, last_user, last_system = self._last_process
        self._last_process = (now, user, system)
        capacity = (now - then) * self._cpu_count
        if capacity <= 0:
            return ()
        return [
            Observation(min(max(used / capacity, 0.0), 1.0), self._mode_attributes[mode])
            for mode, used in (("user", user - last_user), ("system", system - last_system))
        ]

    def _process_memory(self, _options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(self._process.memory_info().rss),)

    def _process_uptime(self, _options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(max(time.time() - self._create_time, 0.0)),)

    def _system_cpu(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Own deltas rather than psutil.cpu_percent(), whose state is process-global.
        host = _host_times()
        last = self._last_host
        self._last_host = host
        elapsed = {mode: host.get(mode, 0.0) - last.get(mode, 0.0) for mode in host}
        total = sum(elapsed.values())
        if total <= 0:  # two collections within the clock's tick: shares since boot
            elapsed, total = host, sum(host.values())
        return [
            Observation(min(max(spent / total, 0.0), 1.0), self._mode_attributes[mode])
            for mode, spent in sorted(elapsed.items())
        ]

    def _system_memory(self, _options: CallbackOptions) -> Iterable[Observation]:
        memory = psutil.virtual_memory()
        used = (memory.total - memory.available) / memory.total
        return (
            Observation(used, {MEMORY_STATE: "used"}),
            Observation(1.0 - used, {MEMORY_STATE: "free"}),
        )

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


def _host_times() -> dict[str, float]:
    """CPU seconds per semantic-convention cpu.mode, summed over the host's cores."""
    fields: dict[str, float] = psutil.cpu_times()._asdict()
    modes: dict[str, float] = {}
    for field, mode in _HOST_CPU_MODES.items():
        if field in fields:
            modes[mode] = modes.get(mode, 0.0) + fields[field]
    return modes
